//! `port`: the TCP source and/or destination port.

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi::{self, types};
use crate::cli::text::quoted;
use crate::policy::model::{KeyOf, SelectorKind};

/// The port keys, here and in `subflow`.
pub const SPORT: Param = Param {
    name: "sport",
    ty: ParamType::Port,
    required: false,
    default: None,
    doc: "source port",
};
pub const DPORT: Param = Param {
    name: "dport",
    ty: ParamType::Port,
    required: false,
    default: None,
    doc: "destination port",
};

pub const ENTRY: Entry = Entry {
    kind: "port",
    role: StageRole::Selector,
    object: "port",
    hooks: ALL_HOOKS,
    doc: "TCP source and/or destination port",
    params: &[
        SPORT,
        DPORT,
        Param {
            name: "set",
            ty: ParamType::Name,
            required: false,
            default: None,
            doc: "instead of ports: a set of type port",
        },
        Param {
            name: "field",
            ty: ParamType::Name,
            required: false,
            default: Some("dport"),
            doc: "with set: the port looked up, sport or dport",
        },
    ],
    abi_kind: abi::KIND_PORT,
    runs: Runs::AnyWalk,
    walk_kinsns: [2, 2],
    hooks_why: "",
    map_param: None,
    parse: Parse::Selector(parse),
};

fn parse(a: &Args) -> Result<SelectorKind, String> {
    if a.has("set") {
        let keyof = match a.name("field")? {
            "dport" => KeyOf::Dport,
            "sport" => KeyOf::Sport,
            f => return Err(a.key_err("field", &format!("{} is not sport or dport", quoted(f)))),
        };
        return Ok(SelectorKind::InSet {
            keyof,
            set: a.set(&["sport", "dport"])?,
            bidir: false,
        });
    }
    if a.has("field") {
        return Err(a.key_err("field", "only with `set`"));
    }
    let sport = a.port("sport")?;
    let dport = a.port("dport")?;
    if sport.is_none() && dport.is_none() {
        return Err(a.err("needs `sport`, `dport` or both"));
    }
    Ok(SelectorKind::Port { sport, dport })
}

pub fn encode(sport: Option<u16>, dport: Option<u16>) -> abi::Param {
    let mut p = types::emptcp_port::default();
    if let Some(x) = sport {
        p.sport = x.to_be();
        p.flags |= abi::PORT_HAS_SPORT;
    }
    if let Some(x) = dport {
        p.dport = x.to_be();
        p.flags |= abi::PORT_HAS_DPORT;
    }
    super::param_of(&p)
}
