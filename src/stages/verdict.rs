//! `pass` and `drop`: terminal verdicts.

use super::{Args, Entry, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi;
use crate::policy::model::Actor;

pub const PASS: Entry = Entry {
    kind: "pass",
    role: StageRole::Actor,
    object: "verdict",
    hooks: ALL_HOOKS,
    doc: "terminal verdict: the selected packets go on untouched and no later stage or chain runs",
    params: &[],
    abi_kind: abi::KIND_VERDICT,
    runs: Runs::AnyWalk,
    walk_kinsns: [2, 2],
    hooks_why: "",
    map_param: None,
    parse: Parse::Actor(parse_pass),
};

pub const DROP: Entry = Entry {
    kind: "drop",
    role: StageRole::Actor,
    object: "verdict",
    hooks: ALL_HOOKS,
    doc: "terminal verdict: the selected packets are dropped",
    params: &[],
    abi_kind: abi::KIND_VERDICT,
    runs: Runs::AnyWalk,
    walk_kinsns: [2, 2],
    hooks_why: "",
    map_param: None,
    parse: Parse::Actor(parse_drop),
};

fn parse_pass(_: &Args) -> Result<Actor, String> {
    Ok(Actor::Pass)
}

fn parse_drop(_: &Args) -> Result<Actor, String> {
    Ok(Actor::Drop)
}

/// param[0]: 1 drops, 0 passes.
pub fn encode(drop: bool) -> abi::Param {
    let mut param = [0u8; abi::PARAM_SIZE];
    param[0] = u8::from(drop);
    param
}
