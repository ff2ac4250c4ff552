//! `blk_subflow`: keeps the peer from opening subflows.

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi::{self, types};
use crate::cli::text::quoted;
use crate::policy::model::{Actor, BlkMode};

pub const ENTRY: Entry = Entry {
    kind: "blk_subflow",
    role: StageRole::Actor,
    object: "blk_subflow",
    hooks: ALL_HOOKS,
    doc: "add_addr: takes ADD_ADDR announcements out of the selected packets and keeps them per \
          connection for add_subflow (the packet stays MPTCP: a DSS data ACK or NOPs take the \
          option's place); join: drops MP_JOIN SYNs",
    params: &[Param {
        name: "mode",
        ty: ParamType::Name,
        required: false,
        default: Some("add_addr"),
        doc: "add_addr or join",
    }],
    abi_kind: abi::KIND_BLK_SUBFLOW,
    runs: Runs::ShortWalk,
    walk_kinsns: [40, 40],
    hooks_why: "",
    map_param: None,
    parse: Parse::Actor(parse),
};

fn parse(a: &Args) -> Result<Actor, String> {
    let mode = match a.name("mode")? {
        "add_addr" => BlkMode::AddAddr,
        "join" => BlkMode::Join,
        m => {
            return Err(a.key_err(
                "mode",
                &format!("{} is not `add_addr` or `join`", quoted(m)),
            ))
        }
    };
    Ok(Actor::BlkSubflow { mode })
}

pub fn encode(mode: BlkMode) -> abi::Param {
    super::param_of(&types::emptcp_blk_subflow {
        mode: match mode {
            BlkMode::AddAddr => abi::BLK_ADD_ADDR,
            BlkMode::Join => abi::BLK_JOIN,
        },
        ..Default::default()
    })
}
