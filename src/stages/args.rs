//! A stage's table in a policy file, read with the stage's catalogue entry
//! at hand: every error names the chain, the stage and the key, and a key
//! left out takes the default the catalogue states (and prints).

use std::net::IpAddr;

use toml::{Table, Value};

use super::Entry;
use crate::cli::text::{bare, quoted};
use crate::policy::model::{KeyOf, MapRef};
use crate::policy::values::{self, get_str, valid_name};

/// The keys of one `[[chain.select]]` or `[[chain.act]]` table.
pub struct Args<'a> {
    pub t: &'a Table,
    /// What errors start with: `chain "c": act[0] (set_mark)`.
    pub what: &'a str,
    pub entry: &'static Entry,
}

impl Args<'_> {
    pub fn has(&self, key: &str) -> bool {
        self.t.contains_key(key)
    }

    /// An error about the stage as a whole.
    pub fn err(&self, msg: &str) -> String {
        format!("{}: {msg}", self.what)
    }

    /// An error about one key.
    pub fn key_err(&self, key: &str, msg: &str) -> String {
        format!("{}: key `{key}`: {msg}", self.what)
    }

    pub fn missing(&self, key: &str) -> String {
        format!("{}: missing key `{key}`", self.what)
    }

    /// The catalogue's default of `key` (a stage asks only for keys that
    /// have one).
    fn default(&self, key: &str) -> &'static str {
        self.entry
            .params
            .iter()
            .find(|p| p.name == key)
            .and_then(|p| p.default)
            .unwrap_or_else(|| {
                panic!(
                    "catalogue: {} states no default for `{key}`",
                    self.entry.kind
                )
            })
    }

    pub fn str(&self, key: &str) -> Result<Option<&str>, String> {
        values::get_str(self.t, key, self.what)
    }

    /// A string key, else its default.
    pub fn name(&self, key: &str) -> Result<&str, String> {
        Ok(self.str(key)?.unwrap_or(self.default(key)))
    }

    /// A bool key, else its default.
    pub fn bool(&self, key: &str) -> Result<bool, String> {
        match values::get_bool(self.t, key, self.what)? {
            Some(b) => Ok(b),
            None => Ok(self
                .default(key)
                .parse()
                .expect("a bool default is true or false")),
        }
    }

    pub fn u32(&self, key: &str) -> Result<Option<u32>, String> {
        values::get_u32(self.t, key, self.what)
    }

    /// A u32 key, else its default (decimal or 0x hex).
    pub fn u32_or_default(&self, key: &str) -> Result<u32, String> {
        if let Some(v) = self.u32(key)? {
            return Ok(v);
        }
        let d = self.default(key);
        Ok(match d.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => d.parse(),
        }
        .expect("a u32 default is a number"))
    }

    pub fn bytes(&self, key: &str) -> Result<Option<u64>, String> {
        values::get_bytes(self.t, key, self.what)
    }

    /// A byte count, else its default.
    pub fn bytes_or_default(&self, key: &str) -> Result<u64, String> {
        match self.bytes(key)? {
            Some(v) => Ok(v),
            None => Ok(values::parse_bytes(self.default(key)).expect("a byte-count default")),
        }
    }

    pub fn addr(&self, key: &str) -> Result<Option<IpAddr>, String> {
        values::parse_addr(self.t, key, self.what)
    }

    /// Two addresses given together are of one family.
    pub fn same_family(
        &self,
        (ka, a): (&str, Option<IpAddr>),
        (kb, b): (&str, Option<IpAddr>),
    ) -> Result<(), String> {
        match (a, b) {
            (Some(a), Some(b)) if a.is_ipv4() != b.is_ipv4() => {
                Err(self.key_err(kb, &format!("{b} is not the same family as `{ka}` {a}")))
            }
            _ => Ok(()),
        }
    }

    pub fn port(&self, key: &str) -> Result<Option<u16>, String> {
        values::get_port(self.t, key, self.what)
    }

    pub fn prefix(&self, key: &str) -> Result<(IpAddr, u8), String> {
        values::parse_prefix(self.t, key, self.what)
    }

    pub fn map_ref(&self, key: &str) -> Result<Option<MapRef>, String> {
        get_map_ref(self.t, key, self.what)
    }

    /// `set = "NAME"`, refusing the literal keys beside it.
    pub fn set(&self, literal: &[&str]) -> Result<String, String> {
        Ok(values::get_set(self.t, literal, self.what)?.unwrap_or_default())
    }

    pub fn rate(&self, key: &str) -> Result<Option<u64>, String> {
        values::get_rate(self.t, key, self.what)
    }

    pub fn size(&self, key: &str) -> Result<Option<u32>, String> {
        values::get_size(self.t, key, self.what)
    }
}

/// `key = { map = "NAME", key = "src" }`: a parameter taken from a map.
fn get_map_ref(t: &Table, key: &str, what: &str) -> Result<Option<MapRef>, String> {
    let Some(Value::Table(m)) = t.get(key) else {
        return Ok(None);
    };
    for k in m.keys() {
        if k != "map" && k != "key" {
            return Err(format!(
                "{what}: key `{key}`: unknown key `{}` (known: map, key)",
                bare(k)
            ));
        }
    }
    let w = format!("{what}: key `{key}`");
    let map = get_str(m, "map", &w)?.ok_or_else(|| format!("{w}: missing key `map`"))?;
    if !valid_name(map) {
        return Err(format!("{w}: map {}: not a map name", quoted(map)));
    }
    let k = get_str(m, "key", &w)?.ok_or_else(|| format!("{w}: missing key `key`"))?;
    let keyof = KeyOf::parse(k)
        .ok_or_else(|| format!("{w}: key {} is not one of {}", quoted(k), KeyOf::NAMES))?;
    Ok(Some(MapRef {
        map: map.to_owned(),
        key: keyof,
    }))
}
