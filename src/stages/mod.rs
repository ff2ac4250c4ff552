//! The built-in stages, one module each: its catalogue entry (name,
//! parameters, defaults, hooks: what `emptcp catalog` prints and the policy
//! parser checks), its parser and its parameter encoder. This module is
//! the table of them, and the two places that map a typed selector or
//! actor (policy/model.rs) to its module.
//!
//! A new built-in stage: its BPF program (src/bpf/<name>.bpf.c, a kind in
//! abi.h, a case in walk.bpf.c), its variant in policy/model.rs, a
//! module here, a line in CATALOG and an arm in encode_selector or
//! encode_actor.

pub mod add_subflow;
mod args;
pub mod blk_subflow;
pub mod custom;
pub mod ip_pair;
pub mod lookup;
pub mod observe;
pub mod packet_type;
pub mod port;
pub mod prefix;
pub mod rate_limit;
pub mod record;
pub mod redirect;
pub mod sequence;
pub mod set_backup;
pub mod set_mark;
pub mod subflow;
pub mod verdict;

use std::net::IpAddr;

use anyhow::{bail, Result};

use serde::Serialize;

use crate::abi;
use crate::policy::model::{Actor, KeyOf, SelectorKind};
use crate::tables::TableState;
pub use args::Args;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageRole {
    Selector,
    Actor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    Bool,
    IpAddr,
    PacketTypes,
    Path,
    Name,
    U32List,
    Port,
    Prefix,
    U32,
    Metrics,
    /// A byte count: an integer or a string with a unit ("1MB", "1MiB").
    Bytes,
    /// A rate in tc units: `20mbit`, `5MBps`, `100kbit`, `1gbit` (a bare number is bit/s).
    Rate,
    /// A size in tc units: `64kb`, `1mb`, `500kbit` (a bare number is bytes).
    Size,
}

#[derive(Debug, Clone, Serialize)]
pub struct Param {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub required: bool,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub kind: &'static str,
    pub role: StageRole,
    /// The BPF object (src/bpf/<object>.bpf.c) that implements it.
    pub object: &'static str,
    pub hooks: &'static [&'static str],
    pub doc: &'static str,
    pub params: &'static [Param],
    /// abi.h enum emptcp_kind: what the walk programs dispatch on.
    #[serde(skip)]
    pub abi_kind: u8,
    /// Which programs can run it.
    #[serde(skip)]
    pub runs: Runs,
    /// Thousands of instructions the verifier processes for it in the
    /// short walk, on XDP and on TC (capacity.rs walk_insns).
    #[serde(skip)]
    pub walk_kinsns: [u64; 2],
    /// Why not on the other hooks: the tail of the error there.
    #[serde(skip)]
    pub hooks_why: &'static str,
    /// The parameter that may name a map (`{ map = NAME, key = … }`)
    /// instead of a literal, and the value type that map must have.
    #[serde(skip)]
    pub map_param: Option<(&'static str, &'static str)>,
    /// Reads its table in a policy file.
    #[serde(skip)]
    pub parse: Parse,
}

/// What can run a chain's stages (store.rs, the walk programs); ordered
/// from the most to the least capable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Runs {
    /// Header and set selectors, mark, redirect, pass and drop: either
    /// walk program, the long one (a loop of up to 512 stages) included.
    AnyWalk,
    /// Built-in stages that parse options or keep per-flow state: the
    /// short, unrolled walk (up to 32 stages), else tail calls.
    ShortWalk,
    /// A third-party stage: one program per stage, tail calls (33).
    TailCalls,
}

/// A stage's parser: its table in a policy file to the typed stage.
#[derive(Debug, Clone, Copy)]
pub enum Parse {
    Selector(fn(&Args) -> Result<SelectorKind, String>),
    Actor(fn(&Args) -> Result<Actor, String>),
}

const ALL_HOOKS: &[&str] = &["xdp", "tc-ingress", "tc-egress"];

