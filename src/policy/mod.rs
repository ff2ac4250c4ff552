//! Policy files (TOML) and the typed chain model they describe.
//!
//! ```toml
//! [[chain]]
//! name = "wifi-backup"
//! dev  = "veth1"
//! hook = "tc-egress"
//!   [[chain.select]]
//!   kind = "ip_pair"
//!   src  = "10.1.0.1"
//!   [[chain.act]]
//!   kind   = "set_backup"
//!   backup = true
//! ```
//! Every error names the file, the chain and the key.

pub mod model;
pub mod userfile;
pub mod values;

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use thiserror::Error;
use toml::{Table, Value};

use crate::cli::text::{bare, quoted};
pub use crate::stages::packet_type::PACKET_TYPES;
pub use crate::stages::Runs;
use crate::stages::{self, Args, Entry, ParamType, Parse, StageRole};
use crate::tables::{KeyType, TableDef, ValueType};
pub use model::*;
pub use values::{check_dev, parse_bytes, parse_rate, parse_size, shown, valid_name};
use values::{get_bool, get_str, get_u32};

impl Chain {
    /// What can run this chain (the least capable of its stages).
    pub fn runs(&self) -> Runs {
        let sel = self.select.iter().map(|s| match &s.kind {
            SelectorKind::InSet { .. } => stages::lookup::RUNS,
            k => stages::selector_entry(k).runs,
        });
        let act = self.act.iter().map(|a| stages::actor_entry(a).runs);
        sel.chain(act).max().unwrap_or(Runs::AnyWalk)
    }
}

/// A policy error: one line, naming the file, chain and key.
#[derive(Debug, Error, PartialEq)]
#[error("{file}: {msg}")]
pub struct PolicyError {
    pub file: String,
    pub msg: String,
}

impl Policy {
    /// Reads and parses a policy file (a regular file of at most 16 MiB,
    /// see userfile.rs).
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let file = crate::cli::text::path(path);
        let err = |msg: String| PolicyError {
            file: file.clone(),
            msg,
        };
        let bytes = crate::policy::userfile::read(path).map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            err(format!(
                "cannot read: not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Policy::parse(&text, &file)
    }

    /// Parses policy text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Policy, PolicyError> {
        let err = |msg: String| PolicyError {
            file: file.to_owned(),
            msg,
        };
        let root: Table = text.parse::<Table>().map_err(|e| {
            // toml's messages may span lines ("invalid table header\nexpected ..."):
            // keep the error to one line; they may quote the file (a key)
            let m = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            let m = bare(&m);
            // the line the span starts on (lines() of the text before it
            // misses one when the span starts a line)
            let line = e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            match line {
                Some(l) => err(format!("line {l}: not valid TOML: {m}")),
                None => err(format!("not valid TOML: {m}")),
            }
        })?;
        for k in root.keys() {
            if k != "chain" && k != "set" && k != "map" {
                return Err(err(format!(
                    "unknown top-level key `{}` (expected [[chain]], [[set]], [[map]])",
                    bare(k)
                )));
            }
        }
        let tables = parse_tables(&root).map_err(err)?;
        let empty = Vec::new();
        let chains = match root.get("chain") {
            None if !tables.is_empty() => &empty,
            None => return Err(err("no [[chain]] in the file".into())),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(err("`chain` must be an array of tables ([[chain]])".into())),
        };
        let mut out = Vec::new();
        let mut names = HashSet::new();
        for (i, c) in chains.iter().enumerate() {
            let t = c
                .as_table()
                .ok_or_else(|| err(format!("chain #{}: not a table", i + 1)))?;
            let chain = parse_chain(t, i).map_err(err)?;
            if !names.insert(chain.name.clone()) {
                return Err(err(format!(
                    "chain {}: duplicate name",
                    quoted(&chain.name)
                )));
            }
            check_table_refs(&chain, &tables).map_err(err)?;
            out.push(chain);
        }
        Ok(Policy {
            chains: out,
            tables,
        })
    }
}

/// The sets and maps a chain refers to: (selector or actor, table, key).
pub fn table_refs(c: &Chain) -> Vec<(String, &str, KeyOf, Option<&'static str>)> {
    let mut v = Vec::new();
    for (i, s) in c.select.iter().enumerate() {
        if let SelectorKind::InSet { keyof, set, .. } = &s.kind {
            v.push((
                format!("select[{i}] ({})", s.kind.name()),
                set.as_str(),
                *keyof,
                None,
            ));
        }
    }
    for (i, a) in c.act.iter().enumerate() {
        if let Some(m) = a.map() {
            let vt = stages::actor_entry(a).map_param.map(|(_, vt)| vt);
            v.push((
                format!("act[{i}] ({})", a.name()),
                m.map.as_str(),
                m.key,
                vt,
            ));
        }
    }
    v
}

