//! `record`: per-subflow metrics for `emptcp stats`.

use super::{Args, Entry, Param, ParamType, Parse, Runs, StageRole, ALL_HOOKS};
use crate::abi;
use crate::policy::model::Actor;

pub const ENTRY: Entry = Entry {
    kind: "record",
    role: StageRole::Actor,
    object: "record",
    hooks: ALL_HOOKS,
    doc: "per-subflow metrics for `emptcp stats`: packets and payload bytes each way, RTT from \
          TCP timestamps (record on both hooks of a host), retransmissions, last window; read-only",
    params: &[Param {
        name: "metrics",
        ty: ParamType::Metrics,
        required: false,
        default: Some("all"),
        doc: "any of: packets bytes rtt retrans window",
    }],
    abi_kind: abi::KIND_RECORD,
    runs: Runs::ShortWalk,
    walk_kinsns: [200, 200],
    hooks_why: "",
    map_param: None,
    parse: Parse::Actor(parse),
};

/// The metrics it knows and their bits (abi.h enum emptcp_rec_metric).
pub const METRICS: &[(&str, u32)] = &[
    ("packets", abi::REC_PACKETS),
    ("bytes", abi::REC_BYTES),
    ("rtt", abi::REC_RTT),
    ("retrans", abi::REC_RETRANS),
    ("window", abi::REC_WINDOW),
];

fn names() -> impl Iterator<Item = &'static str> {
    METRICS.iter().map(|(n, _)| *n)
}

fn parse(a: &Args) -> Result<Actor, String> {
    let Some(v) = a.t.get("metrics") else {
        // the default, "all"
        return Ok(Actor::Record {
            metrics: names().map(str::to_owned).collect(),
        });
    };
    let arr = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| a.key_err("metrics", "expected a non-empty list"))?;
    let mut metrics = Vec::new();
    for m in arr {
        let m = m
            .as_str()
            .filter(|m| names().any(|n| n == *m))
            .ok_or_else(|| {
                a.key_err(
                    "metrics",
                    &format!(
                        "{} is not one of {}",
                        crate::policy::values::shown(m),
                        names().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
        metrics.push(m.to_owned());
    }
    Ok(Actor::Record { metrics })
}

/// param: __u32 metrics, the bits of the names.
pub fn encode(metrics: &[String]) -> abi::Param {
    let bits = METRICS
        .iter()
        .filter(|(n, _)| metrics.iter().any(|m| m == n))
        .fold(0u32, |m, (_, bit)| m | bit);
    let mut param = [0u8; abi::PARAM_SIZE];
    param[..4].copy_from_slice(&bits.to_ne_bytes());
    param
}
