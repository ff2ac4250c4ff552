//! `add_subflow`: puts an ADD_ADDR kept by blk_subflow back.

use super::{Args, Entry, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi;
use crate::policy::model::Actor;

pub const ENTRY: Entry = Entry {
    kind: "add_subflow",
    role: StageRole::Actor,
    object: "add_subflow",
    hooks: ALL_HOOKS,
    doc: "puts an ADD_ADDR kept by blk_subflow back, byte for byte, on the next selected packet \
          of that connection from the announcing end (XDP: any segment, TC: segments without \
          payload; where it does not fit beside the options, e.g. IPv6, it takes the place of \
          a pure ACK's ack-only DSS, as Linux does), so the peer opens its subflow after all",
    params: &[],
    abi_kind: abi::KIND_ADD_SUBFLOW,
    runs: Runs::ShortWalk,
    walk_kinsns: [115, 115],
    hooks_why: "",
    map_param: None,
    parse: Parse::Actor(parse),
};

fn parse(_: &Args) -> Result<Actor, String> {
    Ok(Actor::AddSubflow)
}