/// Every built-in stage, in the order `emptcp catalog` lists them.
pub static CATALOG: &[Entry] = &[
    ip_pair::ENTRY,
    packet_type::ENTRY,
    subflow::ENTRY,
    prefix::SRC,
    prefix::DST,
    port::ENTRY,
    set_backup::ENTRY,
    set_mark::ENTRY,
    redirect::ENTRY,
    observe::GET_CONNECT,
    observe::GET_SUBFLOW,
    record::ENTRY,
    sequence::ENTRY,
    blk_subflow::ENTRY,
    add_subflow::ENTRY,
    rate_limit::ENTRY,
    verdict::PASS,
    verdict::DROP,
    custom::SELECTOR,
    custom::ACTOR,
];

/// The catalogue entry of a kind.
pub fn find(kind: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.kind == kind)
}

/// The catalogue entry of a kind in a role (`custom` exists in both).
pub fn find_role(kind: &str, role: StageRole) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.kind == kind && e.role == role)
}

/// The entry of a parsed selector (a set lookup: the kind it was written as).
pub fn selector_entry(k: &SelectorKind) -> &'static Entry {
    find_role(k.name(), StageRole::Selector).expect("every selector has a catalogue entry")
}

/// The entry of a parsed actor.
pub fn actor_entry(a: &Actor) -> &'static Entry {
    find_role(a.name(), StageRole::Actor).expect("every actor has a catalogue entry")
}

/// Whether the long walk (a loop) runs the stages of a built-in object.
/// Inside the walk's loop the others verify far slower than alone (6.18:
/// get_subflow on TC 256k processed instructions, 42k alone; record 196k;
/// three or four of them fill the verifier's million): they run in the
/// short, unrolled walk (docs/design.md, the walk).
pub fn walks_long(object: &str) -> bool {
    (object == lookup::OBJECT && lookup::RUNS == Runs::AnyWalk)
        || CATALOG
            .iter()
            .any(|e| e.object == object && e.runs == Runs::AnyWalk)
}

/// Where a stage's program comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StageObject {
    /// Built in: src/bpf/<name>.bpf.c, program <name>.
    Builtin(&'static str),
    /// A third-party object file and the program in it, listed as an
    /// actor or a selector, given `param_bytes` of parameters.
    File {
        path: std::path::PathBuf,
        program: String,
        actor: bool,
        param_bytes: usize,
    },
}

impl StageObject {
    /// The program's name in its object.
    pub fn program(&self) -> &str {
        match self {
            StageObject::Builtin(n) => n,
            StageObject::File { program, .. } => program,
        }
    }
    /// A short label for show/state: the kind, or custom:<program>.
    pub fn label(&self) -> String {
        match self {
            StageObject::Builtin(n) => (*n).to_owned(),
            StageObject::File { program, .. } => format!("custom:{program}"),
        }
    }
}

/// What encoding needs from outside: device indexes (redirect targets)
/// and the tables (sets, maps) chains name.
pub struct Env<'a> {
    pub ifindex: &'a dyn Fn(&str) -> Result<u32>,
    pub table: &'a dyn Fn(&str) -> Result<TableState>,
}

/// An environment with no devices and no tables.
pub fn no_env() -> Env<'static> {
    Env {
        ifindex: &|dev| bail!("device {dev:?}: no device lookup here"),
        table: &|t| bail!("set or map {t:?}: no tables here"),
    }
}

/// A stage as the planner writes it into its slot: its program, its
/// abi.h kind and its parameters.
pub type Encoded = (StageObject, u8, abi::Param);

fn builtin(e: &'static Entry, param: abi::Param) -> Encoded {
    (StageObject::Builtin(e.object), e.abi_kind, param)
}

