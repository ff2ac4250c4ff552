//! Values in policy files: TOML values read with one-line errors that
//! name the key, and the units of byte counts, rates and sizes.

use std::net::IpAddr;
use std::str::FromStr;

use toml::{Table, Value};

use crate::cli::text::{bare, quoted};

pub fn get_str<'a>(t: &'a Table, key: &str, what: &str) -> Result<Option<&'a str>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(format!(
            "{what}: key `{key}`: expected a string, got {}",
            v.type_str()
        )),
    }
}

pub fn get_bool(t: &Table, key: &str, what: &str) -> Result<Option<bool>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::Boolean(b)) => Ok(Some(*b)),
        Some(v) => Err(format!(
            "{what}: key `{key}`: expected true or false, got {}",
            v.type_str()
        )),
    }
}

/// A TOML value as errors show it (escaped and capped, see text.rs).
pub fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => quoted(s).to_string(),
        v => bare(&v.to_string()).to_string(),
    }
}

/// Checks a device name as the kernel takes it (dev_valid_name): 1-15
/// bytes, not `.` or `..`, no `/`, `:`, NUL or white space.
pub fn check_dev(dev: &str) -> Result<(), String> {
    let ok = !dev.is_empty()
        && dev.len() < 16
        && dev != "."
        && dev != ".."
        && !dev.contains(|c: char| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(format!("{} is not a device name", quoted(dev)))
    }
}

pub fn parse_addr(t: &Table, key: &str, what: &str) -> Result<Option<IpAddr>, String> {
    match get_str(t, key, what)? {
        None => Ok(None),
        Some(s) => IpAddr::from_str(s)
            .map(Some)
            .map_err(|_| format!("{what}: key `{key}`: {} is not an IP address", quoted(s))),
    }
}

pub fn get_port(t: &Table, key: &str, what: &str) -> Result<Option<u16>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::Integer(n)) if (1..=65535).contains(n) => Ok(Some(*n as u16)),
        Some(v) => Err(format!(
            "{what}: key `{key}`: {} is not a port (1-65535)",
            shown(v)
        )),
    }
}

pub fn get_u32(t: &Table, key: &str, what: &str) -> Result<Option<u32>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::Integer(n)) if (0..=u32::MAX as i64).contains(n) => Ok(Some(*n as u32)),
        Some(v) => Err(format!(
            "{what}: key `{key}`: {} is not an integer in 0..=4294967295",
            shown(v)
        )),
    }
}

/// A byte count: a non-negative integer, or a string "<n>[unit]" with
/// unit B, KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of
/// 1024), case-insensitive for the prefix ("1MB", "1 MiB", "64k").
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.replace('_', "").parse().ok()?;
    let unit = unit.trim();
    let lower = unit.to_ascii_lowercase();
    let mul: u64 = match lower.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mul)
}

pub fn get_bytes(t: &Table, key: &str, what: &str) -> Result<Option<u64>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::Integer(n)) if *n >= 0 => Ok(Some(*n as u64)),
        Some(Value::String(s)) => parse_bytes(s).map(Some).ok_or_else(|| {
            format!(
                "{what}: key `{key}`: {} is not a byte count (e.g. 1048576, \"1MB\", \"1MiB\")",
                quoted(s)
            )
        }),
        Some(v) => Err(format!(
            "{what}: key `{key}`: {} is not a byte count (e.g. 1048576, \"1MB\", \"1MiB\")",
            shown(v)
        )),
    }
}

