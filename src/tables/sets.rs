//! The set and map verbs (`emptcp set …`, `emptcp map …`, and the same in
//! the library): elements changed in the kernel tables of an applied
//! state, under the state directory's lock, without loading any program.
//! The next packet sees each change.

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::cli::text::quoted;
use crate::runtime::state::StateDir;
use crate::runtime::Runtime;
use crate::tables::{self, TableState};

/// A table as `show` and `list` print it.
#[derive(Debug, Clone, Serialize)]
pub struct TableView {
    pub name: String,
    /// "set" or "map"
    pub kind: &'static str,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub size: u32,
    pub elements: usize,
    /// Chains that use it.
    pub used_by: Vec<String>,
}

/// "set tenants: addr keys, 1000 of 65536 elements, used by steer"
impl std::fmt::Display for TableView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} keys{}, {} of {} elements",
            self.kind,
            self.name,
            self.key,
            self.value
                .as_ref()
                .map(|v| format!(", {v} values"))
                .unwrap_or_default(),
            self.elements,
            self.size
        )?;
        if !self.used_by.is_empty() {
            write!(f, ", used by {}", self.used_by.join(", "))?;
        }
        Ok(())
    }
}

/// One element in its text form.
#[derive(Debug, Clone, Serialize)]
pub struct ElementView {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Reads elements, one per line, `#` starting a comment (a regular file
/// of at most 16 MiB, userfile.rs).
pub fn read_elements(path: &std::path::Path) -> Result<Vec<String>> {
    let bytes = crate::policy::userfile::read(path)
        .map_err(|e| anyhow!("{}: {e}", crate::cli::text::path(path)))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("{}: not UTF-8 text", crate::cli::text::path(path)))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

impl Runtime {
    /// The table `name` of an applied state; `want` ("set" or "map") is
    /// the verb's.
    fn table_of(&self, sd: &StateDir, name: &str, want: Option<&str>) -> Result<TableState> {
        let st = sd.load()?;
        let t = st
            .tables
            .iter()
            .find(|t| t.def.name == name)
            .cloned()
            .ok_or_else(|| anyhow!("no set or map called {}", quoted(name)))?;
        if let Some(w) = want {
            if t.def.what() != w {
                bail!(
                    "{} is a {}: use `emptcp {} …`",
                    quoted(name),
                    t.def.what(),
                    t.def.what()
                );
            }
        }
        Ok(t)
    }

    fn locked(&self) -> Result<StateDir> {
        StateDir::open(&self.dir, false)?
            .ok_or_else(|| anyhow!("no sets or maps (nothing applied)"))
    }

    /// Adds elements in their text form (maps: `KEY=VALUE`); all are
    /// checked before any is added. Returns how many were given.
    pub fn table_add(&self, name: &str, want: Option<&str>, elements: &[String]) -> Result<usize> {
        let sd = self.locked()?;
        let t = self.table_of(&sd, name, want)?;
        let mut elems = Vec::with_capacity(elements.len());
        for e in elements {
            elems.push(tables::parse_element(&t.def, e).map_err(|e| anyhow!(e))?);
        }
        tables::add(&sd, &t, &elems)?;
        Ok(elems.len())
    }

    /// Adds (key bytes, value) elements in batches: the library's fast path
    /// for controllers (tables.rs `parse_key` makes the key bytes).
    pub fn table_add_raw(&self, name: &str, elements: &[(Vec<u8>, u64)]) -> Result<()> {
        let sd = self.locked()?;
        let t = self.table_of(&sd, name, None)?;
        let ks = t.def.key.key_size() as usize;
        if let Some((k, _)) = elements.iter().find(|(k, _)| k.len() != ks) {
            bail!(
                "{} {}: a key of {} bytes, not {ks}",
                t.def.what(),
                quoted(name),
                k.len()
            );
        }
        tables::add(&sd, &t, elements)
    }

    /// Deletes elements by key (text form; a map's `=VALUE` is ignored).
    pub fn table_del(&self, name: &str, want: Option<&str>, elements: &[String]) -> Result<usize> {
        let sd = self.locked()?;
        let t = self.table_of(&sd, name, want)?;
        let mut keys = Vec::with_capacity(elements.len());
        for e in elements {
            let k = match t.def.value {
                Some(_) => e.rsplit_once('=').map(|(k, _)| k).unwrap_or(e),
                None => e.as_str(),
            };
            keys.push(tables::parse_key(t.def.key, k).map_err(|err| {
                anyhow!(
                    "{} {}: element {}: {err}",
                    t.def.what(),
                    quoted(name),
                    quoted(e)
                )
            })?);
        }
        tables::del(&sd, &t, &keys)?;
        Ok(keys.len())
    }

    /// Every element of a table, in key order.
    pub fn table_list(&self, name: &str, want: Option<&str>) -> Result<Vec<ElementView>> {
        let Some(sd) = StateDir::open_shared(&self.dir, true)? else {
            bail!("no set or map called {}", quoted(name));
        };
        let t = self.table_of(&sd, name, want)?;
        Ok(tables::open(&sd, &t)?
            .elements()?
            .into_iter()
            .map(|(k, v)| ElementView {
                key: tables::format_key(t.def.key, &k),
                value: t
                    .def
                    .value
                    .map(|vt| tables::format_value(vt, v, t.def.netns.as_deref())),
            })
            .collect())
    }

    /// Empties a table in one swap.
    pub fn table_flush(&self, name: &str, want: Option<&str>) -> Result<()> {
        let sd = self.locked()?;
        let t = self.table_of(&sd, name, want)?;
        let m = tables::build(&t.def, &[])?;
        tables::install(&sd, &t, &m)
    }

    /// Removes a table no chain uses.
    pub fn table_delete(&self, name: &str, want: Option<&str>) -> Result<()> {
        let sd = self.locked()?;
        let t = self.table_of(&sd, name, want)?;
        let mut st = sd.load()?;
        let users = users_of(&st, name);
        if !users.is_empty() {
            bail!(
                "{} {} is used by chain {}: detach or change {} first",
                t.def.what(),
                quoted(name),
                users.join(", "),
                if users.len() == 1 { "it" } else { "them" }
            );
        }
        st.tables.retain(|x| x.def.name != name);
        sd.save(&st).context("failed to save the state")?;
        tables::uninstall(&sd, &t);
        Ok(())
    }

    /// The applied tables with their sizes.
    pub fn tables(&self) -> Result<Vec<TableView>> {
        let Some(sd) = StateDir::open_shared(&self.dir, true)? else {
            return Ok(Vec::new());
        };
        let st = sd.load()?;
        Ok(st
            .tables
            .iter()
            .map(|t| TableView {
                name: t.def.name.clone(),
                kind: t.def.what(),
                key: t.def.key.to_string(),
                value: t.def.value.map(|v| v.to_string()),
                size: t.def.size,
                elements: tables::open(&sd, t).and_then(|m| m.len()).unwrap_or(0),
                used_by: users_of(&st, &t.def.name),
            })
            .collect())
    }
}

/// Chains that name table `name`.
fn users_of(st: &crate::runtime::state::State, name: &str) -> Vec<String> {
    st.points
        .iter()
        .flat_map(|p| &p.chains)
        .filter(|c| {
            crate::policy::table_refs(&c.spec)
                .iter()
                .any(|(_, n, _, _)| *n == name)
        })
        .map(|c| c.spec.name.clone())
        .collect()
}
