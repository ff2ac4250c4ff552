//! `get_connect` and `get_subflow`: MP_CAPABLE keys and MP_JOIN tokens to `emptcp events`.

use super::{Args, Entry, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi;
use crate::policy::model::Actor;

pub const GET_CONNECT: Entry = Entry {
    kind: "get_connect",
    role: StageRole::Actor,
    object: "observe",
    hooks: ALL_HOOKS,
    doc: "sends MP_CAPABLE keys (SYN-ACK, ACK) with the 4-tuple to `emptcp events`; read-only",
    params: &[],
    abi_kind: abi::KIND_OBSERVE,
    runs: Runs::ShortWalk,
    walk_kinsns: [430, 260],
    hooks_why: "",
    map_param: None,
    parse: Parse::Actor(parse_connect),
};

pub const GET_SUBFLOW: Entry = Entry {
    kind: "get_subflow",
    role: StageRole::Actor,
    object: "observe",
    hooks: ALL_HOOKS,
    doc: "sends MP_JOIN token, nonce, address id and backup bit with the 4-tuple to `emptcp events`; read-only",
    params: &[],
    abi_kind: abi::KIND_OBSERVE,
    runs: Runs::ShortWalk,
    walk_kinsns: [85, 260],
    hooks_why: "",
    map_param: None,
    parse: Parse::Actor(parse_subflow),
};

fn parse_connect(_: &Args) -> Result<Actor, String> {
    Ok(Actor::GetConnect)
}

fn parse_subflow(_: &Args) -> Result<Actor, String> {
    Ok(Actor::GetSubflow)
}

/// param[0]: the event kind the stage sends.
pub fn encode(subflow: bool) -> abi::Param {
    let mut param = [0u8; abi::PARAM_SIZE];
    param[0] = if subflow {
        abi::EV_SUBFLOW
    } else {
        abi::EV_CONNECT
    };
    param
}
