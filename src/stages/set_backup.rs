//! `set_backup`: MP_PRIO on the subflow's segments, so the peer sets or clears its backup flag.

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi::{self, types};
use crate::policy::model::Actor;

pub const ENTRY: Entry = Entry {
    kind: "set_backup",
    role: StageRole::Actor,
    object: "set_backup",
    hooks: ALL_HOOKS,
    doc: "adds MP_PRIO to the subflow's segments so the peer sets (or clears) its backup flag; \
          XDP: every segment; TC: segments without payload grow, data segments at tc-egress \
          send a clone trimmed into a pure ACK with MP_PRIO ahead of them",
    params: &[
        Param {
            name: "backup",
            ty: ParamType::Bool,
            required: false,
            default: Some("true"),
            doc: "set (true) or clear (false) the backup flag, or { map = NAME, key = … } (a bool map)",
        },
        Param {
            name: "once",
            ty: ParamType::Bool,
            required: false,
            default: Some("true"),
            doc: "only the first eligible segment of each subflow",
        },
    ],
    abi_kind: abi::KIND_SET_BACKUP,
    runs: Runs::ShortWalk,
    walk_kinsns: [45, 180],
    hooks_why: "",
    map_param: Some(("backup", "bool")),
    parse: Parse::Actor(parse),
};

fn parse(a: &Args) -> Result<Actor, String> {
    let map = a.map_ref("backup")?;
    Ok(Actor::SetBackup {
        backup: if map.is_some() {
            false
        } else {
            a.bool("backup")?
        },
        once: a.bool("once")?,
        map,
    })
}

pub fn encode(backup: bool, once: bool) -> abi::Param {
    let mut p = types::emptcp_set_backup::default();
    if backup {
        p.flags |= abi::BK_BACKUP;
    }
    if once {
        p.flags |= abi::BK_ONCE;
    }
    super::param_of(&p)
}
