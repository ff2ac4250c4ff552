//! Named sets and maps (nftables-style): their key and value types, the
//! text form of their elements, and the kernel objects that hold them.
//!
//! Each table is a BPF map put at its id into the outer map
//! (ARRAY_OF_MAPS) of its key layout, pinned in the state directory as
//! `emptcp_g_tab_<layout>` (include/emptcp/tables.h): an array the BPF
//! side probes itself for addr, pair, subflow and port keys (slots.rs); a
//! prefix table is two LPM tries, one per family, in two outer maps
//! (tries.rs), and its IPv4 prefixes again in a slot table that lookups
//! probe per prefix length (index.rs). Stages name a table by (layout, id, and a slot
//! table's size) in their .rodata; the table itself is not pinned: it
//! lives as long as its outer slot holds it. Replacing a table's contents
//! as a whole (apply, flush, a rebuild) builds a new map and swaps it into
//! the slot in one update; `add`/`del` change elements in place, each
//! atomically.

pub mod index;
pub mod sets;
pub mod slots;
pub mod tries;

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use serde::{Deserialize, Serialize};

use crate::abi;
/// Tables per key layout: ids 1 ..= MAX_TABLES - 1.
pub use crate::abi::MAX_TABLES;
use crate::cli::text::quoted;
use crate::runtime::state::StateDir;

/// Elements a table holds unless its `size` says otherwise.
pub const DEFAULT_SIZE: u32 = 65_536;
/// The most elements one table may hold.
pub const MAX_SIZE: u32 = 1 << 24;

const BPF_F_NO_PREALLOC: u32 = 1;

/// What a table's elements are keyed by (`type` of a set, `key` of a map).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// One address, IPv4 or IPv6: `10.0.0.1`, `fd00::1`.
    Addr,
    /// An address prefix: `10.0.0.0/24`, `fd00::/64` (longest match).
    Prefix,
    /// (source, destination): `10.0.0.1 . 10.0.0.2`.
    Pair,
    /// A TCP 4-tuple: `10.0.0.1:40000 . 10.0.0.2:80`, `[fd00::1]:1 . [fd00::2]:2`.
    Subflow,
    /// A TCP port: `80`.
    Port,
}

/// A map's values (a set has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    U32,
    /// A rate in tc units (`20mbit`), kept as bytes per second.
    Rate,
    Bool,
    /// A device of the table's namespace, kept as its ifindex.
    Dev,
}

pub const KEY_TYPES: &str = "addr, prefix, pair, subflow, port";
pub const VALUE_TYPES: &str = "u32, rate, bool, dev";

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "addr" => KeyType::Addr,
            "prefix" => KeyType::Prefix,
            "pair" => KeyType::Pair,
            "subflow" => KeyType::Subflow,
            "port" => KeyType::Port,
            _ => return Err(format!("{} is not one of {KEY_TYPES}", quoted(s))),
        })
    }
}

impl FromStr for ValueType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "u32" => ValueType::U32,
            "rate" => ValueType::Rate,
            "bool" => ValueType::Bool,
            "dev" => ValueType::Dev,
            _ => return Err(format!("{} is not one of {VALUE_TYPES}", quoted(s))),
        })
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Addr => "addr",
            KeyType::Prefix => "prefix",
            KeyType::Pair => "pair",
            KeyType::Subflow => "subflow",
            KeyType::Port => "port",
        })
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::U32 => "u32",
            ValueType::Rate => "rate",
            ValueType::Bool => "bool",
            ValueType::Dev => "dev",
        })
    }
}

/// The kernel layout of a key type (abi.h enum emptcp_layout).
impl KeyType {
    pub fn layout(self) -> u8 {
        match self {
            KeyType::Addr => abi::LAYOUT_ADDR,
            KeyType::Pair => abi::LAYOUT_PAIR,
            KeyType::Subflow => abi::LAYOUT_SUBFLOW,
            KeyType::Port => abi::LAYOUT_PORT,
            KeyType::Prefix => abi::LAYOUT_PREFIX,
        }
    }

    pub fn key_size(self) -> u32 {
        match self {
            KeyType::Addr => 16,
            KeyType::Pair => 32,
            KeyType::Subflow => 36,
            KeyType::Port => 4,
            KeyType::Prefix => 20,
        }
    }

    pub const ALL: [KeyType; 5] = [
        KeyType::Addr,
        KeyType::Pair,
        KeyType::Subflow,
        KeyType::Port,
        KeyType::Prefix,
    ];
}

/// A named table as the policy file or the command line declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    pub key: KeyType,
    /// None: a set.
    pub value: Option<ValueType>,
    pub size: u32,
    /// Namespace whose devices `dev` values name.
    pub netns: Option<String>,
}

