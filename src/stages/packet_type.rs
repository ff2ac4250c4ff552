//! `packet_type`: packets of the given MPTCP/TCP kinds.

use anyhow::{bail, Result};

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi::{self, types};
use crate::cli::text::quoted;
use crate::policy::model::SelectorKind;

pub const ENTRY: Entry = Entry {
    kind: "packet_type",
    role: StageRole::Selector,
    object: "packet_type",
    hooks: ALL_HOOKS,
    doc: "packets of the given MPTCP/TCP kinds (MP_CAPABLE SYN, MP_JOIN SYN, data ACK, ADD_ADDR, ...)",
    params: &[Param {
        name: "types",
        ty: ParamType::PacketTypes,
        required: true,
        default: None,
        doc: "list of: mp_capable_syn mp_capable_synack mp_capable_ack mp_join_syn mp_join_synack \
              mp_join_ack dss_data dss_ack data_fin add_addr add_addr_echo rm_addr mp_prio mp_fail \
              mp_fastclose mp_tcprst tcp_plain syn fin rst",
    }],
    abi_kind: abi::KIND_PACKET_TYPE,
    runs: Runs::ShortWalk,
    walk_kinsns: [75, 75],
    hooks_why: "",
    map_param: None,
    parse: Parse::Selector(parse),
};

/// The kinds, bit = index (abi.h enum emptcp_ptype).
pub const PACKET_TYPES: &[&str] = &[
    "mp_capable_syn",
    "mp_capable_synack",
    "mp_capable_ack",
    "mp_join_syn",
    "mp_join_synack",
    "mp_join_ack",
    "dss_data",
    "dss_ack",
    "data_fin",
    "add_addr",
    "add_addr_echo",
    "rm_addr",
    "mp_prio",
    "mp_fail",
    "mp_fastclose",
    "mp_tcprst",
    "tcp_plain",
    "syn",
    "fin",
    "rst",
];
const _: () = assert!(PACKET_TYPES.len() == abi::PT_MAX as usize);

fn parse(a: &Args) -> Result<SelectorKind, String> {
    let arr =
        a.t.get("types")
            .and_then(toml::Value::as_array)
            .ok_or_else(|| a.key_err("types", "expected a list of packet types"))?;
    if arr.is_empty() {
        return Err(a.key_err("types", "empty list"));
    }
    let mut types = Vec::new();
    for v in arr {
        let s = v
            .as_str()
            .ok_or_else(|| a.key_err("types", "expected strings"))?;
        if !PACKET_TYPES.contains(&s) {
            return Err(a.key_err(
                "types",
                &format!(
                    "unknown packet type {} (known: {})",
                    quoted(s),
                    PACKET_TYPES.join(", ")
                ),
            ));
        }
        types.push(s.to_owned());
    }
    Ok(SelectorKind::PacketType { types })
}

/// The 32-bit mask of packet types, bit = index in PACKET_TYPES.
pub fn mask(types: &[String]) -> Result<u32> {
    let mut mask = 0u32;
    for t in types {
        let Some(bit) = PACKET_TYPES.iter().position(|p| p == t) else {
            bail!("unknown packet type {t:?}");
        };
        mask |= 1 << bit;
    }
    Ok(mask)
}

pub fn encode(t: &[String]) -> Result<abi::Param> {
    Ok(super::param_of(&types::emptcp_packet_type {
        mask: mask(t)?,
        ..Default::default()
    }))
}
