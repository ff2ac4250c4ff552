//! `lookup`: the selector that `src`, `dst`, `ip_pair`, `subflow` and
//! `port` become with `set = "NAME"`: the packet's key is in a named set.
//! It has no catalogue entry of its own.

use anyhow::Result;

use super::{Env, Runs, StageObject};
use crate::abi;
use crate::policy::model::KeyOf;

/// Its object (src/bpf/lookup.bpf.c).
pub const OBJECT: &str = "lookup";
/// A set lookup runs in either walk.
pub const RUNS: Runs = Runs::AnyWalk;

/// The set's reference in the first 4 bytes.
pub fn encode(
    env: &Env,
    set: &str,
    keyof: KeyOf,
    bidir: bool,
) -> Result<(StageObject, u8, abi::Param)> {
    let mut param = [0u8; abi::PARAM_SIZE];
    param[..4].copy_from_slice(&super::tab_ref(env, set, keyof, bidir)?);
    Ok((StageObject::Builtin(OBJECT), abi::KIND_LOOKUP, param))
}