/// Checks that a table `def` can serve reference (`what`, `keyof`,
/// value type wanted): one line naming both when not.
pub fn check_table_ref(
    chain: &str,
    what: &str,
    keyof: KeyOf,
    want: Option<&str>,
    def: &TableDef,
) -> Result<(), String> {
    let head = format!("chain {}: {what}", quoted(chain));
    if !keyof.fits(def.key) {
        return Err(format!(
            "{head}: {} {} has keys of type {}, which `{}` cannot look up",
            def.what(),
            quoted(&def.name),
            def.key,
            format!("{keyof:?}").to_lowercase()
        ));
    }
    if let Some(want) = want {
        match def.value {
            Some(v) if v.to_string() == want => {}
            Some(v) => {
                return Err(format!(
                    "{head}: map {} has {v} values, not {want}",
                    quoted(&def.name)
                ))
            }
            None => {
                return Err(format!(
                    "{head}: {} is a set; a map of {want} values is needed",
                    quoted(&def.name)
                ))
            }
        }
    }
    Ok(())
}

/// References to tables of the same file are checked here; others when
/// the file is applied (the table may be applied already).
fn check_table_refs(c: &Chain, tables: &[TableSpec]) -> Result<(), String> {
    for (what, name, keyof, want) in table_refs(c) {
        if let Some(t) = tables.iter().find(|t| t.def.name == name) {
            check_table_ref(&c.name, &what, keyof, want, &t.def)?;
        }
    }
    Ok(())
}

/// `[[set]]` and `[[map]]` tables of a policy file.
fn parse_tables(root: &Table) -> Result<Vec<TableSpec>, String> {
    let mut out: Vec<TableSpec> = Vec::new();
    for what in ["set", "map"] {
        let arr = match root.get(what) {
            None => continue,
            Some(Value::Array(a)) => a,
            Some(_) => return Err(format!("`{what}` must be an array of tables ([[{what}]])")),
        };
        for (i, v) in arr.iter().enumerate() {
            let t = v
                .as_table()
                .ok_or_else(|| format!("{what} #{}: not a table", i + 1))?;
            let spec = parse_table(t, what, i)?;
            if out.iter().any(|o| o.def.name == spec.def.name) {
                return Err(format!(
                    "{what} {}: duplicate name (sets and maps share names)",
                    quoted(&spec.def.name)
                ));
            }
            out.push(spec);
        }
    }
    Ok(out)
}

