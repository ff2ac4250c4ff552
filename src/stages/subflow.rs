//! `subflow`: one TCP 4-tuple (absent fields match anything).

use std::net::IpAddr;

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi::{self, types};
use crate::policy::model::{KeyOf, SelectorKind};

pub const ENTRY: Entry = Entry {
    kind: "subflow",
    role: StageRole::Selector,
    object: "subflow",
    hooks: ALL_HOOKS,
    doc: "one TCP 4-tuple (absent fields match anything); with bidir also its reverse",
    params: &[
        Param {
            name: "saddr",
            ty: ParamType::IpAddr,
            required: false,
            default: None,
            doc: "source address",
        },
        Param {
            name: "daddr",
            ty: ParamType::IpAddr,
            required: false,
            default: None,
            doc: "destination address",
        },
        super::port::SPORT,
        super::port::DPORT,
        Param {
            name: "bidir",
            ty: ParamType::Bool,
            required: false,
            default: Some("false"),
            doc: "also the reverse direction",
        },
        Param {
            name: "set",
            ty: ParamType::Name,
            required: false,
            default: None,
            doc: "instead of the fields: a set of type subflow",
        },
    ],
    abi_kind: abi::KIND_SUBFLOW,
    runs: Runs::AnyWalk,
    walk_kinsns: [2, 2],
    hooks_why: "",
    map_param: None,
    parse: Parse::Selector(parse),
};

fn parse(a: &Args) -> Result<SelectorKind, String> {
    if a.has("set") {
        return Ok(SelectorKind::InSet {
            keyof: KeyOf::Subflow,
            set: a.set(&["saddr", "daddr", "sport", "dport"])?,
            bidir: a.bool("bidir")?,
        });
    }
    let saddr = a.addr("saddr")?;
    let daddr = a.addr("daddr")?;
    let sport = a.port("sport")?;
    let dport = a.port("dport")?;
    if saddr.is_none() && daddr.is_none() && sport.is_none() && dport.is_none() {
        return Err(a.err("needs at least one of `saddr`, `daddr`, `sport`, `dport`"));
    }
    a.same_family(("saddr", saddr), ("daddr", daddr))?;
    Ok(SelectorKind::Subflow {
        saddr,
        daddr,
        sport,
        dport,
        bidir: a.bool("bidir")?,
    })
}

pub fn encode(
    saddr: Option<IpAddr>,
    daddr: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    bidir: bool,
) -> abi::Param {
    let mut p = types::emptcp_subflow::default();
    if saddr.or(daddr).is_some_and(|a| a.is_ipv6()) {
        p.flags |= abi::SUB_V6;
    }
    if bidir {
        p.flags |= abi::SUB_BIDIR;
    }
    if let Some(a) = saddr {
        p.saddr = super::addr_bytes(&a);
        p.flags |= abi::SUB_HAS_SADDR;
    }
    if let Some(a) = daddr {
        p.daddr = super::addr_bytes(&a);
        p.flags |= abi::SUB_HAS_DADDR;
    }
    if let Some(x) = sport {
        p.sport = x.to_be();
        p.flags |= abi::SUB_HAS_SPORT;
    }
    if let Some(x) = dport {
        p.dport = x.to_be();
        p.flags |= abi::SUB_HAS_DPORT;
    }
    super::param_of(&p)
}
