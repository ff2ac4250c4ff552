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
    Path,
    Name,
    U32List,
    Port,
    Prefix,
    U32,
    Metrics,
    /// A byte count: an integer or a string with a unit ("1MB", "1MiB").
    Bytes,
    /// A rate in tc units: `20mbit`, `5MBps`, `100kbit`, `1gbit` (a bare number is bit/s).
    Rate,
    /// A size in tc units: `64kb`, `1mb`, `500kbit` (a bare number is bytes).
    Size,
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
            Param {
                name: "set",
                ty: ParamType::Name,
                required: false,
                default: None,
                doc: "instead of src/dst: a set of type pair",
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
        kind: "subflow",
        role: StageRole::Selector,
        object: "subflow",
        hooks: ALL_HOOKS,
        doc: "one TCP 4-tuple (absent fields match anything); with bidir also its reverse",
        params: &[
            Param { name: "saddr", ty: ParamType::IpAddr, required: false, default: None, doc: "source address" },
            Param { name: "daddr", ty: ParamType::IpAddr, required: false, default: None, doc: "destination address" },
            Param { name: "sport", ty: ParamType::Port, required: false, default: None, doc: "source port" },
            Param { name: "dport", ty: ParamType::Port, required: false, default: None, doc: "destination port" },
            Param { name: "bidir", ty: ParamType::Bool, required: false, default: Some("false"), doc: "also the reverse direction" },
            Param { name: "set", ty: ParamType::Name, required: false, default: None, doc: "instead of the fields: a set of type subflow" },
        ],
    },
    Entry {
        kind: "src",
        role: StageRole::Selector,
        object: "prefix",
        hooks: ALL_HOOKS,
        doc: "source address in a prefix, or in a set of addresses or prefixes",
        params: &[
            Param { name: "addr", ty: ParamType::Prefix, required: false, default: None, doc: "address or CIDR prefix (10.0.0.0/8, fd00::/16)" },
            Param { name: "set", ty: ParamType::Name, required: false, default: None, doc: "instead of addr: a set of type addr or prefix" },
        ],
    },
    Entry {
        kind: "dst",
        role: StageRole::Selector,
        object: "prefix",
        hooks: ALL_HOOKS,
        doc: "destination address in a prefix, or in a set of addresses or prefixes",
        params: &[
            Param { name: "addr", ty: ParamType::Prefix, required: false, default: None, doc: "address or CIDR prefix" },
            Param { name: "set", ty: ParamType::Name, required: false, default: None, doc: "instead of addr: a set of type addr or prefix" },
        ],
    },
    Entry {
        kind: "port",
        role: StageRole::Selector,
        object: "port",
        hooks: ALL_HOOKS,
        doc: "TCP source and/or destination port",
        params: &[
            Param { name: "sport", ty: ParamType::Port, required: false, default: None, doc: "source port" },
            Param { name: "dport", ty: ParamType::Port, required: false, default: None, doc: "destination port" },
            Param { name: "set", ty: ParamType::Name, required: false, default: None, doc: "instead of ports: a set of type port" },
            Param { name: "field", ty: ParamType::Name, required: false, default: Some("dport"), doc: "with set: the port looked up, sport or dport" },
        ],
    },
    Entry {
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
    },
    Entry {
        kind: "set_mark",
        role: StageRole::Actor,
        object: "set_mark",
        hooks: &["tc-ingress", "tc-egress"],
        doc: "sets the skb mark, for policy routing (ip rule fwmark) or queueing of one subflow",
        params: &[
            Param { name: "mark", ty: ParamType::U32, required: true, default: None, doc: "mark value, or { map = NAME, key = src|dst|pair|subflow|sport|dport } (a u32 map)" },
            Param { name: "mask", ty: ParamType::U32, required: false, default: Some("0xffffffff"), doc: "bits of the mark to set" },
        ],
    },
    Entry {
        kind: "redirect",
        role: StageRole::Actor,
        object: "redirect",
        hooks: ALL_HOOKS,
        doc: "terminal: sends the selected packets out of another device. TC: Ethernet addresses of the next hop (neighbour table); TTL, mark, priority and delivery time (tstamp) kept; a received packet still owned by a local socket (from a VM's veth) leaves as a clone so that the sender's TCP Small Queues budget is released, as forwarding does. XDP: frame unchanged",
        params: &[
            Param { name: "dev", ty: ParamType::Name, required: true, default: None, doc: "target device (same namespace), or { map = NAME, key = … } (a dev map)" },
            Param { name: "ingress", ty: ParamType::Bool, required: false, default: Some("false"), doc: "TC: into the device's receive path" },
            Param { name: "via", ty: ParamType::IpAddr, required: false, default: None, doc: "TC: next hop whose MAC the packet gets (absent: the route the kernel finds out of `dev`)" },
        ],
    },
    Entry {
        kind: "get_connect",
        role: StageRole::Actor,
        object: "observe",
        hooks: ALL_HOOKS,
        doc: "sends MP_CAPABLE keys (SYN-ACK, ACK) with the 4-tuple to `emptcp events`; read-only",
        params: &[],
    },
    Entry {
        kind: "get_subflow",
        role: StageRole::Actor,
        object: "observe",
        hooks: ALL_HOOKS,
        doc: "sends MP_JOIN token, nonce, address id and backup bit with the 4-tuple to `emptcp events`; read-only",
        params: &[],
    },
    Entry {
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
    },
    Entry {
        kind: "sequence",
        role: StageRole::Selector,
        object: "sequence",
        hooks: ALL_HOOKS,
        doc: "packets whose DSS data sequence number, DSS data ACK or TCP sequence number lies in \
              [from, to); relative values count from the first one seen on the subflow (per \
              direction); 4-byte values compare modulo 2^32",
        params: &[
            Param { name: "field", ty: ParamType::Name, required: true, default: None, doc: "dsn, data_ack or ssn" },
            Param { name: "from", ty: ParamType::Bytes, required: false, default: Some("0"), doc: "first value picked (integer, or \"64KB\", \"1MiB\", ...)" },
            Param { name: "to", ty: ParamType::Bytes, required: false, default: None, doc: "first value no longer picked (absent: no upper end)" },
            Param { name: "relative", ty: ParamType::Bool, required: false, default: Some("true"), doc: "count from the first value seen on the subflow" },
        ],
    },
    Entry {
        kind: "blk_subflow",
        role: StageRole::Actor,
        object: "blk_subflow",
        hooks: ALL_HOOKS,
        doc: "add_addr: takes ADD_ADDR announcements out of the selected packets and keeps them per \
              connection for add_subflow (the packet stays MPTCP: a DSS data ACK or NOPs take the \
              option's place); join: drops MP_JOIN SYNs",
        params: &[Param { name: "mode", ty: ParamType::Name, required: false, default: Some("add_addr"), doc: "add_addr or join" }],
    },
    Entry {
        kind: "add_subflow",
        role: StageRole::Actor,
        object: "add_subflow",
        hooks: ALL_HOOKS,
        doc: "puts an ADD_ADDR kept by blk_subflow back, byte for byte, on the next selected packet \
              of that connection from the announcing end (XDP: any segment, TC: segments without \
              payload; where it does not fit beside the options, e.g. IPv6, it takes the place of \
              a pure ACK's ack-only DSS, as Linux does), so the peer opens its subflow after all",
        params: &[],
    },
    Entry {
        kind: "rate_limit",
        role: StageRole::Actor,
        object: "rate_limit",
        hooks: ALL_HOOKS,
        doc: "holds the selected subflow's data to `rate` in each direction it sees: drops new \
              data past the budget (a burst ahead at most) and clamps the receive window in the \
              ACKs (never raises it; window scale from the handshake). Against a Linux MPTCP \
              sender the data must pass the stage (it sends past a subflow's window): attach on \
              the data's path (receiver's xdp, sender's tc-egress) and, to spare losses, on the ACKs",
        params: &[
            Param {
                name: "rate",
                ty: ParamType::Rate,
                required: true,
                default: None,
                doc: "tc units: 20mbit, 5MBps, 100kbit, 1gbit (bare number: bit/s), or { map = NAME, key = … } (a rate map; burst: 1 s of the rate)",
            },
            Param {
                name: "burst",
                ty: ParamType::Size,
                required: false,
                default: Some("rate x 1s (at least 64kb)"),
                doc: "credit kept at most: bytes the sender may send at once after a pause",
            },
        ],
    },
    Entry {
        kind: "pass",
        role: StageRole::Actor,
        object: "verdict",
        hooks: ALL_HOOKS,
        doc: "terminal verdict: the selected packets go on untouched and no later stage or chain runs",
        params: &[],
    },
    Entry {
        kind: "drop",
        role: StageRole::Actor,
        object: "verdict",
        hooks: ALL_HOOKS,
        doc: "terminal verdict: the selected packets are dropped",
        params: &[],
    },
    Entry {
        kind: "custom",
        role: StageRole::Selector,
        object: "",
        hooks: ALL_HOOKS,
        doc: "a third-party selector from a BPF object (see examples/)",
        params: CUSTOM_PARAMS,
    },
    Entry {
        kind: "custom",
        role: StageRole::Actor,
        object: "",
        hooks: ALL_HOOKS,
        doc: "a third-party actor from a BPF object (see examples/)",
        params: CUSTOM_PARAMS,
    },
];