impl TableDef {
    pub fn what(&self) -> &'static str {
        if self.value.is_some() {
            "map"
        } else {
            "set"
        }
    }
}

impl TableDef {
    /// The flags of a reference to this table: a slot table's log2 size
    /// (abi.h EMPTCP_TAB_BITS_SHIFT), which the BPF side needs as a
    /// constant. A table whose size changes it is made anew under a new id.
    pub fn ref_flags(&self) -> u8 {
        match slots::key_words(self.key) {
            Some(_) => (slots::slot_bits(self.size) as u8) << abi::TAB_BITS_SHIFT,
            None => 0,
        }
    }
}

/// A table as applied: its definition and its id in its layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableState {
    pub def: TableDef,
    pub id: u8,
}

/// An IP address as 16 bytes, IPv4 mapped (tables.h).
fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn addr_of16(b: &[u8]) -> IpAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    let v6 = Ipv6Addr::from(o);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    IpAddr::from_str(s.trim()).map_err(|_| format!("{} is not an IP address", quoted(s.trim())))
}

fn parse_sock(s: &str) -> Result<SocketAddr, String> {
    SocketAddr::from_str(s.trim()).map_err(|_| {
        format!(
            "{} is not an address:port (10.0.0.1:80, [fd00::1]:80)",
            quoted(s.trim())
        )
    })
}

/// Splits a concatenation `A . B` (nftables) into its two parts.
fn concat(s: &str) -> Result<(&str, &str), String> {
    s.split_once(" . ")
        .ok_or_else(|| format!("{} is not `A . B` (two parts joined by \" . \")", quoted(s)))
}

/// The key bytes of an element in its text form.
pub fn parse_key(kt: KeyType, s: &str) -> Result<Vec<u8>, String> {
    Ok(match kt {
        KeyType::Addr => addr16(parse_ip(s)?).to_vec(),
        KeyType::Prefix => {
            let (a, len) = match s.split_once('/') {
                Some((a, l)) => (parse_ip(a)?, Some(l)),
                None => (parse_ip(s)?, None),
            };
            let max = if a.is_ipv4() { 32 } else { 128 };
            let len: u32 = match len {
                None => max,
                Some(l) => l
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| format!("prefix length in {} is not 0-{max}", quoted(s)))?,
            };
            let bits = if a.is_ipv4() { 96 + len } else { len };
            let mut a16 = addr16(a);
            // the bits past the prefix are not part of the key
            for (i, b) in a16.iter_mut().enumerate() {
                let keep = (bits as usize).saturating_sub(i * 8).min(8);
                *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
            }
            let mut k = bits.to_ne_bytes().to_vec();
            k.extend_from_slice(&a16);
            k
        }
        KeyType::Pair => {
            let (a, b) = concat(s)?;
            let (a, b) = (parse_ip(a)?, parse_ip(b)?);
            let mut k = addr16(a).to_vec();
            k.extend_from_slice(&addr16(b));
            k
        }
        KeyType::Subflow => {
            let (a, b) = concat(s)?;
            let (a, b) = (parse_sock(a)?, parse_sock(b)?);
            let mut k = addr16(a.ip()).to_vec();
            k.extend_from_slice(&addr16(b.ip()));
            k.extend_from_slice(&a.port().to_be_bytes());
            k.extend_from_slice(&b.port().to_be_bytes());
            k
        }
        KeyType::Port => {
            let p: u16 = s
                .trim()
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{} is not a port (1-65535)", quoted(s)))?;
            let mut k = p.to_be_bytes().to_vec();
            k.extend_from_slice(&[0, 0]);
            k
        }
    })
}

/// The text form of a key (the inverse of `parse_key`).
pub fn format_key(kt: KeyType, k: &[u8]) -> String {
    if k.len() < kt.key_size() as usize {
        return "?".into();
    }
    let sock = |a: &[u8], p: &[u8]| {
        SocketAddr::new(addr_of16(a), u16::from_be_bytes([p[0], p[1]])).to_string()
    };
    match kt {
        KeyType::Addr => addr_of16(k).to_string(),
        KeyType::Prefix => {
            let bits = u32::from_ne_bytes([k[0], k[1], k[2], k[3]]);
            let a = addr_of16(&k[4..]);
            let len = if a.is_ipv4() {
                bits.saturating_sub(96)
            } else {
                bits
            };
            format!("{a}/{len}")
        }
        KeyType::Pair => format!("{} . {}", addr_of16(&k[..16]), addr_of16(&k[16..32])),
        KeyType::Subflow => format!(
            "{} . {}",
            sock(&k[..16], &k[32..34]),
            sock(&k[16..32], &k[34..36])
        ),
        KeyType::Port => u16::from_be_bytes([k[0], k[1]]).to_string(),
    }
}

