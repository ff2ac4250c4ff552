//! `src` and `dst`: the source or destination address in a prefix.

use std::net::IpAddr;

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi::{self, types};
use crate::policy::model::{KeyOf, SelectorKind};

pub const SRC: Entry = Entry {
    kind: "src",
    role: StageRole::Selector,
    object: "prefix",
    hooks: ALL_HOOKS,
    doc: "source address in a prefix, or in a set of addresses or prefixes",
    params: &[
        Param {
            name: "addr",
            ty: ParamType::Prefix,
            required: false,
            default: None,
            doc: "address or CIDR prefix (10.0.0.0/8, fd00::/16)",
        },
        Param {
            name: "set",
            ty: ParamType::Name,
            required: false,
            default: None,
            doc: "instead of addr: a set of type addr or prefix",
        },
    ],
    abi_kind: abi::KIND_PREFIX,
    runs: Runs::AnyWalk,
    walk_kinsns: [2, 2],
    hooks_why: "",
    map_param: None,
    parse: Parse::Selector(parse_src),
};

pub const DST: Entry = Entry {
    kind: "dst",
    role: StageRole::Selector,
    object: "prefix",
    hooks: ALL_HOOKS,
    doc: "destination address in a prefix, or in a set of addresses or prefixes",
    params: &[
        Param {
            name: "addr",
            ty: ParamType::Prefix,
            required: false,
            default: None,
            doc: "address or CIDR prefix",
        },
        Param {
            name: "set",
            ty: ParamType::Name,
            required: false,
            default: None,
            doc: "instead of addr: a set of type addr or prefix",
        },
    ],
    abi_kind: abi::KIND_PREFIX,
    runs: Runs::AnyWalk,
    walk_kinsns: [2, 2],
    hooks_why: "",
    map_param: None,
    parse: Parse::Selector(parse_dst),
};

fn parse_src(a: &Args) -> Result<SelectorKind, String> {
    parse(a, false)
}

fn parse_dst(a: &Args) -> Result<SelectorKind, String> {
    parse(a, true)
}

fn parse(a: &Args, dst: bool) -> Result<SelectorKind, String> {
    if a.has("set") {
        return Ok(SelectorKind::InSet {
            keyof: if dst { KeyOf::Dst } else { KeyOf::Src },
            set: a.set(&["addr"])?,
            bidir: false,
        });
    }
    if !a.has("addr") {
        return Err(a.err("needs `addr` or `set`"));
    }
    let (addr, prefix) = a.prefix("addr")?;
    Ok(if dst {
        SelectorKind::Dst { addr, prefix }
    } else {
        SelectorKind::Src { addr, prefix }
    })
}

/// emptcp_prefix: the address masked to `prefix` bits, and the mask.
pub fn encode(addr: &IpAddr, prefix: u8, dst: bool) -> abi::Param {
    let mut p = types::emptcp_prefix::default();
    let full = super::addr_bytes(addr);
    let bits = prefix as usize;
    for (i, (m, a)) in p.mask.iter_mut().zip(p.addr.iter_mut()).enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        *m = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        *a = full[i] & *m;
    }
    if addr.is_ipv6() {
        p.flags |= abi::PFX_V6;
    }
    if dst {
        p.flags |= abi::PFX_DST;
    }
    super::param_of(&p)
}
