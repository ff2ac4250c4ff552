//! `set_mark` (TC): the skb mark, for policy routing or queueing.

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole};
use crate::abi::{self, types};
use crate::policy::model::Actor;

pub const ENTRY: Entry = Entry {
    kind: "set_mark",
    role: StageRole::Actor,
    object: "set_mark",
    hooks: &["tc-ingress", "tc-egress"],
    doc: "sets the skb mark, for policy routing (ip rule fwmark) or queueing of one subflow",
    params: &[
        Param {
            name: "mark",
            ty: ParamType::U32,
            required: true,
            default: None,
            doc:
                "mark value, or { map = NAME, key = src|dst|pair|subflow|sport|dport } (a u32 map)",
        },
        Param {
            name: "mask",
            ty: ParamType::U32,
            required: false,
            default: Some("0xffffffff"),
            doc: "bits of the mark to set",
        },
    ],
    abi_kind: abi::KIND_SET_MARK,
    runs: Runs::AnyWalk,
    walk_kinsns: [2, 2],
    hooks_why: "needs a tc hook (XDP packets have no mark)",
    map_param: Some(("mark", "u32")),
    parse: Parse::Actor(parse),
};

fn parse(a: &Args) -> Result<Actor, String> {
    let map = a.map_ref("mark")?;
    Ok(Actor::SetMark {
        mark: if map.is_some() {
            0
        } else {
            a.u32("mark")?.ok_or_else(|| a.missing("mark"))?
        },
        mask: a.u32_or_default("mask")?,
        map,
    })
}

pub fn encode(mark: u32, mask: u32) -> abi::Param {
    super::param_of(&types::emptcp_set_mark { value: mark, mask })
}