/// Encodes a selector.
pub fn encode_selector(k: &SelectorKind, env: &Env) -> Result<Encoded> {
    let param = match k {
        SelectorKind::InSet { keyof, set, bidir } => {
            return lookup::encode(env, set, *keyof, *bidir)
        }
        SelectorKind::Custom(c) => return Ok(custom::encode(c, false)),
        SelectorKind::IpPair { src, dst, bidir } => ip_pair::encode(*src, *dst, *bidir),
        SelectorKind::PacketType { types } => packet_type::encode(types)?,
        SelectorKind::Subflow {
            saddr,
            daddr,
            sport,
            dport,
            bidir,
        } => subflow::encode(*saddr, *daddr, *sport, *dport, *bidir),
        SelectorKind::Src { addr, prefix } => prefix::encode(addr, *prefix, false),
        SelectorKind::Dst { addr, prefix } => prefix::encode(addr, *prefix, true),
        SelectorKind::Port { sport, dport } => port::encode(*sport, *dport),
        SelectorKind::Sequence {
            field,
            from,
            to,
            relative,
        } => sequence::encode(*field, *from, *to, *relative),
    };
    Ok(builtin(selector_entry(k), param))
}

/// Encodes an actor; a parameter from a map becomes the map's reference
/// in the last 4 bytes (abi.h EMPTCP_PARAM_TAB_OFF, tables.h).
pub fn encode_actor(a: &Actor, env: &Env) -> Result<Encoded> {
    let mut param = match a {
        Actor::Custom(c) => return Ok(custom::encode(c, true)),
        Actor::SetMark { mark, mask, .. } => set_mark::encode(*mark, *mask),
        Actor::Redirect {
            dev,
            ingress,
            via,
            map,
        } => redirect::encode(dev, *ingress, *via, map.as_ref(), env)?,
        Actor::SetBackup { backup, once, .. } => set_backup::encode(*backup, *once),
        Actor::GetConnect => observe::encode(false),
        Actor::GetSubflow => observe::encode(true),
        Actor::Record { metrics } => record::encode(metrics),
        Actor::BlkSubflow { mode } => blk_subflow::encode(*mode),
        Actor::AddSubflow => [0u8; abi::PARAM_SIZE],
        Actor::RateLimit {
            rate_bps, burst, ..
        } => rate_limit::encode(*rate_bps, *burst),
        Actor::Pass => verdict::encode(false),
        Actor::Drop => verdict::encode(true),
    };
    if let Some(m) = a.map() {
        param[abi::PARAM_TAB_OFF..].copy_from_slice(&tab_ref(env, &m.map, m.key, false)?);
    }
    Ok(builtin(actor_entry(a), param))
}

/// A parameter struct's bytes at the start of a slot's parameters.
fn param_of<T: plain::Plain>(v: &T) -> abi::Param {
    let mut param = [0u8; abi::PARAM_SIZE];
    // SAFETY: T is Plain (checked by the bound); we only read its bytes.
    let b = unsafe { plain::as_bytes(v) };
    param[..b.len()].copy_from_slice(b);
    param
}

/// An address as abi.h stores it: IPv4 in the first 4 of 16 bytes.
fn addr_bytes(a: &IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match a {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.copy_from_slice(&v6.octets()),
    }
    out
}

/// The 4-byte reference a stage carries to table `name` (abi.h
/// emptcp_tab_ref).
fn tab_ref(env: &Env, name: &str, keyof: KeyOf, bidir: bool) -> Result<[u8; 4]> {
    let t = (env.table)(name)?;
    Ok([
        t.id,
        t.def.key.layout(),
        keyof.abi(),
        t.def.ref_flags() | if bidir { abi::TAB_BIDIR } else { 0 },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_an_object() {
        for e in CATALOG.iter().filter(|e| e.kind != "custom") {
            assert!(
                crate::skel::OBJECTS.iter().any(|(s, _, _)| *s == e.object),
                "catalogue entry {} names object {} which build.rs did not build",
                e.kind,
                e.object
            );
        }
    }

    #[test]
    fn every_entry_parses_its_own_role() {
        for e in CATALOG {
            let ok = matches!(
                (e.role, e.parse),
                (StageRole::Selector, Parse::Selector(_)) | (StageRole::Actor, Parse::Actor(_))
            );
            assert!(ok, "{} ({:?}) parses the other role", e.kind, e.role);
        }
    }
}