fn parse_table(t: &Table, what: &str, idx: usize) -> Result<TableSpec, String> {
    let name = get_str(t, "name", &format!("{what} #{}", idx + 1))?
        .ok_or_else(|| format!("{what} #{}: missing key `name`", idx + 1))?;
    let head = format!("{what} {}", quoted(name));
    if !valid_name(name) {
        return Err(format!(
            "{head}: key `name`: must be 1-32 characters of [a-z0-9_-]"
        ));
    }
    let (key_key, known): (&str, &[&str]) = if what == "set" {
        ("type", &["name", "type", "elements", "size"])
    } else {
        (
            "key",
            &["name", "key", "value", "elements", "size", "netns"],
        )
    };
    for k in t.keys() {
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "{head}: unknown key `{}` (known: {})",
                bare(k),
                known.join(", ")
            ));
        }
    }
    let key: KeyType = get_str(t, key_key, &head)?
        .ok_or_else(|| format!("{head}: missing key `{key_key}`"))?
        .parse()
        .map_err(|e| format!("{head}: key `{key_key}`: {e}"))?;
    let value: Option<ValueType> = if what == "map" {
        Some(
            get_str(t, "value", &head)?
                .ok_or_else(|| format!("{head}: missing key `value`"))?
                .parse()
                .map_err(|e| format!("{head}: key `value`: {e}"))?,
        )
    } else {
        None
    };
    let size = match get_u32(t, "size", &head)? {
        None => crate::tables::DEFAULT_SIZE,
        Some(n) if (1..=crate::tables::MAX_SIZE).contains(&n) => n,
        Some(n) => {
            return Err(format!(
                "{head}: key `size`: {n} is not 1-{}",
                crate::tables::MAX_SIZE
            ))
        }
    };
    let netns = get_str(t, "netns", &head)?.map(str::to_owned);
    if let Some(n) = &netns {
        crate::kernel::netns::check_name(n).map_err(|e| format!("{head}: key `netns`: {e}"))?;
    }
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Integer(i) => Some(i.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let mut elements = Vec::new();
    match (what, t.get("elements")) {
        (_, None) => {}
        ("set", Some(Value::Array(a))) => {
            for e in a {
                elements.push(text(e).ok_or_else(|| {
                    format!(
                        "{head}: key `elements`: expected strings, got {}",
                        e.type_str()
                    )
                })?);
            }
        }
        ("map", Some(Value::Table(m))) => {
            for (k, v) in m {
                let v = text(v).ok_or_else(|| {
                    format!(
                        "{head}: key `elements`: value of {}: expected a string, number or bool",
                        quoted(k)
                    )
                })?;
                elements.push(format!("{k}={v}"));
            }
        }
        ("set", Some(_)) => return Err(format!("{head}: key `elements`: expected a list")),
        _ => {
            return Err(format!(
                "{head}: key `elements`: expected a table {{ \"KEY\" = VALUE, … }}"
            ))
        }
    }
    let def = TableDef {
        name: name.to_owned(),
        key,
        value,
        size,
        netns,
    };
    if elements.len() > size as usize {
        return Err(format!(
            "{head}: {} elements do not fit its size {size}",
            elements.len()
        ));
    }
    // devices are looked up when the file is applied, in their namespace
    if value != Some(ValueType::Dev) {
        for e in &elements {
            crate::tables::parse_element(&def, e)?;
        }
    }
    Ok(TableSpec { def, elements })
}

fn parse_chain(t: &Table, idx: usize) -> Result<Chain, String> {
    let fallback = format!("chain #{}", idx + 1);
    let name =
        get_str(t, "name", &fallback)?.ok_or_else(|| format!("{fallback}: missing key `name`"))?;
    let what = format!("chain {}", quoted(name));
    if !valid_name(name) {
        return Err(format!(
            "{what}: key `name`: must be 1-32 characters of [a-z0-9_-]"
        ));
    }
    for k in t.keys() {
        if !["name", "dev", "hook", "netns", "select", "act"].contains(&k.as_str()) {
            return Err(format!(
                "{what}: unknown key `{}` (name, dev, hook, netns, select, act)",
                bare(k)
            ));
        }
    }
    let dev = get_str(t, "dev", &what)?.ok_or_else(|| format!("{what}: missing key `dev`"))?;
    check_dev(dev).map_err(|e| format!("{what}: key `dev`: {e}"))?;
    let hook = get_str(t, "hook", &what)?.ok_or_else(|| format!("{what}: missing key `hook`"))?;
    let hook = Hook::from_str(hook).map_err(|e| format!("{what}: key `hook`: {e}"))?;
    let netns = get_str(t, "netns", &what)?.map(str::to_owned);
    if let Some(n) = &netns {
        crate::kernel::netns::check_name(n).map_err(|e| format!("{what}: key `netns`: {e}"))?;
    }
    let mut select = Vec::new();
    for (i, s) in stage_tables(t, "select", &what)?.into_iter().enumerate() {
        select.push(parse_selector(s, &format!("{what}: select[{i}]"))?);
    }
    let mut act = Vec::new();
    for (i, a) in stage_tables(t, "act", &what)?.into_iter().enumerate() {
        act.push(parse_actor(a, &format!("{what}: act[{i}]"))?);
    }
    if act.is_empty() {
        return Err(format!(
            "{what}: no [[chain.act]]: a chain needs at least one actor"
        ));
    }
    let entries = (select
        .iter()
        .map(|s| ("select", stages::selector_entry(&s.kind))))
    .enumerate()
    .chain(
        act.iter()
            .map(|a| ("act", stages::actor_entry(a)))
            .enumerate(),
    );
    for (i, (list, e)) in entries {
        if !e.hooks.contains(&hook.as_str()) {
            return Err(format!("{what}: {list}[{i}] ({}): {}", e.kind, e.hooks_why));
        }
    }
    Ok(Chain {
        name: name.to_owned(),
        dev: dev.to_owned(),
        hook,
        netns,
        select,
        act,
    })
}

