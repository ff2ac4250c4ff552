//! The catalogue of selectors and actors: names, parameters, what they do.
//! `emptcp catalog` prints it; the policy parser checks keys against it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageRole {
    Selector,
    Actor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    Bool,
    IpAddr,
    PacketTypes,
}

#[derive(Debug, Clone, Serialize)]
pub struct Param {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub required: bool,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub kind: &'static str,
    pub role: StageRole,
    /// The BPF object (src/bpf/<object>.bpf.c) that implements it.
    pub object: &'static str,
    pub hooks: &'static [&'static str],
    pub doc: &'static str,
    pub params: &'static [Param],
}

const ALL_HOOKS: &[&str] = &["xdp", "tc-ingress", "tc-egress"];

/// Every built-in stage.
pub static CATALOG: &[Entry] = &[
    Entry {
        kind: "ip_pair",
        role: StageRole::Selector,
        object: "ip_pair",
        hooks: ALL_HOOKS,
        doc: "packets whose (source, destination) address pair matches; IPv4 or IPv6",
        params: &[
            Param {
                name: "src",
                ty: ParamType::IpAddr,
                required: false,
                default: None,
                doc: "source address (absent: any)",
            },
            Param {
                name: "dst",
                ty: ParamType::IpAddr,
                required: false,
                default: None,
                doc: "destination address (absent: any)",
            },
            Param {
                name: "bidir",
                ty: ParamType::Bool,
                required: false,
                default: Some("false"),
                doc: "also match the reverse direction",
            },
        ],
    },
    Entry {
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
    },
    Entry {
        kind: "set_backup",
        role: StageRole::Actor,
        object: "set_backup",
        hooks: ALL_HOOKS,
        doc: "adds MP_PRIO to the subflow's segments so the peer sets (or clears) its backup flag; \
              XDP: every segment, TC: segments without payload",
        params: &[
            Param {
                name: "backup",
                ty: ParamType::Bool,
                required: false,
                default: Some("true"),
                doc: "set (true) or clear (false) the backup flag",
            },
            Param {
                name: "once",
                ty: ParamType::Bool,
                required: false,
                default: Some("true"),
                doc: "only the first eligible segment of each subflow",
            },
        ],
    },
];

/// The catalogue entry of a kind.
pub fn find(kind: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_an_object() {
        for e in CATALOG {
            assert!(
                crate::skel::OBJECTS.iter().any(|(s, _, _)| *s == e.object),
                "catalogue entry {} names object {} which build.rs did not build",
                e.kind,
                e.object
            );
        }
    }
}
