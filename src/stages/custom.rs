//! `custom`: a third-party selector or actor from a BPF object file.

use super::{Args, Entry, ParamType, Parse, Runs, StageObject, StageRole, ALL_HOOKS};
use crate::abi;
use crate::cli::text::quoted;
use crate::policy::model::{Actor, CustomStage, SelectorKind};

/// The keys of a `custom` stage, selector or actor.
const PARAMS: &[super::Param] = &[
    super::Param {
        name: "object",
        ty: ParamType::Path,
        required: true,
        default: None,
        doc: "BPF object built against include/emptcp for the chain's hook (-DEMPTCP_XDP or -DEMPTCP_TC)",
    },
    super::Param {
        name: "program",
        ty: ParamType::Name,
        required: true,
        default: None,
        doc: "the program (C function) in the object",
    },
    super::Param {
        name: "params",
        ty: ParamType::U32List,
        required: false,
        default: None,
        doc: "up to 14 integers, native-endian u32 in emptcp_stage.param",
    },
];

pub const SELECTOR: Entry = Entry {
    kind: "custom",
    role: StageRole::Selector,
    object: "",
    hooks: ALL_HOOKS,
    doc: "a third-party selector from a BPF object (see examples/)",
    params: PARAMS,
    abi_kind: abi::KIND_CUSTOM,
    runs: Runs::TailCalls,
    walk_kinsns: [2, 2],
    hooks_why: "",
    map_param: None,
    parse: Parse::Selector(parse_selector),
};

pub const ACTOR: Entry = Entry {
    kind: "custom",
    role: StageRole::Actor,
    object: "",
    hooks: ALL_HOOKS,
    doc: "a third-party actor from a BPF object (see examples/)",
    params: PARAMS,
    abi_kind: abi::KIND_CUSTOM,
    runs: Runs::TailCalls,
    walk_kinsns: [2, 2],
    hooks_why: "",
    map_param: None,
    parse: Parse::Actor(parse_actor),
};

/// The longest path a `custom` stage's object may have (PATH_MAX).
const OBJECT_PATH_MAX: usize = 4096;

/// Integers a `custom` stage takes: its parameters, 4 bytes each.
pub const MAX_PARAMS: usize = abi::PARAM_SIZE / 4;

fn parse_selector(a: &Args) -> Result<SelectorKind, String> {
    Ok(SelectorKind::Custom(parse(a)?))
}

fn parse_actor(a: &Args) -> Result<Actor, String> {
    Ok(Actor::Custom(parse(a)?))
}

fn parse(a: &Args) -> Result<CustomStage, String> {
    let object = a.str("object")?.ok_or_else(|| a.missing("object"))?;
    if object.is_empty() || object.len() >= OBJECT_PATH_MAX || object.contains('\0') {
        return Err(a.key_err("object", &format!("{} is not a file path", quoted(object))));
    }
    let program = a.str("program")?.ok_or_else(|| a.missing("program"))?;
    if program.is_empty()
        || !program
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(a.key_err(
            "program",
            &format!("{} is not a C function name", quoted(program)),
        ));
    }
    let mut params = Vec::new();
    if let Some(v) = a.t.get("params") {
        let arr = v
            .as_array()
            .ok_or_else(|| a.key_err("params", "expected a list of integers"))?;
        if arr.len() > MAX_PARAMS {
            return Err(a.key_err("params", &format!("at most {MAX_PARAMS} values")));
        }
        for x in arr {
            let n = x
                .as_integer()
                .filter(|n| (0..=u32::MAX as i64).contains(n))
                .ok_or_else(|| {
                    a.key_err(
                        "params",
                        &format!(
                            "{} is not an integer in 0..=4294967295",
                            crate::policy::values::shown(x)
                        ),
                    )
                })?;
            params.push(n as u32);
        }
    }
    Ok(CustomStage {
        object: object.into(),
        program: program.to_owned(),
        params,
    })
}

/// The object file and program, and the integers as native-endian u32.
pub fn encode(c: &CustomStage, actor: bool) -> (StageObject, u8, abi::Param) {
    let mut param = [0u8; abi::PARAM_SIZE];
    for (i, v) in c.params.iter().take(MAX_PARAMS).enumerate() {
        param[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    (
        StageObject::File {
            path: c.object.clone(),
            program: c.program.clone(),
            actor,
            param_bytes: 4 * c.params.len().min(MAX_PARAMS),
        },
        abi::KIND_CUSTOM,
        param,
    )
}