/// A value in its text form; `dev` names a device of `netns`.
pub fn parse_value(vt: ValueType, s: &str, netns: Option<&str>) -> Result<u64, String> {
    let s = s.trim();
    match vt {
        ValueType::U32 => {
            let v = match s.strip_prefix("0x") {
                Some(h) => u32::from_str_radix(h, 16).ok(),
                None => s.parse::<u32>().ok(),
            };
            v.map(u64::from)
                .ok_or_else(|| format!("{} is not a 32-bit number", quoted(s)))
        }
        ValueType::Rate => {
            let bps = crate::policy::values::parse_rate(s)?;
            Ok((bps / 8).max(1))
        }
        ValueType::Bool => match s {
            "true" | "1" | "yes" => Ok(1),
            "false" | "0" | "no" => Ok(0),
            _ => Err(format!("{} is not true or false", quoted(s))),
        },
        ValueType::Dev => {
            crate::kernel::netns::run_in(netns, || crate::kernel::netns::ifindex(s, netns))
                .map(u64::from)
                .map_err(|e| format!("{e:#}"))
        }
    }
}

/// The text form of a value.
pub fn format_value(vt: ValueType, v: u64, netns: Option<&str>) -> String {
    match vt {
        ValueType::U32 => v.to_string(),
        ValueType::Rate => format!("{}bit", v * 8),
        ValueType::Bool => (v != 0).to_string(),
        ValueType::Dev => crate::kernel::netns::run_in(netns, || {
            Ok(nix::net::if_::if_indextoname(v as u32)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("ifindex {v}")))
        })
        .unwrap_or_else(|_| format!("ifindex {v}")),
    }
}

/// One element in its text form: `KEY` for a set, `KEY=VALUE` for a map.
pub fn parse_element(def: &TableDef, s: &str) -> Result<(Vec<u8>, u64), String> {
    let what = |e: String| {
        format!(
            "{} {}: element {}: {e}",
            def.what(),
            quoted(&def.name),
            quoted(s)
        )
    };
    match def.value {
        None => Ok((parse_key(def.key, s).map_err(what)?, 1)),
        Some(vt) => {
            let (k, v) = s
                .rsplit_once('=')
                .ok_or_else(|| what("expected KEY=VALUE".into()))?;
            Ok((
                parse_key(def.key, k).map_err(what)?,
                parse_value(vt, v, def.netns.as_deref()).map_err(what)?,
            ))
        }
    }
}

/// The kernel maps a table is made of, each at the table's id in an
/// outer map of its own (ARRAY_OF_MAPS, pinned as `emptcp_g_tab_<part>`,
/// tables.h): one for most key types, two tries for prefixes (tries.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// addr, pair, subflow: an array of 2^bits + 1 slots (slots.rs), in
    /// the outer map of its key type and size
    Slots(KeyType, u32),
    /// port: an array indexed by the port
    Port,
    /// prefix: the IPv4 trie (its IPv4 index is Slots(Prefix, bits))
    Prefix4,
    /// prefix: the IPv6 trie
    Prefix6,
}

impl Part {
    /// The parts whose outer map is one whatever the tables' sizes.
    pub const FIXED: [Part; 3] = [Part::Port, Part::Prefix4, Part::Prefix6];

    /// The parts of table `def`.
    pub fn of(def: &TableDef) -> Vec<Part> {
        match def.key {
            KeyType::Port => vec![Part::Port],
            KeyType::Prefix => vec![Part::Prefix4, Part::Prefix6, Part::index_of(def)],
            kt => vec![Part::Slots(kt, slots::slot_bits(def.size))],
        }
    }

    /// A prefix table's IPv4 index (index.rs): a slot table of its size.
    pub fn index_of(def: &TableDef) -> Part {
        Part::Slots(KeyType::Prefix, slots::slot_bits(def.size))
    }

    /// The outer map's pin name; for FIXED also its name in the BPF
    /// objects (tables.h).
    pub fn outer_pin(self) -> String {
        match self {
            Part::Slots(kt, bits) => format!("emptcp_g_tab_{kt}_{bits}"),
            Part::Port => "emptcp_g_tab_port".into(),
            Part::Prefix4 => "emptcp_g_tab_prefix4".into(),
            Part::Prefix6 => "emptcp_g_tab_prefix".into(),
        }
    }

    /// The part whose outer map a BPF object names `name`: one of
    /// FIXED (the slot tables' are reached through bindings, bind_outers).
    pub fn by_outer_pin(name: &str) -> Option<Part> {
        Part::FIXED.into_iter().find(|p| p.outer_pin() == name)
    }

