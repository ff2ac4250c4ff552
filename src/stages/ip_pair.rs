//! `ip_pair`: packets whose (source, destination) address pair matches.

use std::net::IpAddr;

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi::{self, types};
use crate::policy::model::{KeyOf, SelectorKind};

pub const ENTRY: Entry = Entry {
    kind: "ip_pair",
    role: StageRole::Selector,
    object: "ip_pair",
    hooks: ALL_HOOKS,
    doc: "packets whose (source, destination) address pair matches; IPv4 or IPv6",
    params: &[
        Param {
            name: "src",
            ty: ParamType::IpAddr,
            required: false,
            default: None,
            doc: "source address (absent: any)",
        },
        Param {
            name: "dst",
            ty: ParamType::IpAddr,
            required: false,
            default: None,
            doc: "destination address (absent: any)",
        },
        Param {
            name: "bidir",
            ty: ParamType::Bool,
            required: false,
            default: Some("false"),
            doc: "also match the reverse direction",
        },
        Param {
            name: "set",
            ty: ParamType::Name,
            required: false,
            default: None,
            doc: "instead of src/dst: a set of type pair",
        },
    ],
    abi_kind: abi::KIND_IP_PAIR,
    runs: Runs::AnyWalk,
    walk_kinsns: [2, 2],
    hooks_why: "",
    map_param: None,
    parse: Parse::Selector(parse),
};

fn parse(a: &Args) -> Result<SelectorKind, String> {
    if a.has("set") {
        return Ok(SelectorKind::InSet {
            keyof: KeyOf::Pair,
            set: a.set(&["src", "dst"])?,
            bidir: a.bool("bidir")?,
        });
    }
    let src = a.addr("src")?;
    let dst = a.addr("dst")?;
    if src.is_none() && dst.is_none() {
        return Err(a.err("needs `src`, `dst` or both"));
    }
    a.same_family(("src", src), ("dst", dst))?;
    Ok(SelectorKind::IpPair {
        src,
        dst,
        bidir: a.bool("bidir")?,
    })
}

/// emptcp_ip_pair: v4 addresses in the first 4 bytes of the 16.
pub fn encode(src: Option<IpAddr>, dst: Option<IpAddr>, bidir: bool) -> abi::Param {
    let mut p = types::emptcp_ip_pair::default();
    if src.or(dst).is_some_and(|a| a.is_ipv6()) {
        p.flags |= abi::IPP_V6;
    }
    if bidir {
        p.flags |= abi::IPP_BIDIR;
    }
    if let Some(s) = src {
        p.src = super::addr_bytes(&s);
        p.flags |= abi::IPP_SRC;
    }
    if let Some(d) = dst {
        p.dst = super::addr_bytes(&d);
        p.flags |= abi::IPP_DST;
    }
    super::param_of(&p)
}
