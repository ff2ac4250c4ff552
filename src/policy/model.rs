//! The typed chain model a policy file describes: chains of selectors
//! and actors on a device and hook, and the named sets and maps they use.
//! What `apply` plans from and what the state records (serde).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::abi;
use crate::cli::text::quoted;
use crate::tables::{KeyType, TableDef};

/// Where a chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
        }
    }
    /// The BPF program type family: "xdp" or "tc".
    pub fn family(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress | Hook::TcEgress => "tc",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Hook {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "xdp" => Ok(Hook::Xdp),
            "tc-ingress" => Ok(Hook::TcIngress),
            "tc-egress" => Ok(Hook::TcEgress),
            _ => Err(format!(
                "unknown hook {} (xdp, tc-ingress, tc-egress)",
                quoted(s)
            )),
        }
    }
}

/// How a selector combines with the result of the selectors before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    #[default]
    And,
    Or,
}

/// A selector and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SelectorKind {
    IpPair {
        src: Option<IpAddr>,
        dst: Option<IpAddr>,
        bidir: bool,
    },
    PacketType {
        types: Vec<String>,
    },
    /// One TCP 4-tuple (absent fields: any).
    Subflow {
        saddr: Option<IpAddr>,
        daddr: Option<IpAddr>,
        sport: Option<u16>,
        dport: Option<u16>,
        bidir: bool,
    },
    /// Source address in a prefix.
    Src {
        addr: IpAddr,
        prefix: u8,
    },
    /// Destination address in a prefix.
    Dst {
        addr: IpAddr,
        prefix: u8,
    },
    /// TCP source and/or destination port.
    Port {
        sport: Option<u16>,
        dport: Option<u16>,
    },
    /// DSS data sequence number, DSS data ACK or TCP sequence number in
    /// [from, to).
    Sequence {
        field: SeqField,
        from: u64,
        to: Option<u64>,
        relative: bool,
    },
    /// The packet's key is in a named set (`src`/`dst`/`ip_pair`/
    /// `subflow`/`port` with `set = "NAME"`).
    InSet {
        keyof: KeyOf,
        set: String,
        bidir: bool,
    },
    /// A third-party selector from a BPF object file.
    Custom(CustomStage),
}

/// Which packet field(s) make a table's key (abi.h enum emptcp_keyof).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOf {
    Src,
    Dst,
    Pair,
    Subflow,
    Sport,
    Dport,
}

impl KeyOf {
    pub const NAMES: &'static str = "src, dst, pair, subflow, sport, dport";

    pub fn parse(s: &str) -> Option<KeyOf> {
        Some(match s {
            "src" => KeyOf::Src,
            "dst" => KeyOf::Dst,
            "pair" => KeyOf::Pair,
            "subflow" => KeyOf::Subflow,
            "sport" => KeyOf::Sport,
            "dport" => KeyOf::Dport,
            _ => return None,
        })
    }

    /// abi.h enum emptcp_keyof.
    pub fn abi(self) -> u8 {
        match self {
            KeyOf::Src => abi::KEYOF_SRC,
            KeyOf::Dst => abi::KEYOF_DST,
            KeyOf::Pair => abi::KEYOF_PAIR,
            KeyOf::Subflow => abi::KEYOF_SUBFLOW,
            KeyOf::Sport => abi::KEYOF_SPORT,
            KeyOf::Dport => abi::KEYOF_DPORT,
        }
    }

    /// The table key types this field can be looked up in.
    pub fn fits(self, kt: KeyType) -> bool {
        matches!(
            (self, kt),
            (KeyOf::Src | KeyOf::Dst, KeyType::Addr | KeyType::Prefix)
                | (KeyOf::Pair, KeyType::Pair)
                | (KeyOf::Subflow, KeyType::Subflow)
                | (KeyOf::Sport | KeyOf::Dport, KeyType::Port)
        )
    }
}

/// An actor parameter taken per packet from a map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapRef {
    pub map: String,
    pub key: KeyOf,
}

/// A named set or map and its elements, as a policy file declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    pub def: TableDef,
    /// In their text form (`KEY`, or `KEY=VALUE` for a map).
    pub elements: Vec<String>,
}

/// The number the `sequence` selector compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeqField {
    Dsn,
    DataAck,
    Ssn,
}

/// What `blk_subflow` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlkMode {
    /// Take ADD_ADDR announcements out (and keep them for add_subflow).
    #[default]
    AddAddr,
    /// Drop MP_JOIN SYNs.
    Join,
}