    /// The outer map's kernel name (15 characters at most): made by an
    /// emptcp whose tables are today's, so that check_outer needs no probe.
    fn kernel_name(self) -> String {
        match self {
            Part::Slots(kt, bits) => {
                let c = match kt {
                    KeyType::Prefix => 'f',
                    kt => kt.to_string().as_bytes()[0] as char,
                };
                format!("emptcp_t3_{c}{bits}")
            }
            Part::Port => "emptcp_t2_port".into(),
            Part::Prefix4 => "emptcp_t2_pfx4".into(),
            Part::Prefix6 => "emptcp_t2_pfx6".into(),
        }
    }

    /// What its tables hold, for messages.
    fn what(self) -> String {
        match self {
            Part::Slots(KeyType::Prefix, bits) => format!("IPv4 prefix index (2^{bits} slots)"),
            Part::Slots(kt, bits) => format!("{kt} (2^{bits} slots)"),
            Part::Port => "port".into(),
            Part::Prefix4 => "IPv4 prefix".into(),
            Part::Prefix6 => "IPv6 prefix".into(),
        }
    }

    /// A fresh, empty map of this part for `size` elements (a slot
    /// table: of this part's size whatever `size`).
    fn create(self, size: u32, name: &str) -> Result<MapHandle> {
        match self {
            Part::Slots(kt, bits) => slots::create_bits(kt, bits, name),
            Part::Port => slots::create(KeyType::Port, size, name),
            Part::Prefix4 => tries::create(true, size, name),
            Part::Prefix6 => tries::create(false, size, name),
        }
    }
}

/// Binds the slot tables that the stages `descs` of one program look up:
/// the outer maps of the sizes their references name (abi.h
/// emptcp_tab_ref: a `lookup` selector's first 4 parameter bytes, an
/// actor's last 4 when its parameter comes from a map), in the order
/// first named, each reference's binding written into its flags. Returns
/// the outer map of each binding (tables.h tab_bind0..); one line when
/// the program names more sizes than it has bindings.
pub fn assign_binds(descs: &mut [abi::types::emptcp_stage], what: &str) -> Result<Vec<Part>> {
    use abi::{KIND_LOOKUP, KIND_RATE_LIMIT, KIND_REDIRECT, KIND_SET_BACKUP, KIND_SET_MARK};
    let mut used: Vec<Part> = Vec::new();
    for d in descs.iter_mut() {
        let r = match d.kind {
            KIND_LOOKUP => &mut d.param[..4],
            KIND_SET_MARK | KIND_RATE_LIMIT | KIND_SET_BACKUP | KIND_REDIRECT => {
                &mut d.param[abi::PARAM_TAB_OFF..]
            }
            _ => continue,
        };
        let kt = [
            KeyType::Addr,
            KeyType::Prefix,
            KeyType::Pair,
            KeyType::Subflow,
        ]
        .into_iter()
        .find(|kt| kt.layout() == r[1]);
        let (Some(kt), true) = (kt, r[0] != 0) else {
            continue;
        };
        let p = Part::Slots(kt, u32::from(r[3] >> abi::TAB_BITS_SHIFT));
        let j = match used.iter().position(|u| *u == p) {
            Some(j) => j,
            None => {
                used.push(p);
                used.len() - 1
            }
        };
        r[3] = (r[3] & !(abi::TAB_BIND_MASK << abi::TAB_BIND_SHIFT))
            | ((j as u8) << abi::TAB_BIND_SHIFT);
    }
    if used.len() > abi::TAB_BINDS {
        bail!(
            "{what} looks up addr, prefix, pair and subflow tables of {} sizes; one program holds {}: \
             give the sets and maps it uses fewer sizes",
            used.len(),
            abi::TAB_BINDS
        );
    }
    Ok(used)
}

/// Binds `open`'s tab_bind0.. (tables.h) to the outer maps `used` names
/// (assign_binds): the pinned ones under `dir` (made when missing), or,
/// without `dir` (`check`), an empty one of the same layout made for this
/// load. A binding `used` does not fill is left out of the object
/// (libbpf's autocreate off): no reference names it.
pub fn bind_outers(
    open: &mut libbpf_rs::OpenObject,
    used: &[Part],
    dir: Option<&Path>,
) -> Result<()> {
    for mut m in open.maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        let Some(j) = name
            .strip_prefix("tab_bind")
            .and_then(|j| j.parse::<usize>().ok())
        else {
            continue;
        };
        let Some(&p) = used.get(j) else {
            m.set_autocreate(false)?;
            continue;
        };
        let fd = match (dir, p) {
            (Some(dir), _) => outer_at(&dir.join(p.outer_pin()), p, None)?,
            (None, Part::Slots(kt, _)) => {
                outer_of(Part::Slots(kt, abi::TAB_MIN_BITS), None, "emptcp_t3_check")?
            }
            (None, _) => continue,
        };
        m.reuse_fd(fd.as_fd())
            .with_context(|| format!("failed to reuse the {} tables map", p.what()))?;
    }
    Ok(())
}