/// The catalogue entry of a kind.
pub fn find(kind: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.kind == kind)
}

/// The catalogue entry of a kind in a role (`custom` exists in both).
/// Actor parameters that may name a map instead of a literal:
/// `{ map = NAME, key = src|dst|pair|subflow|sport|dport }`, with the
/// value type the map must have.
pub const MAP_PARAMS: &[(&str, &str, &str)] = &[
    ("set_mark", "mark", "u32"),
    ("rate_limit", "rate", "rate"),
    ("set_backup", "backup", "bool"),
    ("redirect", "dev", "dev"),
];

pub fn find_role(kind: &str, role: StageRole) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.kind == kind && e.role == role)
}

const CUSTOM_PARAMS: &[Param] = &[
    Param {
        name: "object",
        ty: ParamType::Path,
        required: true,
        default: None,
        doc: "BPF object built against include/emptcp for the chain's hook (-DEMPTCP_XDP or -DEMPTCP_TC)",
    },
    Param {
        name: "program",
        ty: ParamType::Name,
        required: true,
        default: None,
        doc: "the program (C function) in the object",
    },
    Param {
        name: "params",
        ty: ParamType::U32List,
        required: false,
        default: None,
        doc: "up to 14 integers, native-endian u32 in emptcp_stage.param",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_an_object() {
        for e in CATALOG.iter().filter(|e| e.kind != "custom") {
            assert!(
                crate::skel::OBJECTS.iter().any(|(s, _, _)| *s == e.object),
                "catalogue entry {} names object {} which build.rs did not build",
                e.kind,
                e.object
            );
        }
    }
}
