//! The C<->Rust contract (include/emptcp/abi.h), as libbpf-cargo generated
//! it from the BTF of entry.bpf.c's `struct emptcp_abi_types`: the structs
//! user space writes and reads, and every constant Rust uses. abi.h states
//! the constants as members of C enums, which come out of the skeleton as
//! `types::<enum>::<MEMBER>`; the aliases below only give them the integer
//! type of the field they go into. Nothing here is written by hand.

pub use crate::skel::entry_xdp::types;

/// `pub const NAME: TYPE = types::ENUM::MEMBER` for each line, the value
/// cast to the type of the field it goes into.
macro_rules! from_btf {
    ($($(#[$doc:meta])* $name:ident: $t:ty = $enum:ident::$member:ident;)*) => {
        $($(#[$doc])* pub const $name: $t = types::$enum::$member.0 as $t;)*
    };
}

macro_rules! plain {
    ($($t:ident),* $(,)?) => {
        // SAFETY: the skeleton types are plain C structs generated from
        // BTF: integer fields and byte arrays only, no padding the C side
        // leaves undefined (abi.h pads explicitly, and pins each size with
        // a _Static_assert), every bit pattern valid.
        $(unsafe impl plain::Plain for types::$t {})*
    };
}

plain!(
    emptcp_stage,
    emptcp_attach,
    emptcp_pctx,
    emptcp_ip_pair,
    emptcp_packet_type,
    emptcp_set_backup,
    emptcp_subflow,
    emptcp_prefix,
    emptcp_port,
    emptcp_set_mark,
    emptcp_redirect,
    emptcp_event,
    emptcp_flow_rec,
    emptcp_flow_key,
    emptcp_rate_limit,
    emptcp_sequence,
    emptcp_blk_subflow,
    emptcp_kept,
);

from_btf! {
    /// The stage ABI a stage's `emptcp_info_<program>` declares.
    ABI_VERSION: u32 = emptcp_abi_version::EMPTCP_ABI_VERSION;
    ROLE_SELECTOR: u32 = emptcp_role::EMPTCP_ROLE_SELECTOR;
    ROLE_ACTOR: u32 = emptcp_role::EMPTCP_ROLE_ACTOR;

    /// Stage slots per hook family (the tail-call PROG_ARRAY).
    MAX_SLOTS: u16 = emptcp_limits::EMPTCP_MAX_SLOTS;
    /// Attach points per hook family.
    MAX_ATTACH: u32 = emptcp_limits::EMPTCP_MAX_ATTACH;
    /// Slots 1..STAGE_SLOTS hold stages; the rest are the head slots of
    /// the attach points (abi.h EMPTCP_HEAD_SLOT).
    STAGE_SLOTS: u16 = emptcp_limits::EMPTCP_STAGE_SLOTS;
    /// The most stages one walk program runs.
    MAX_WALK: usize = emptcp_limits::EMPTCP_MAX_WALK;
    /// The most stages of the short (unrolled) walk.
    MAX_SHORT_WALK: usize = emptcp_limits::EMPTCP_MAX_SHORT_WALK;
    /// Bytes of parameters in a stage's slot.
    PARAM_SIZE: usize = emptcp_param_size::EMPTCP_PARAM_SIZE;
    /// Where an actor's table reference sits in its parameters.
    PARAM_TAB_OFF: usize = emptcp_param_size::EMPTCP_PARAM_TAB_OFF;
    /// Counters per slot.
    CNT_MAX: u32 = emptcp_counter::EMPTCP_CNT__MAX;
    /// Packets that entered a stage (a slot's counter 0).
    CNT_RUN: u32 = emptcp_counter::EMPTCP_CNT_RUN;
    /// Selector matched / actor changed the packet.
    CNT_HIT: u32 = emptcp_counter::EMPTCP_CNT_HIT;

    SF_OR: u8 = emptcp_stage_flag::EMPTCP_SF_OR;
    SF_NOT: u8 = emptcp_stage_flag::EMPTCP_SF_NOT;
    SF_FIRST: u8 = emptcp_stage_flag::EMPTCP_SF_FIRST;
    SF_ACTOR: u8 = emptcp_stage_flag::EMPTCP_SF_ACTOR;

    KIND_CUSTOM: u8 = emptcp_kind::EMPTCP_KIND_CUSTOM;
    KIND_IP_PAIR: u8 = emptcp_kind::EMPTCP_KIND_IP_PAIR;
    KIND_PACKET_TYPE: u8 = emptcp_kind::EMPTCP_KIND_PACKET_TYPE;
    KIND_SET_BACKUP: u8 = emptcp_kind::EMPTCP_KIND_SET_BACKUP;
    KIND_VERDICT: u8 = emptcp_kind::EMPTCP_KIND_VERDICT;
    KIND_SUBFLOW: u8 = emptcp_kind::EMPTCP_KIND_SUBFLOW;
    KIND_PREFIX: u8 = emptcp_kind::EMPTCP_KIND_PREFIX;
    KIND_PORT: u8 = emptcp_kind::EMPTCP_KIND_PORT;
    KIND_SET_MARK: u8 = emptcp_kind::EMPTCP_KIND_SET_MARK;
    KIND_REDIRECT: u8 = emptcp_kind::EMPTCP_KIND_REDIRECT;
    KIND_OBSERVE: u8 = emptcp_kind::EMPTCP_KIND_OBSERVE;
    KIND_RECORD: u8 = emptcp_kind::EMPTCP_KIND_RECORD;
    KIND_SEQUENCE: u8 = emptcp_kind::EMPTCP_KIND_SEQUENCE;
    KIND_BLK_SUBFLOW: u8 = emptcp_kind::EMPTCP_KIND_BLK_SUBFLOW;
    KIND_ADD_SUBFLOW: u8 = emptcp_kind::EMPTCP_KIND_ADD_SUBFLOW;
    KIND_RATE_LIMIT: u8 = emptcp_kind::EMPTCP_KIND_RATE_LIMIT;
    KIND_LOOKUP: u8 = emptcp_kind::EMPTCP_KIND_LOOKUP;

    REC_PACKETS: u32 = emptcp_rec_metric::EMPTCP_REC_PACKETS;
    REC_BYTES: u32 = emptcp_rec_metric::EMPTCP_REC_BYTES;
    REC_RTT: u32 = emptcp_rec_metric::EMPTCP_REC_RTT;
    REC_RETRANS: u32 = emptcp_rec_metric::EMPTCP_REC_RETRANS;
    REC_WINDOW: u32 = emptcp_rec_metric::EMPTCP_REC_WINDOW;

    EV_CONNECT: u8 = emptcp_event_kind::EMPTCP_EV_CONNECT;
    EV_SUBFLOW: u8 = emptcp_event_kind::EMPTCP_EV_SUBFLOW;
    EVF_V6: u8 = emptcp_event_flag::EMPTCP_EVF_V6;
    EVF_SKEY: u8 = emptcp_event_flag::EMPTCP_EVF_SKEY;
    EVF_RKEY: u8 = emptcp_event_flag::EMPTCP_EVF_RKEY;
    EVF_XDP: u8 = emptcp_event_flag::EMPTCP_EVF_XDP;
    /// Readers of events at once: one ring buffer each.
    EV_READERS: u32 = emptcp_event_readers::EMPTCP_EV_READERS;

    SUB_V6: u8 = emptcp_subflow_flag::EMPTCP_SF_V6;
    SUB_BIDIR: u8 = emptcp_subflow_flag::EMPTCP_SF_BIDIR;
    SUB_HAS_SADDR: u8 = emptcp_subflow_flag::EMPTCP_SF_HAS_SADDR;
    SUB_HAS_DADDR: u8 = emptcp_subflow_flag::EMPTCP_SF_HAS_DADDR;
    SUB_HAS_SPORT: u8 = emptcp_subflow_flag::EMPTCP_SF_HAS_SPORT;
    SUB_HAS_DPORT: u8 = emptcp_subflow_flag::EMPTCP_SF_HAS_DPORT;

    PFX_V6: u8 = emptcp_prefix_flag::EMPTCP_PFX_V6;
    PFX_DST: u8 = emptcp_prefix_flag::EMPTCP_PFX_DST;

    PORT_HAS_SPORT: u8 = emptcp_port_flag::EMPTCP_PORT_HAS_SPORT;
    PORT_HAS_DPORT: u8 = emptcp_port_flag::EMPTCP_PORT_HAS_DPORT;

    RD_INGRESS: u8 = emptcp_redirect_flag::EMPTCP_RD_INGRESS;
    RD_VIA4: u8 = emptcp_redirect_flag::EMPTCP_RD_VIA4;
    RD_VIA6: u8 = emptcp_redirect_flag::EMPTCP_RD_VIA6;

    IPP_V6: u8 = emptcp_ip_pair_flag::EMPTCP_IPP_V6;
    IPP_BIDIR: u8 = emptcp_ip_pair_flag::EMPTCP_IPP_BIDIR;
    IPP_SRC: u8 = emptcp_ip_pair_flag::EMPTCP_IPP_SRC;
    IPP_DST: u8 = emptcp_ip_pair_flag::EMPTCP_IPP_DST;

    /// Packet types (bits of emptcp_packet_type.mask).
    PT_MAX: u32 = emptcp_ptype::EMPTCP_PT__MAX;

    BK_BACKUP: u8 = emptcp_set_backup_flag::EMPTCP_BK_BACKUP;
    BK_ONCE: u8 = emptcp_set_backup_flag::EMPTCP_BK_ONCE;

    SEQ_DSN: u8 = emptcp_seq_field::EMPTCP_SEQ_DSN;
    SEQ_DATA_ACK: u8 = emptcp_seq_field::EMPTCP_SEQ_DATA_ACK;
    SEQ_SSN: u8 = emptcp_seq_field::EMPTCP_SEQ_SSN;
    SEQF_RELATIVE: u8 = emptcp_seq_flag::EMPTCP_SEQF_RELATIVE;
    SEQF_HAS_TO: u8 = emptcp_seq_flag::EMPTCP_SEQF_HAS_TO;

    BLK_ADD_ADDR: u8 = emptcp_blk_mode::EMPTCP_BLK_ADD_ADDR;
    BLK_JOIN: u8 = emptcp_blk_mode::EMPTCP_BLK_JOIN;

    /// Tables per key layout: ids 1 ..= MAX_TABLES - 1.
    MAX_TABLES: u32 = emptcp_max_tables::EMPTCP_MAX_TABLES;
    LAYOUT_ADDR: u8 = emptcp_layout::EMPTCP_LAYOUT_ADDR;
    LAYOUT_PAIR: u8 = emptcp_layout::EMPTCP_LAYOUT_PAIR;
    LAYOUT_SUBFLOW: u8 = emptcp_layout::EMPTCP_LAYOUT_SUBFLOW;
    LAYOUT_PORT: u8 = emptcp_layout::EMPTCP_LAYOUT_PORT;
    LAYOUT_PREFIX: u8 = emptcp_layout::EMPTCP_LAYOUT_PREFIX;
    KEYOF_SRC: u8 = emptcp_keyof::EMPTCP_KEYOF_SRC;
    KEYOF_DST: u8 = emptcp_keyof::EMPTCP_KEYOF_DST;
    KEYOF_PAIR: u8 = emptcp_keyof::EMPTCP_KEYOF_PAIR;
    KEYOF_SUBFLOW: u8 = emptcp_keyof::EMPTCP_KEYOF_SUBFLOW;
    KEYOF_SPORT: u8 = emptcp_keyof::EMPTCP_KEYOF_SPORT;
    KEYOF_DPORT: u8 = emptcp_keyof::EMPTCP_KEYOF_DPORT;
    TAB_BIDIR: u8 = emptcp_tab_flag::EMPTCP_TAB_BIDIR;
    TAB_BITS_SHIFT: u8 = emptcp_tab_flag::EMPTCP_TAB_BITS_SHIFT;
    TAB_BIND_SHIFT: u8 = emptcp_tab_flag::EMPTCP_TAB_BIND_SHIFT;
    TAB_BIND_MASK: u8 = emptcp_tab_flag::EMPTCP_TAB_BIND_MASK;
    TAB_BINDS: usize = emptcp_tab_flag::EMPTCP_TAB_BINDS;
    TAB_EMPTY: u8 = emptcp_tab_tag::EMPTCP_TAB_EMPTY;
    TAB_VALID: u8 = emptcp_tab_tag::EMPTCP_TAB_VALID;
    TAB_GONE: u8 = emptcp_tab_tag::EMPTCP_TAB_GONE;
    TAB_PROBES: u32 = emptcp_tab_limit::EMPTCP_TAB_PROBES;
    TAB_MIN_BITS: u32 = emptcp_tab_limit::EMPTCP_TAB_MIN_BITS;
    TAB_MAX_BITS: u32 = emptcp_tab_limit::EMPTCP_TAB_MAX_BITS;
    TAB_PORTS: u32 = emptcp_tab_limit::EMPTCP_TAB_PORTS;
    TAB_PORT_SET_BIT: u32 = emptcp_tab_limit::EMPTCP_TAB_PORT_SET_BIT;
    TAB_PFX_LENS: usize = emptcp_tab_pfx::EMPTCP_TAB_PFX_LENS;
    TAB_PFX_TRIE: u8 = emptcp_tab_pfx::EMPTCP_TAB_PFX_TRIE;
    TAB_PFX_AUX: u32 = emptcp_tab_pfx::EMPTCP_TAB_PFX_AUX;
}

/// The head slot of attach point `id`: the entry program jumps there
/// (abi.h EMPTCP_HEAD_SLOT).
pub fn head_slot(id: u32) -> u32 {
    STAGE_SLOTS as u32 + id % MAX_ATTACH
}

/// Counter names by index (abi.h enum emptcp_counter, lower case).
pub const COUNTER_NAMES: [&str; CNT_MAX as usize] = [
    "run",
    "hit",
    "skip",
    "parse_err",
    "no_room",
    "tail_miss",
    "error",
    "not_tcp",
    "drop",
    "no_key",
];

/// A stage's parameter bytes (emptcp_stage.param).
pub type Param = [u8; PARAM_SIZE];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_came_through() {
        assert_eq!(MAX_SLOTS, 1024);
        assert_eq!(STAGE_SLOTS, MAX_SLOTS - MAX_ATTACH as u16);
        assert_eq!(PARAM_TAB_OFF, PARAM_SIZE - 4);
        assert_eq!(KIND_LOOKUP, 17);
        assert_eq!(
            std::mem::size_of::<types::emptcp_stage>(),
            8 + PARAM_SIZE,
            "emptcp_stage: 8 bytes of header and the parameters"
        );
    }
}