/// The outer map of `part`, created and pinned when missing. Its
/// definition is tables.h's, so that stage objects reuse it.
pub fn outer(sd: &StateDir, part: Part) -> Result<MapHandle> {
    outer_at(&sd.dir.join(part.outer_pin()), part, None)
}

/// The outer map pinned at `path`, created and pinned there when missing
/// (by this emptcp, with its kernel name: see check_outer), with `like`
/// as its tables' template when given (a table of this part: a slot
/// table of a large size is not made twice).
pub fn outer_at(path: &Path, part: Part, like: Option<&MapHandle>) -> Result<MapHandle> {
    if std::fs::symlink_metadata(path).is_ok() {
        let m = open_outer(path)?;
        check_outer(&m, part, path)?;
        return Ok(m);
    }
    let mut m = outer_of(part, like, &part.kernel_name())?;
    m.pin(path)
        .with_context(|| format!("failed to pin {}", path.display()))?;
    Ok(m)
}

/// A new, empty outer map of `part` called `name`, with `like` as its
/// tables' template when given.
fn outer_of(part: Part, like: Option<&MapHandle>, name: &str) -> Result<MapHandle> {
    let made;
    let template = match like {
        Some(t) => t,
        None => {
            made = part.create(1, "tmpl")?;
            &made
        }
    };
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        inner_map_fd: template.as_fd().as_raw_fd() as u32,
        ..Default::default()
    };
    MapHandle::create(
        MapType::ArrayOfMaps,
        Some(name.to_string()),
        4,
        4,
        MAX_TABLES,
        &opts,
    )
    .with_context(|| format!("failed to create the {} tables map", part.what()))
}

/// Whether the pinned outer map at `path` (named `name`) takes this
/// emptcp's tables; Ok for any other map. See check_outer.
pub fn check_pinned_outer(name: &str, pinned: &MapHandle, path: &Path) -> Result<()> {
    match Part::by_outer_pin(name) {
        Some(p) => check_outer(pinned, p, path),
        None => Ok(()),
    }
}

/// An outer map keeps the inner map type it was made with: one made by an
/// emptcp whose tables were kernel hash maps refuses today's arrays, and
/// stages built against it would not load. Id 0 is never a table (it means
/// "the literal parameter"), so a table of today's type put there and
/// taken out again tells, without touching any table in use. Each update
/// of a map of maps waits for an RCU grace period (two per probe, 16–24 ms
/// here, ~140 ms for the six outer maps of every `apply`), so an outer map
/// named by this emptcp (Part::kernel_name) is taken as it is, and any
/// other is probed once per process.
fn check_outer(m: &MapHandle, part: Part, path: &Path) -> Result<()> {
    static CHECKED: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());
    if m.info()
        .is_ok_and(|i| i.name().ok() == Some(part.kernel_name().as_str()))
    {
        return Ok(());
    }
    let meta =
        std::fs::metadata(path).with_context(|| format!("failed to stat {}", path.display()))?;
    let pin = (
        std::os::unix::fs::MetadataExt::dev(&meta),
        std::os::unix::fs::MetadataExt::ino(&meta),
    );
    if CHECKED.lock().map(|c| c.contains(&pin)).unwrap_or(false) {
        return Ok(());
    }
    let probe = part.create(1, "probe")?;
    let fd = (probe.as_fd().as_raw_fd() as u32).to_ne_bytes();
    if m.update(&0u32.to_ne_bytes(), &fd, MapFlags::ANY).is_err() {
        return Err(crate::kernel::loader::StaleMap(format!(
            "{} holds {} tables of an older emptcp (another table type): \
             remove the old state with `emptcp detach --all`, then apply again",
            path.display(),
            part.what()
        ))
        .into());
    }
    let _ = m.delete(&0u32.to_ne_bytes());
    if let Ok(mut c) = CHECKED.lock() {
        c.push(pin);
    }
    Ok(())
}

/// Fills `m` (keys of `ks` bytes) with `elems` (batches of 4096).
fn fill(m: &MapHandle, ks: usize, elems: &[(Vec<u8>, u64)]) -> Result<()> {
    for chunk in elems.chunks(4096) {
        let mut keys = Vec::with_capacity(chunk.len() * ks);
        let mut vals = Vec::with_capacity(chunk.len() * 8);
        for (k, v) in chunk {
            keys.extend_from_slice(k);
            vals.extend_from_slice(&v.to_ne_bytes());
        }
        let batch = m.update_batch(
            &keys,
            &vals,
            chunk.len() as u32,
            MapFlags::ANY,
            MapFlags::ANY,
        );
        // kernels without batch updates for this map type (LPM tries
        // before generic batch ops): one update per element
        if batch.is_err() {
            for (k, v) in chunk {
                m.update(k, &v.to_ne_bytes(), MapFlags::ANY)
                    .map_err(|e| anyhow!("{e}"))?;
            }
        }
    }
    Ok(())
}