fn stage_tables<'a>(t: &'a Table, key: &str, what: &str) -> Result<Vec<&'a Table>, String> {
    match t.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_table()
                    .ok_or_else(|| format!("{what}: {key}[{i}]: not a table"))
            })
            .collect(),
        Some(_) => Err(format!(
            "{what}: key `{key}` must be an array of tables ([[chain.{key}]])"
        )),
    }
}

/// Checks a stage table's keys against the catalogue entry for its kind,
/// and returns that entry.
fn check_keys(
    t: &Table,
    kind: &str,
    role: StageRole,
    what: &str,
) -> Result<&'static Entry, String> {
    let entry = stages::find_role(kind, role).ok_or_else(|| {
        let names: Vec<&str> = stages::CATALOG
            .iter()
            .filter(|e| e.role == role)
            .map(|e| e.kind)
            .collect();
        format!(
            "{what}: unknown kind {} (known: {})",
            quoted(kind),
            names.join(", ")
        )
    })?;
    for k in t.keys() {
        let common = k == "kind" || (role == StageRole::Selector && (k == "op" || k == "not"));
        if !common && !entry.params.iter().any(|p| p.name == k) {
            let known: Vec<&str> = entry.params.iter().map(|p| p.name).collect();
            return Err(format!(
                "{what} ({kind}): unknown key `{}` (known: {})",
                bare(k),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    for p in entry.params {
        if p.required && !t.contains_key(p.name) {
            return Err(format!("{what} ({kind}): missing key `{}`", p.name));
        }
        if let (Some(v), ParamType::Bool) = (t.get(p.name), p.ty) {
            let map_ok = v.is_table() && entry.map_param.is_some_and(|(n, _)| n == p.name);
            if !v.is_bool() && !map_ok {
                return Err(format!(
                    "{what} ({kind}): key `{}`: expected true or false, got {}",
                    p.name,
                    v.type_str()
                ));
            }
        }
    }
    Ok(entry)
}

fn parse_selector(t: &Table, what: &str) -> Result<Selector, String> {
    let kind = get_str(t, "kind", what)?.ok_or_else(|| format!("{what}: missing key `kind`"))?;
    let entry = check_keys(t, kind, StageRole::Selector, what)?;
    let what = format!("{what} ({kind})");
    let op = match get_str(t, "op", &what)? {
        None | Some("and") => Op::And,
        Some("or") => Op::Or,
        Some(o) => {
            return Err(format!(
                "{what}: key `op`: {} is not `and` or `or`",
                quoted(o)
            ))
        }
    };
    let not = get_bool(t, "not", &what)?.unwrap_or(false);
    let Parse::Selector(parse) = entry.parse else {
        unreachable!("a selector's entry parses a selector")
    };
    let kind = parse(&Args {
        t,
        what: &what,
        entry,
    })?;
    Ok(Selector { op, not, kind })
}

fn parse_actor(t: &Table, what: &str) -> Result<Actor, String> {
    let kind = get_str(t, "kind", what)?.ok_or_else(|| format!("{what}: missing key `kind`"))?;
    let entry = check_keys(t, kind, StageRole::Actor, what)?;
    let what = format!("{what} ({kind})");
    let Parse::Actor(parse) = entry.parse else {
        unreachable!("an actor's entry parses an actor")
    };
    parse(&Args {
        t,
        what: &what,
        entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[chain]]
name = "wifi-backup"
dev  = "veth1"
hook = "tc-egress"
  [[chain.select]]
  kind = "ip_pair"
  src  = "10.1.0.1"
  dst  = "10.1.0.2"
  [[chain.select]]
  kind  = "packet_type"
  op    = "or"
  types = ["dss_ack"]
  [[chain.act]]
  kind   = "set_backup"
  backup = true
"#;

    #[test]
    fn parses_the_example() {
        let p = Policy::parse(GOOD, "p.toml").expect("valid policy");
        assert_eq!(p.chains.len(), 1);
        let c = &p.chains[0];
        assert_eq!(c.name, "wifi-backup");
        assert_eq!(c.hook, Hook::TcEgress);
        assert_eq!(c.select.len(), 2);
        assert_eq!(c.select[1].op, Op::Or);
        assert_eq!(
            c.select[0].kind,
            SelectorKind::IpPair {
                src: Some("10.1.0.1".parse().unwrap()),
                dst: Some("10.1.0.2".parse().unwrap()),
                bidir: false
            }
        );
        assert_eq!(
            c.act,
            vec![Actor::SetBackup {
                backup: true,
                once: true,
                map: None
            }]
        );
    }

    fn err_of(text: &str) -> String {
        Policy::parse(text, "p.toml")
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn errors_name_file_chain_and_key() {
        let e = err_of(&GOOD.replace("hook = \"tc-egress\"", "hook = \"egress\""));
        assert_eq!(
            e,
            "p.toml: chain \"wifi-backup\": key `hook`: unknown hook \"egress\" (xdp, tc-ingress, tc-egress)"
        );
        let e = err_of(&GOOD.replace("src  = \"10.1.0.1\"", "src  = \"10.1.0\""));
        assert!(
            e.contains("select[0] (ip_pair): key `src`: \"10.1.0\" is not an IP address"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("dst  = \"10.1.0.2\"", "dst  = \"fe80::1\""));
        assert!(
            e.contains("key `dst`: fe80::1 is not the same family"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("kind = \"ip_pair\"", "kind = \"ip_pairs\""));
        assert!(e.contains("select[0]: unknown kind \"ip_pairs\""), "{e}");
        let e = err_of(&GOOD.replace("backup = true", "backup = \"yes\""));
        assert!(
            e.contains("act[0] (set_backup): key `backup`: expected true or false"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("types = [\"dss_ack\"]", "types = [\"dss_acks\"]"));
        assert!(e.contains("unknown packet type \"dss_acks\""), "{e}");
        let e = err_of(&GOOD.replace("op    = \"or\"", "op    = \"xor\""));
        assert!(e.contains("key `op`: \"xor\" is not `and` or `or`"), "{e}");
        let e = err_of(&GOOD.replace("backup = true", "backup = true\n  speed = 3"));
        assert!(
            e.contains("act[0] (set_backup): unknown key `speed`"),
            "{e}"
        );
    }

    #[test]
    fn parses_path_management_stages() {
        let text = r#"
[[chain]]
name = "pm"
dev = "eth0"
hook = "xdp"
  [[chain.select]]
  kind = "sequence"
  field = "dsn"
  from = "1MiB"
  [[chain.act]]
  kind = "add_subflow"
  [[chain.act]]
  kind = "blk_subflow"
  mode = "join"
"#;
        let p = Policy::parse(text, "pm.toml").expect("valid");
        let c = &p.chains[0];
        assert_eq!(
            c.select[0].kind,
            SelectorKind::Sequence {
                field: SeqField::Dsn,
                from: 1 << 20,
                to: None,
                relative: true
            }
        );
        assert_eq!(
            c.act,
            vec![
                Actor::AddSubflow,
                Actor::BlkSubflow {
                    mode: BlkMode::Join
                }
            ]
        );
        let e = err_of(&text.replace("\"1MiB\"", "\"lots\""));
        assert!(
            e.contains("select[0] (sequence): key `from`: \"lots\" is not a byte count"),
            "{e}"
        );
        let e = err_of(&text.replace("\"dsn\"", "\"seq\""));
        assert!(e.contains("key `field`: \"seq\" is not one of dsn"), "{e}");
        let e = err_of(&text.replace("from = \"1MiB\"", "from = 10\n  to = 5"));
        assert!(e.contains("key `to`: 5 is not above `from` (10)"), "{e}");
        let e = err_of(&text.replace("\"join\"", "\"all\""));
        assert!(
            e.contains("act[1] (blk_subflow): key `mode`: \"all\" is not"),
            "{e}"
        );
        assert_eq!(parse_bytes("1MB"), Some(1_000_000));
        assert_eq!(parse_bytes("1 MiB"), Some(1 << 20));
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("64k"), Some(64_000));
        assert_eq!(parse_bytes("1.5MB"), None);
        assert_eq!(parse_bytes("MB"), None);
    }

    #[test]
    fn rejects_bad_structure() {
        assert!(err_of("").contains("no [[chain]]"));
        let e = err_of("[[chain]\n");
        assert!(e.contains("line 1: not valid TOML"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        assert!(err_of("x = 1").contains("unknown top-level key `x`"));
        let twice = format!("{GOOD}\n{GOOD}");
        assert!(err_of(&twice).contains("chain \"wifi-backup\": duplicate name"));
        let e = err_of(&GOOD.replace("wifi-backup", "Wifi Backup"));
        assert!(e.contains("key `name`: must be 1-32 characters"), "{e}");
        let no_act: String = GOOD.split("[[chain.act]]").next().unwrap().to_owned();
        assert!(err_of(&no_act).contains("needs at least one actor"));
        let e = err_of(&GOOD.replace("dev  = \"veth1\"", "dev = \"a/b\""));
        assert!(e.contains("is not a device name"), "{e}");
    }

    #[test]
    fn parses_catalogue_selectors_and_actors() {
        let text = r#"
[[chain]]
name = "c"
dev = "eth0"
hook = "tc-egress"
  [[chain.select]]
  kind = "subflow"
  saddr = "fd00::1"
  daddr = "fd00::2"
  sport = 40000
  bidir = true
  [[chain.select]]
  kind = "dst"
  addr = "10.0.0.0/8"
  op = "or"
  [[chain.select]]
  kind = "port"
  dport = 5201
  [[chain.act]]
  kind = "set_mark"
  mark = 7
  [[chain.act]]
  kind = "redirect"
  dev = "eth1"
"#;
        let p = Policy::parse(text, "c.toml").expect("valid");
        let c = &p.chains[0];
        assert_eq!(
            c.select[1].kind,
            SelectorKind::Dst {
                addr: "10.0.0.0".parse().unwrap(),
                prefix: 8
            }
        );
        assert_eq!(
            c.act[0],
            Actor::SetMark {
                mark: 7,
                mask: u32::MAX,
                map: None
            }
        );
        assert_eq!(
            c.act[1],
            Actor::Redirect {
                dev: "eth1".into(),
                ingress: false,
                via: None,
                map: None
            }
        );
        let e = err_of(&text.replace("daddr = \"fd00::2\"", "daddr = \"10.0.0.2\""));
        assert!(
            e.contains("key `daddr`: 10.0.0.2 is not the same family as `saddr` fd00::1"),
            "{e}"
        );
        let e = err_of(&text.replace("10.0.0.0/8", "10.0.0.0/33"));
        assert!(
            e.contains("prefix length in \"10.0.0.0/33\" is not 0-32"),
            "{e}"
        );
        let e = err_of(&text.replace("dport = 5201", "dport = 70000"));
        assert!(e.contains("key `dport`: 70000 is not a port"), "{e}");
        let e = err_of(&text.replace("hook = \"tc-egress\"", "hook = \"xdp\""));
        assert!(e.contains("set_mark): needs a tc hook"), "{e}");
    }

    #[test]
    fn rate_limit_units_and_errors() {
        assert_eq!(parse_rate("20mbit"), Ok(20_000_000));
        assert_eq!(parse_rate("5MBps"), Ok(40_000_000));
        assert_eq!(parse_rate("5mbps"), Ok(40_000_000));
        assert_eq!(parse_rate("100kbit"), Ok(100_000));
        assert_eq!(parse_rate("1gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("1.5mbit"), Ok(1_500_000));
        assert_eq!(parse_rate("64000"), Ok(64_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("20 furlongs").is_err());
        assert!(parse_rate("0mbit").is_err());
        assert!(parse_rate("1000gbit").is_err());
        assert_eq!(parse_size("64kb"), Ok(65536));
        assert_eq!(parse_size("1500"), Ok(1500));

        let text = r#"
[[chain]]
name = "rl"
dev = "eth0"
hook = "tc-egress"
  [[chain.select]]
  kind = "ip_pair"
  src = "10.2.0.1"
  [[chain.act]]
  kind = "rate_limit"
  rate = "20mbit"
"#;
        let p = Policy::parse(text, "rl.toml").expect("valid");
        assert_eq!(
            p.chains[0].act[0],
            Actor::RateLimit {
                rate_bps: 20_000_000,
                burst: 2_500_000,
                map: None
            }
        );
        let e = err_of(&text.replace("\"20mbit\"", "\"fast\""));
        assert_eq!(
            e,
            "p.toml: chain \"rl\": act[0] (rate_limit): key `rate`: \"fast\" is not a rate \
             (a number with a tc unit: 100kbit, 20mbit, 1gbit, 5MBps)"
        );
        let e = err_of(&text.replace("rate = \"20mbit\"", "rate = \"20mbit\"\n  burst = \"x\""));
        assert!(
            e.contains("act[0] (rate_limit): key `burst`: \"x\" is not a size"),
            "{e}"
        );
        let e = err_of(&text.replace("rate = \"20mbit\"", "rate = true"));
        assert!(e.contains("key `rate`: expected a rate"), "{e}");
        let e = err_of(&text.replace("rate = \"20mbit\"", "burst = \"64kb\""));
        assert!(e.contains("act[0] (rate_limit): missing key `rate`"), "{e}");
    }
}