/// "10.0.0.0/8", "fd00::/16" or a plain address (a full-length prefix).
pub fn parse_prefix(t: &Table, key: &str, what: &str) -> Result<(IpAddr, u8), String> {
    let s = get_str(t, key, what)?.ok_or_else(|| format!("{what}: missing key `{key}`"))?;
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr = IpAddr::from_str(a).map_err(|_| {
        format!(
            "{what}: key `{key}`: {} is not an address or prefix",
            quoted(s)
        )
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let plen = match p {
        None => max,
        Some(p) => p.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(|| {
            format!(
                "{what}: key `{key}`: prefix length in {} is not 0-{max}",
                quoted(s)
            )
        })?,
    };
    Ok((addr, plen))
}

/// `set = "NAME"` of a selector, refusing the literal keys beside it.
pub fn get_set(t: &Table, literal: &[&str], what: &str) -> Result<Option<String>, String> {
    let Some(set) = get_str(t, "set", what)? else {
        return Ok(None);
    };
    if !valid_name(set) {
        return Err(format!(
            "{what}: key `set`: {} is not a set name",
            quoted(set)
        ));
    }
    if let Some(k) = literal.iter().find(|k| t.contains_key(**k)) {
        return Err(format!(
            "{what}: key `{k}`: not with `set` (the set holds the values)"
        ));
    }
    Ok(Some(set.to_owned()))
}

/// Rates in tc's units (tc-bandwidth(8)); the suffix is case-insensitive
/// as in tc, so `mbps` is megabytes per second like `MBps`.
const RATE_UNITS: &[(&str, f64)] = &[
    ("bit", 1.0),
    ("kibit", 1024.0),
    ("kbit", 1e3),
    ("mibit", 1024.0 * 1024.0),
    ("mbit", 1e6),
    ("gibit", 1024.0 * 1024.0 * 1024.0),
    ("gbit", 1e9),
    ("tibit", 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("tbit", 1e12),
    ("bps", 8.0),
    ("kibps", 8.0 * 1024.0),
    ("kbps", 8e3),
    ("mibps", 8.0 * 1024.0 * 1024.0),
    ("mbps", 8e6),
    ("gibps", 8.0 * 1024.0 * 1024.0 * 1024.0),
    ("gbps", 8e9),
    ("tibps", 8.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("tbps", 8e12),
];

/// Sizes in tc's units (bytes; `kbit`.. in bits).
const SIZE_UNITS: &[(&str, f64)] = &[
    ("b", 1.0),
    ("k", 1024.0),
    ("kb", 1024.0),
    ("m", 1024.0 * 1024.0),
    ("mb", 1024.0 * 1024.0),
    ("g", 1024.0 * 1024.0 * 1024.0),
    ("gb", 1024.0 * 1024.0 * 1024.0),
    ("kbit", 1024.0 / 8.0),
    ("mbit", 1024.0 * 1024.0 / 8.0),
    ("gbit", 1024.0 * 1024.0 * 1024.0 / 8.0),
];

/// Lowest and highest rate rate_limit takes, in bit/s (8 bit/s .. 100 Gbit/s).
pub const RATE_MIN_BPS: u64 = 8;
pub const RATE_MAX_BPS: u64 = 100_000_000_000;

/// Burst bounds in bytes (the window edge arithmetic is 31-bit).
pub const BURST_MIN: u32 = 1500;
pub const BURST_MAX: u32 = 1 << 30;

/// A number with an optional unit suffix from `units` (bare: factor 1).
fn parse_units(s: &str, units: &[(&str, f64)]) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok().filter(|n: &f64| n.is_finite())?;
    let f = if unit.is_empty() {
        1.0
    } else {
        units
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(unit))
            .map(|(_, f)| *f)?
    };
    Some(n * f)
}

/// Parses a tc-style rate (`20mbit`, `5MBps`; bare number: bit/s) to bit/s.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let bits = parse_units(s, RATE_UNITS).ok_or_else(|| {
        format!(
            "{} is not a rate (a number with a tc unit: 100kbit, 20mbit, 1gbit, 5MBps)",
            quoted(s)
        )
    })?;
    if !(RATE_MIN_BPS as f64..=RATE_MAX_BPS as f64).contains(&bits) {
        return Err(format!("{} is outside 8bit .. 100gbit", quoted(s)));
    }
    Ok(bits.round() as u64)
}

/// Parses a tc-style size (`64kb`, `1mb`; bare number: bytes) to bytes.
pub fn parse_size(s: &str) -> Result<u32, String> {
    let b = parse_units(s, SIZE_UNITS).ok_or_else(|| {
        format!(
            "{} is not a size (a number with a tc unit: 1500, 64kb, 2mb)",
            quoted(s)
        )
    })?;
    if !(BURST_MIN as f64..=BURST_MAX as f64).contains(&b) {
        return Err(format!("{} is outside {BURST_MIN} bytes .. 1gb", quoted(s)));
    }
    Ok(b.round() as u32)
}

/// A string or integer key read with `parse`; `expected` names what the
/// key takes when its value has another type.
fn get_units<T>(
    t: &Table,
    key: &str,
    what: &str,
    expected: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    let text = match t.get(key) {
        None => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Integer(n)) => n.to_string(),
        Some(v) => {
            return Err(format!(
                "{what}: key `{key}`: expected {expected}, got {}",
                v.type_str()
            ))
        }
    };
    parse(&text)
        .map(Some)
        .map_err(|e| format!("{what}: key `{key}`: {e}"))
}

pub fn get_rate(t: &Table, key: &str, what: &str) -> Result<Option<u64>, String> {
    get_units(t, key, what, "a rate such as \"20mbit\"", parse_rate)
}

pub fn get_size(t: &Table, key: &str, what: &str) -> Result<Option<u32>, String> {
    get_units(t, key, what, "a size such as \"64kb\"", parse_size)
}

/// Checks a chain name: `[a-z0-9_-]`, 1..=32 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