/// A table made and filled, not yet in its slot: one map per part.
pub struct Built(Vec<(Part, MapHandle)>);

impl Built {
    /// The kernel maps, one per part of the table.
    pub fn maps(&self) -> impl Iterator<Item = &MapHandle> {
        self.0.iter().map(|(_, m)| m)
    }
}

/// A new table holding exactly `elems`, not yet in any slot.
pub fn build(def: &TableDef, elems: &[(Vec<u8>, u64)]) -> Result<Built> {
    if elems.len() > def.size as usize {
        bail!(
            "{} {}: {} elements do not fit its size {}",
            def.what(),
            quoted(&def.name),
            elems.len(),
            def.size
        );
    }
    if def.key == KeyType::Prefix {
        let t = tries::Tries::new(def.size, &def.name)?;
        t.fill_new(def, elems)
            .with_context(|| format!("failed to fill {} {}", def.what(), quoted(&def.name)))?;
        let ix = Part::index_of(def);
        return Ok(Built(vec![
            (Part::Prefix4, t.v4),
            (Part::Prefix6, t.v6),
            (ix, t.ix),
        ]));
    }
    let m = slots::create(def.key, def.size, &def.name)?;
    let a = slots::ArrayTable::open(def.key, &m)?;
    match a.add(elems, def.size as usize) {
        Ok(()) => Ok(Built(vec![(Part::of(def)[0], m)])),
        Err(r) => Err(refused(def, r)),
    }
}

/// The one line for elements an array table refused.
fn refused(def: &TableDef, r: slots::Refused) -> anyhow::Error {
    match r {
        slots::Refused::Full(have, new) => anyhow!(
            "{} {} is full: {have} elements and {new} new do not fit its size {}",
            def.what(),
            quoted(&def.name),
            def.size
        ),
        slots::Refused::NoSlot(k) => anyhow!(
            "{} {}: element {} cannot be placed: the {} slots from its hash are taken \
             (give the {} a larger size)",
            def.what(),
            quoted(&def.name),
            quoted(&format_key(def.key, &k)),
            slots::PROBES,
            def.what()
        ),
        slots::Refused::Map(e) => e.context(format!("{} {}", def.what(), quoted(&def.name))),
    }
}

/// Puts `b` into table `t`'s slot: packets see the whole old table or the
/// whole new one (a prefix table: per family; the tries go first, then the
/// IPv4 index, which sends a lookup to the new trie or holds the same).
pub fn install(sd: &StateDir, t: &TableState, b: &Built) -> Result<()> {
    for (part, m) in &b.0 {
        outer_at(&sd.dir.join(part.outer_pin()), *part, Some(m))?
            .update(
                &u32::from(t.id).to_ne_bytes(),
                &(m.as_fd().as_raw_fd() as u32).to_ne_bytes(),
                MapFlags::ANY,
            )
            .with_context(|| {
                format!("failed to install {} {}", t.def.what(), quoted(&t.def.name))
            })?;
    }
    Ok(())
}

/// The pinned outer map of `part`, opened only: reading a slot or emptying
/// it needs no check of the inner map type (check_outer, which costs two
/// RCU grace periods, ~35 ms, once per process: a `set add` paid it).
fn pinned_outer(sd: &StateDir, part: Part) -> Result<MapHandle> {
    open_outer(&sd.dir.join(part.outer_pin()))
}

fn open_outer(path: &Path) -> Result<MapHandle> {
    MapHandle::from_pinned_path(path).with_context(|| format!("failed to open {}", path.display()))
}

/// Empties table `t`'s slot.
pub fn uninstall(sd: &StateDir, t: &TableState) {
    for part in Part::of(&t.def) {
        if let Ok(o) = pinned_outer(sd, part) {
            let _ = o.delete(&u32::from(t.id).to_ne_bytes());
        }
    }
}