/// A stage from a BPF object built outside emptcp (`kind = "custom"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomStage {
    /// Path of the BPF object (.o), built for the chain's hook family.
    pub object: std::path::PathBuf,
    /// Name of the program (the C function) in the object.
    pub program: String,
    /// Up to 14 integers, stored as native-endian u32 in the stage's parameters.
    pub params: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    pub op: Op,
    pub not: bool,
    #[serde(flatten)]
    pub kind: SelectorKind,
}

/// An actor and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    SetBackup {
        backup: bool,
        once: bool,
        /// `backup` from a bool map keyed by the packet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        map: Option<MapRef>,
    },
    /// Set the skb mark (TC): mark = (mark & !mask) | (value & mask).
    SetMark {
        mark: u32,
        mask: u32,
        /// `mark` from a u32 map keyed by the packet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        map: Option<MapRef>,
    },
    /// Send the packet out of another device (terminal).
    Redirect {
        dev: String,
        ingress: bool,
        /// TC: the next hop whose MAC the packet gets.
        via: Option<IpAddr>,
        /// The device from a dev map keyed by the packet (`dev` unused).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        map: Option<MapRef>,
    },
    /// Send MP_CAPABLE keys and the 4-tuple to `emptcp events`.
    GetConnect,
    /// Send MP_JOIN token, nonce, address id and backup bit to `emptcp events`.
    GetSubflow,
    /// Per-subflow metrics (`emptcp stats`): any of packets, bytes, rtt, retrans, window.
    Record { metrics: Vec<String> },
    /// Keep the peer from opening subflows (ADD_ADDR taken out, or MP_JOIN SYNs dropped).
    BlkSubflow { mode: BlkMode },
    /// Put a kept ADD_ADDR back so the peer opens its subflow.
    AddSubflow,
    /// Clamp the receive window of the selected ACKs so the data sender
    /// stays under `rate_bps` (bit/s); `burst` bytes of credit at most.
    RateLimit {
        rate_bps: u64,
        burst: u32,
        /// The rate from a rate map keyed by the packet (burst: 1 s of it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        map: Option<MapRef>,
    },
    /// Terminal verdict: the packet goes on untouched, no later stage runs.
    Pass,
    /// Terminal verdict: the packet is dropped.
    Drop,
    /// A third-party actor from a BPF object file.
    Custom(CustomStage),
}

impl SelectorKind {
    pub fn name(&self) -> &'static str {
        match self {
            SelectorKind::IpPair { .. } => "ip_pair",
            SelectorKind::PacketType { .. } => "packet_type",
            SelectorKind::Subflow { .. } => "subflow",
            SelectorKind::Src { .. } => "src",
            SelectorKind::Dst { .. } => "dst",
            SelectorKind::Port { .. } => "port",
            SelectorKind::Sequence { .. } => "sequence",
            SelectorKind::InSet { keyof, .. } => match keyof {
                KeyOf::Src => "src",
                KeyOf::Dst => "dst",
                KeyOf::Pair => "ip_pair",
                KeyOf::Subflow => "subflow",
                KeyOf::Sport | KeyOf::Dport => "port",
            },
            SelectorKind::Custom(_) => "custom",
        }
    }
}

impl Actor {
    /// The map the actor takes its parameter from, if any.
    pub fn map(&self) -> Option<&MapRef> {
        match self {
            Actor::SetBackup { map, .. }
            | Actor::SetMark { map, .. }
            | Actor::Redirect { map, .. }
            | Actor::RateLimit { map, .. } => map.as_ref(),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Actor::SetBackup { .. } => "set_backup",
            Actor::SetMark { .. } => "set_mark",
            Actor::Redirect { .. } => "redirect",
            Actor::GetConnect => "get_connect",
            Actor::GetSubflow => "get_subflow",
            Actor::Record { .. } => "record",
            Actor::BlkSubflow { .. } => "blk_subflow",
            Actor::AddSubflow => "add_subflow",
            Actor::RateLimit { .. } => "rate_limit",
            Actor::Pass => "pass",
            Actor::Drop => "drop",
            Actor::Custom(_) => "custom",
        }
    }
}

/// One chain: selectors, then actors, on one device and hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chain {
    pub name: String,
    pub dev: String,
    pub hook: Hook,
    pub netns: Option<String>,
    pub select: Vec<Selector>,
    pub act: Vec<Actor>,
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub chains: Vec<Chain>,
    /// Named sets and maps (`[[set]]`, `[[map]]`).
    #[serde(default)]
    pub tables: Vec<TableSpec>,
}