/// The id of the kernel map of `part` in table `t`'s slot.
pub fn map_id(sd: &StateDir, t: &TableState, part: Part) -> Result<u32> {
    pinned_outer(sd, part)?
        .lookup(&u32::from(t.id).to_ne_bytes(), MapFlags::ANY)?
        .and_then(|v| {
            v.get(..4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        })
        .with_context(|| {
            format!(
                "{} {} has no table in the kernel",
                t.def.what(),
                quoted(&t.def.name)
            )
        })
}

/// The map of `part` in table `t`'s slot.
fn open_map(sd: &StateDir, t: &TableState, part: Part) -> Result<MapHandle> {
    MapHandle::from_map_id(map_id(sd, t, part)?)
        .with_context(|| format!("failed to open {} {}", t.def.what(), quoted(&t.def.name)))
}

/// An applied table, opened.
pub enum Table {
    /// addr, pair, subflow, port: the array, mapped
    Array(slots::ArrayTable),
    /// prefix: a trie per family
    Tries(tries::Tries),
}

/// The table in `t`'s slot.
pub fn open(sd: &StateDir, t: &TableState) -> Result<Table> {
    Ok(match t.def.key {
        KeyType::Prefix => Table::Tries(tries::Tries {
            v4: open_map(sd, t, Part::Prefix4)?,
            v6: open_map(sd, t, Part::Prefix6)?,
            ix: open_map(sd, t, Part::index_of(&t.def))?,
        }),
        kt => Table::Array(slots::ArrayTable::open(
            kt,
            &open_map(sd, t, Part::of(&t.def)[0])?,
        )?),
    })
}

impl Table {
    /// Every element: (key bytes, value), in key order.
    pub fn elements(&self) -> Result<Vec<(Vec<u8>, u64)>> {
        Ok(match self {
            Table::Array(a) => a.elements()?,
            Table::Tries(t) => t.elements(),
        })
    }

    /// Elements held.
    pub fn len(&self) -> Result<usize> {
        match self {
            Table::Array(a) => a.len(),
            Table::Tries(t) => Ok(t.len()),
        }
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// Adds (or, for a map, changes) elements of applied table `t`, all or
/// none. An array table is written in place; when a key finds no free
/// slot within PROBES (slots of deleted elements are free only for their
/// own key), the table is rebuilt with its elements and the new ones and
/// swapped in whole. A table that cannot take them all (its size) refuses
/// them in one line and stays as it was.
pub fn add(sd: &StateDir, t: &TableState, elems: &[(Vec<u8>, u64)]) -> Result<()> {
    let def = &t.def;
    match open(sd, t)? {
        Table::Tries(tr) => reindex(sd, t, &tr, tr.add(def, elems)?),
        Table::Array(a) => match a.add(elems, def.size as usize) {
            Ok(()) => Ok(()),
            Err(slots::Refused::NoSlot(_)) => {
                let mut all = a.elements()?;
                all.extend_from_slice(elems);
                let mut uniq: std::collections::BTreeMap<Vec<u8>, u64> = Default::default();
                for (k, v) in all {
                    uniq.insert(k, v);
                }
                let all: Vec<(Vec<u8>, u64)> = uniq.into_iter().collect();
                install(sd, t, &build(def, &all)?)
            }
            Err(r) => Err(refused(def, r)),
        },
    }
}

/// Swaps a new IPv4 index into prefix table `t`'s slot when `r` says so.
fn reindex(sd: &StateDir, t: &TableState, tr: &tries::Tries, r: tries::Reindex) -> Result<()> {
    if r == tries::Reindex::Yes {
        let ix = tr.reindex(&t.def)?;
        install(sd, t, &Built(vec![(Part::index_of(&t.def), ix)]))?;
    }
    Ok(())
}

/// Deletes elements of applied table `t`; one that is not there refuses
/// them all. An array table with many deleted slots (a quarter of its
/// slots) is rebuilt and swapped in, so that probes stay short.
pub fn del(sd: &StateDir, t: &TableState, keys: &[Vec<u8>]) -> Result<()> {
    let def = &t.def;
    let a = match open(sd, t)? {
        Table::Tries(tr) => return reindex(sd, t, &tr, tr.del(def, keys)?),
        Table::Array(a) => a,
    };
    a.will_touch(keys.len())?;
    for k in keys {
        if a.get(k)?.is_none() {
            bail!(
                "{} {}: element {} is not in it",
                def.what(),
                quoted(&def.name),
                quoted(&format_key(def.key, k))
            );
        }
    }
    a.del(keys)?;
    if a.worn()? {
        install(sd, t, &build(def, &a.elements()?)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for (kt, s) in [
            (KeyType::Addr, "10.88.0.1"),
            (KeyType::Addr, "fd00::1"),
            (KeyType::Prefix, "10.88.0.0/16"),
            (KeyType::Prefix, "fd00::/64"),
            (KeyType::Pair, "10.1.0.1 . 10.1.0.2"),
            (KeyType::Subflow, "10.1.0.1:40000 . 10.1.0.2:80"),
            (KeyType::Subflow, "[fd00::1]:1 . [fd00::2]:2"),
            (KeyType::Port, "443"),
        ] {
            let k = parse_key(kt, s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(k.len(), kt.key_size() as usize, "{s}");
            assert_eq!(format_key(kt, &k), s);
        }
    }

    #[test]
    fn v4_is_mapped_and_prefix_bits_cleared() {
        let k = parse_key(KeyType::Addr, "10.0.0.1").unwrap();
        assert_eq!(&k[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        let p = parse_key(KeyType::Prefix, "10.1.2.3/8").unwrap();
        assert_eq!(u32::from_ne_bytes(p[..4].try_into().unwrap()), 104);
        assert_eq!(format_key(KeyType::Prefix, &p), "10.0.0.0/8");
    }

    #[test]
    fn outer_maps_are_named_by_part_and_size() {
        let mut parts = Part::FIXED.to_vec();
        for kt in [
            KeyType::Addr,
            KeyType::Prefix,
            KeyType::Pair,
            KeyType::Subflow,
        ] {
            for bits in abi::TAB_MIN_BITS..=abi::TAB_MAX_BITS {
                parts.push(Part::Slots(kt, bits));
            }
        }
        let pins: std::collections::HashSet<String> = parts.iter().map(|p| p.outer_pin()).collect();
        let kernel: std::collections::HashSet<String> =
            parts.iter().map(|p| p.kernel_name()).collect();
        assert_eq!(
            (pins.len(), kernel.len()),
            (parts.len(), parts.len()),
            "names are unique"
        );
        for p in &parts {
            assert!(p.kernel_name().len() <= 15, "{}", p.kernel_name());
            let fixed = Part::FIXED.contains(p).then_some(*p);
            assert_eq!(Part::by_outer_pin(&p.outer_pin()), fixed, "{p:?}");
        }
        // every size a table may have fits the reference's bits
        assert!(slots::slot_bits(MAX_SIZE) <= abi::TAB_MAX_BITS);
        assert_eq!(slots::slot_bits(1), abi::TAB_MIN_BITS);
    }

    /// A `lookup` stage's description naming table `id` of `kt` with
    /// 2^`bits` slots.
    fn lookup_desc(kt: KeyType, id: u8, bits: u32) -> abi::types::emptcp_stage {
        let mut d = abi::types::emptcp_stage {
            kind: abi::KIND_LOOKUP,
            ..Default::default()
        };
        d.param[..4].copy_from_slice(&[id, kt.layout(), 0, (bits as u8) << abi::TAB_BITS_SHIFT]);
        d
    }

    #[test]
    fn each_size_a_program_names_gets_a_binding() {
        let bind =
            |d: &abi::types::emptcp_stage| (d.param[3] >> abi::TAB_BIND_SHIFT) & abi::TAB_BIND_MASK;
        let mut ds = vec![
            lookup_desc(KeyType::Addr, 1, 18),
            lookup_desc(KeyType::Pair, 1, 18),
            lookup_desc(KeyType::Addr, 2, 18),
            lookup_desc(KeyType::Subflow, 1, 5),
            lookup_desc(KeyType::Port, 1, 0),
            lookup_desc(KeyType::Addr, 3, 12),
        ];
        let used = assign_binds(&mut ds, "w").unwrap();
        assert_eq!(
            used,
            [
                Part::Slots(KeyType::Addr, 18),
                Part::Slots(KeyType::Pair, 18),
                Part::Slots(KeyType::Subflow, 5),
                Part::Slots(KeyType::Addr, 12),
            ]
        );
        let got: Vec<u8> = ds.iter().map(bind).collect();
        assert_eq!(got, [0, 1, 0, 2, 0, 3], "a port table has no binding");
        // the size bits stay
        assert_eq!(ds[5].param[3] >> abi::TAB_BITS_SHIFT, 12);
        ds.push(lookup_desc(KeyType::Addr, 4, 20));
        let e = assign_binds(&mut ds, "the walk of chains a")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "the walk of chains a looks up addr, prefix, pair and subflow tables of 5 sizes; \
             one program holds 4: give the sets and maps it uses fewer sizes"
        );
    }

    #[test]
    fn bad_elements_are_one_line() {
        let def = TableDef {
            name: "t".into(),
            key: KeyType::Addr,
            value: Some(ValueType::U32),
            size: 4,
            netns: None,
        };
        let e = parse_element(&def, "10.0.0=2").unwrap_err();
        assert_eq!(
            e,
            "map \"t\": element \"10.0.0=2\": \"10.0.0\" is not an IP address"
        );
        assert!(parse_element(&def, "10.0.0.1")
            .unwrap_err()
            .contains("KEY=VALUE"));
        assert!(parse_key(KeyType::Port, "0").is_err());
        assert!(parse_key(KeyType::Pair, "10.0.0.1").is_err());
        assert!(parse_key(KeyType::Prefix, "10.0.0.0/33").is_err());
    }
}
