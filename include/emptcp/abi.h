/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/abi.h - the binary contract between emptcp (user space, Rust) and
 * every chain stage (ours and third-party ones).
 *
 * Needs:      vmlinux.h (for __u8.. __u32) included before it.
 * Guarantees: fixed-width fields only, explicit padding, no bool, no
 *             bitfields; every size is pinned by a _Static_assert, and Rust
 *             reads these types from the skeleton's BTF, never from a
 *             hand-written copy. Every constant Rust uses is a member of a
 *             C enum (not a #define), and every such enum is a field type
 *             of entry.bpf.c's struct emptcp_abi_types, so that it reaches
 *             Rust in BTF too (src/abi.rs).
 * Limits:     a hook type (XDP, TC) has EMPTCP_MAX_SLOTS stage slots;
 *             slot 0 is never used (it means "end of chain").
 */
#ifndef __EMPTCP_ABI_H
#define __EMPTCP_ABI_H

enum emptcp_abi_version {
	/*
	 * 2: tables are arrays the stage probes (tables.h);
	 * 3: a prefix table is a trie per family (emptcp_g_tab_prefix4);
	 * 4: a slot table sits in the outer map of its size
	 *    (emptcp_g_tab_<layout>_<bits>), reached through a program's
	 *    bindings (tab_bind0..3, the reference's flags)
	 * 5: a prefix table's IPv4 prefixes are also in a slot table keyed
	 *    by (length, masked address), probed per length
	 *    (emptcp_g_tab_prefix_<bits>, struct emptcp_tab_pfx_head)
	 */
	EMPTCP_ABI_VERSION = 5,
};

enum emptcp_limits {
	/* Stage slots per hook type (size of the tail-call PROG_ARRAY). */
	EMPTCP_MAX_SLOTS = 1024,
	/* Attach points (device x hook) per hook type. */
	EMPTCP_MAX_ATTACH = 256,
	/*
	 * The last EMPTCP_MAX_ATTACH slots are head slots: head slot of attach
	 * point id holds the first stage of its chain list, so that the entry
	 * program's tail call has a constant key (a direct jump, no retpoline).
	 * Stages use slots 1 .. EMPTCP_STAGE_SLOTS - 1.
	 */
	EMPTCP_STAGE_SLOTS = EMPTCP_MAX_SLOTS - EMPTCP_MAX_ATTACH,
	/*
	 * Stages one walk program runs (walk.bpf.c): the chains of one attach
	 * point together. Points with a third-party stage walk by tail calls,
	 * which the kernel stops after 33.
	 */
	EMPTCP_MAX_WALK = 512,
	/* The most stages the unrolled walk (every built-in stage) runs. */
	EMPTCP_MAX_SHORT_WALK = 32,
};
#define EMPTCP_HEAD_SLOT(id)	(EMPTCP_STAGE_SLOTS + ((id) % EMPTCP_MAX_ATTACH))
/*
 * What a stage object says about each of its stages (EMPTCP_SELECTOR,
 * EMPTCP_ACTOR in chain.h): a `.rodata` record `emptcp_info_<program>`
 * that emptcp reads before it loads a third-party object. It refuses,
 * in one line, a program built for another stage ABI, a selector listed
 * under [[chain.act]] (or an actor under [[chain.select]]), and more
 * parameters than the stage reads.
 */
enum emptcp_role {
	EMPTCP_ROLE_SELECTOR = 1,
	EMPTCP_ROLE_ACTOR = 2,
};

struct emptcp_stage_info {
	__u32 abi;		/* EMPTCP_ABI_VERSION it was built against */
	__u32 role;		/* EMPTCP_ROLE_* */
	__u32 param_size;	/* bytes of parameters it reads (<= EMPTCP_PARAM_SIZE) */
	__u32 reserved;
};

enum emptcp_param_size {
	/* Bytes of parameters a stage carries in its slot. */
	EMPTCP_PARAM_SIZE = 56,
	/* Where an actor's table reference sits (struct emptcp_tab_ref). */
	EMPTCP_PARAM_TAB_OFF = EMPTCP_PARAM_SIZE - 4,
};

/* Per-stage counters, one per (slot, reason), per CPU. */
enum emptcp_counter {
	EMPTCP_CNT_RUN = 0,	/* packets that entered the stage */
	EMPTCP_CNT_HIT = 1,	/* selector matched / actor changed the packet */
	EMPTCP_CNT_SKIP = 2,	/* actor: packet not eligible (SYN, payload on TC, once) */
	EMPTCP_CNT_PARSE_ERR = 3, /* packet or option could not be parsed: passed */
	EMPTCP_CNT_NO_ROOM = 4,	/* no room for an option (60-byte TCP header): passed */
	EMPTCP_CNT_TAIL_MISS = 5, /* tail call to the next stage failed: passed */
	EMPTCP_CNT_ERROR = 6,	/* a helper failed (grow, store, csum) */
	EMPTCP_CNT_NOT_TCP = 7,	/* entry only: not TCP, or not parseable to TCP */
	EMPTCP_CNT_DROP = 8,	/* actor dropped the packet (rate_limit: data over the budget) */
	EMPTCP_CNT_NO_KEY = 9,	/* actor: the packet's key is not in the parameter's map: nothing done */
	EMPTCP_CNT__MAX = 10,
};

/*
 * A slot's counters (emptcp_stats value), one per reason side by side: a
 * packet's counts for one stage touch one map element, and the element
 * pointers of a chain's consecutive slots share a cache line.
 */
struct emptcp_counters {
	__u64 c[EMPTCP_CNT__MAX];
};
_Static_assert(sizeof(struct emptcp_counters) == 80, "emptcp_counters is 80 bytes");

/* emptcp_stage.flags */
enum emptcp_stage_flag {
	EMPTCP_SF_OR = 0x01,	/* selector: OR with the result so far (else AND) */
	EMPTCP_SF_NOT = 0x02,	/* selector: invert own result */
	EMPTCP_SF_FIRST = 0x04,	/* first stage of a chain: result resets */
	EMPTCP_SF_ACTOR = 0x08,	/* stage is an actor */
};

/*
 * One stage of a chain, stored in the stage map at its slot. The planner in
 * user space writes it before the slot becomes reachable.
 */
struct emptcp_stage {
	__u16 next;	/* slot of the next stage; 0 = end of all chains */
	__u16 reserved;	/* 0: a stage has one successor, see chain.h */
	__u16 chain;	/* chain number, for show/stats */
	__u8 flags;	/* EMPTCP_SF_* */
	__u8 kind;	/* stage kind id (informational, checked by the stage) */
	__u8 param[EMPTCP_PARAM_SIZE];
};
_Static_assert(sizeof(struct emptcp_stage) == 64, "emptcp_stage is 64 bytes");

/*
 * The attach table: what the entry program of an attach point runs. The
 * entry jumps to the point's head slot, which holds the program of slot
 * `first`.
 */
struct emptcp_attach {
	__u16 first;	/* first slot; 0 = nothing to run */
	__u16 pad;
	__u32 gen;	/* generation, bumped on every swap (show) */
};
_Static_assert(sizeof(struct emptcp_attach) == 8, "emptcp_attach is 8 bytes");

/* emptcp_pctx.flags */
#define EMPTCP_PF_V6		0x01	/* network header is IPv6 */
#define EMPTCP_PF_OPTS		0x02	/* .mptcp, .subtypes, .dss_off, .ts_off hold the option summary */
#define EMPTCP_PF_EOL		0x04	/* (with OPTS) an EOL ends the options before the header does */
/*
 * A path-management stage wrote an MPTCP option into this packet (the
 * DSS that replaced an ADD_ADDR, or an ADD_ADDR put back): later stages of
 * the walk neither take it out again nor take its values for the peer's.
 */
#define EMPTCP_PF_PM		0x80

/* emptcp_pctx.match */
#define EMPTCP_PM_TRUE		0x01	/* result so far */
#define EMPTCP_PM_FRESH		0x02	/* no selector has run in this chain yet */

/*
 * The per-packet policy context: 16 bytes, carried in skb->cb[0..3] on TC
 * (cb has 20) and in a per-CPU scratch slot on XDP (see docs/design.md).
 * Offsets l3_off/l4_off are from the start of the packet (data). The
 * option summary (valid with EMPTCP_PF_OPTS) is filled by the first stage
 * that asks for it (chain.h emptcp_opts()); a stage that changes the
 * options clears EMPTCP_PF_OPTS.
 */
struct emptcp_pctx {
	__u16 slot;	/* slot of the stage running now */
	__u8 match;	/* EMPTCP_PM_* */
	__u8 flags;	/* EMPTCP_PF_* */
	__u16 l3_off;	/* network header */
	__u16 l4_off;	/* TCP header */
	__u32 mptcp;	/* option summary: packet-type bits (1 << enum emptcp_ptype) */
	__u16 subtypes;	/* option summary: bit (1 << subtype) per MPTCP subtype seen */
	__u8 dss_off;	/* option summary: first DSS, from the TCP header (0: none) */
	__u8 ts_off;	/* option summary: timestamp option, from the TCP header (0: none) */
};
_Static_assert(sizeof(struct emptcp_pctx) == 16, "emptcp_pctx is 16 bytes");

/* ---- parameters of the built-in stages (in emptcp_stage.param) ---- */

enum emptcp_kind {
	EMPTCP_KIND_CUSTOM = 0,
	EMPTCP_KIND_IP_PAIR = 1,
	EMPTCP_KIND_PACKET_TYPE = 2,
	EMPTCP_KIND_SET_BACKUP = 3,
	EMPTCP_KIND_VERDICT = 4,
	EMPTCP_KIND_SUBFLOW = 5,
	EMPTCP_KIND_PREFIX = 6,
	EMPTCP_KIND_PORT = 7,
	EMPTCP_KIND_SET_MARK = 8,
	EMPTCP_KIND_REDIRECT = 9,
	EMPTCP_KIND_OBSERVE = 10,	/* get_connect, get_subflow (param[0]: enum emptcp_event_kind) */
	EMPTCP_KIND_RECORD = 12,
	EMPTCP_KIND_SEQUENCE = 13,
	EMPTCP_KIND_BLK_SUBFLOW = 14,
	EMPTCP_KIND_ADD_SUBFLOW = 15,
	EMPTCP_KIND_RATE_LIMIT = 16,
	EMPTCP_KIND_LOOKUP = 17,
};

/* record: what to measure (param: __u32 metrics). */
enum emptcp_rec_metric {
	EMPTCP_REC_PACKETS = 0x01,
	EMPTCP_REC_BYTES = 0x02,
	EMPTCP_REC_RTT = 0x04,
	EMPTCP_REC_RETRANS = 0x08,
	EMPTCP_REC_WINDOW = 0x10,
};

/*
 * Per-subflow record (map emptcp_g_flows, shared by both hooks so that an
 * ingress and an egress chain fill the same entry): an ARRAY of slots
 * {struct emptcp_flow_key key; struct emptcp_flow_rec rec;}, a slot in
 * use when key.pad is 1. Key: the lower (address, port) end first and
 * slot 0; direction 0 is from that end.
 */
struct emptcp_flow_rec {
	__u64 pkts[2];
	__u64 bytes[2];		/* TCP payload */
	__u64 retrans[2];	/* segments whose data was seen before */
	__u64 first_ns;
	__u64 last_ns;
	__u64 rtt_sum_ns;
	__u64 rtt_last_ns;
	__u64 rtt_n;
	__u64 ts_sent_ns[2];	/* when ts_sent_val[d] was first seen */
	__u64 key[2];		/* MP_CAPABLE key sent from each end (0: unseen) */
	__u32 seq_next[2];	/* highest sequence + length seen */
	__u32 ts_sent_val[2];	/* pending TSval waiting for its echo */
	__u32 win[2];		/* last window, scaled when the SYN's shift was seen */
	__u32 token;		/* MP_JOIN SYN: token of the joined connection */
	__u8 wscale[2];		/* window shift from each end's SYN, +1 (0: unseen) */
	__u8 v6;
	__u8 seq_init;		/* bit d: seq_next[d] valid */
	__u8 looked[2];		/* segments after the SYN whose options were read for keys */
	__u8 pad[6];
};
_Static_assert(sizeof(struct emptcp_flow_rec) == 160, "emptcp_flow_rec is 160 bytes");

/* Events (ring buffer emptcp_g_events, shared by every chain of both hooks). */
enum emptcp_event_kind {
	EMPTCP_EV_CONNECT = 1,	/* MP_CAPABLE with at least one key */
	EMPTCP_EV_SUBFLOW = 2,	/* MP_JOIN SYN, SYN-ACK or ACK */
};

enum emptcp_event_flag {
	EMPTCP_EVF_V6 = 0x01,
	EMPTCP_EVF_SKEY = 0x02,	/* skey valid */
	EMPTCP_EVF_RKEY = 0x04,	/* rkey valid */
	EMPTCP_EVF_XDP = 0x08,	/* seen by an XDP chain (else TC) */
};

enum emptcp_event_readers {
	/* Readers of events at once (`emptcp events`): one ring buffer each. */
	EMPTCP_EV_READERS = 4,
};

struct emptcp_event {
	__u64 ts_ns;		/* bpf_ktime_get_ns() */
	__u16 kind;		/* enum emptcp_event_kind */
	__u16 slot;		/* stage that emitted it */
	__u32 ifindex;
	__u8 saddr[16];		/* as on the wire: the packet's source */
	__u8 daddr[16];
	__u16 sport;		/* network order */
	__u16 dport;
	__u8 flags;		/* EMPTCP_EVF_* */
	__u8 tcp_flags;
	__u8 opt_len;		/* MPTCP option length */
	__u8 version;		/* MP_CAPABLE version */
	__u8 pad0;
	__u8 backup;		/* MP_JOIN B bit */
	__u8 addr_id;		/* MP_JOIN address id */
	__u8 pad;
	__u32 pad2;
	__u64 skey;		/* MP_CAPABLE: sender's key (host order) */
	__u64 rkey;		/* MP_CAPABLE: receiver's key */
	__u32 token;		/* MP_JOIN SYN: receiver's token (host order) */
	__u32 nonce;		/* MP_JOIN SYN/SYN-ACK: sender's random number */
};
_Static_assert(sizeof(struct emptcp_event) == 88, "emptcp_event is 88 bytes");

/* subflow: a 4-tuple; absent fields match anything. */
enum emptcp_subflow_flag {
	EMPTCP_SF_V6 = 0x01,
	EMPTCP_SF_BIDIR = 0x02,
	EMPTCP_SF_HAS_SADDR = 0x04,
	EMPTCP_SF_HAS_DADDR = 0x08,
	EMPTCP_SF_HAS_SPORT = 0x10,
	EMPTCP_SF_HAS_DPORT = 0x20,
};
struct emptcp_subflow {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;	/* network order */
	__u16 dport;	/* network order */
	__u8 flags;
	__u8 pad[3];
};
_Static_assert(sizeof(struct emptcp_subflow) == 40, "emptcp_subflow is 40 bytes");

/* src / dst: an address prefix on one side. */
enum emptcp_prefix_flag {
	EMPTCP_PFX_V6 = 0x01,
	EMPTCP_PFX_DST = 0x02,	/* match the destination (else the source) */
};
struct emptcp_prefix {
	__u8 addr[16];	/* already masked to the prefix */
	__u8 mask[16];
	__u8 flags;
	__u8 pad[7];
};
_Static_assert(sizeof(struct emptcp_prefix) == 40, "emptcp_prefix is 40 bytes");

/* port: source and/or destination port. */
enum emptcp_port_flag {
	EMPTCP_PORT_HAS_SPORT = 0x01,
	EMPTCP_PORT_HAS_DPORT = 0x02,
};
struct emptcp_port {
	__u16 sport;	/* network order */
	__u16 dport;
	__u8 flags;
	__u8 pad[3];
};
_Static_assert(sizeof(struct emptcp_port) == 8, "emptcp_port is 8 bytes");

/* set_mark (TC): skb->mark = (skb->mark & ~mask) | value. */
struct emptcp_set_mark {
	__u32 value;
	__u32 mask;
};
_Static_assert(sizeof(struct emptcp_set_mark) == 8, "emptcp_set_mark is 8 bytes");

/* redirect: send out of another device (ifindex in the hook's namespace). */
enum emptcp_redirect_flag {
	EMPTCP_RD_INGRESS = 0x01,	/* TC: into the device's ingress */
	EMPTCP_RD_VIA4 = 0x02,	/* TC: next hop via[0..4] (IPv4) */
	EMPTCP_RD_VIA6 = 0x04,	/* TC: next hop via[0..16] (IPv6) */
};
struct emptcp_redirect {
	__u32 ifindex;
	__u8 flags;
	__u8 pad[3];
	__u8 via[16];	/* next hop whose MAC the packet gets (network order) */
};
_Static_assert(sizeof(struct emptcp_redirect) == 24, "emptcp_redirect is 24 bytes");

/* ip_pair: v4 addresses use the first 4 bytes of the 16. */
enum emptcp_ip_pair_flag {
	EMPTCP_IPP_V6 = 0x01,	/* addresses are IPv6 */
	EMPTCP_IPP_BIDIR = 0x02,	/* also match dst->src */
	EMPTCP_IPP_SRC = 0x04,	/* src is set (else any) */
	EMPTCP_IPP_DST = 0x08,	/* dst is set (else any) */
};
struct emptcp_ip_pair {
	__u8 src[16];
	__u8 dst[16];
	__u8 flags;
	__u8 pad[7];
};
_Static_assert(sizeof(struct emptcp_ip_pair) == 40, "emptcp_ip_pair is 40 bytes");

/*
 * packet_type: a bit per type. Bits 0..8 are the MPTCP subtypes seen in
 * emptcp_pctx.mptcp refined by TCP flags; the rest are TCP-level kinds.
 */
enum emptcp_ptype {
	EMPTCP_PT_MP_CAPABLE_SYN = 0,
	EMPTCP_PT_MP_CAPABLE_SYNACK = 1,
	EMPTCP_PT_MP_CAPABLE_ACK = 2,
	EMPTCP_PT_MP_JOIN_SYN = 3,
	EMPTCP_PT_MP_JOIN_SYNACK = 4,
	EMPTCP_PT_MP_JOIN_ACK = 5,
	EMPTCP_PT_DSS_DATA = 6,		/* DSS with a mapping (carries data) */
	EMPTCP_PT_DSS_ACK = 7,		/* DSS with a data ACK and no payload */
	EMPTCP_PT_DATA_FIN = 8,
	EMPTCP_PT_ADD_ADDR = 9,
	EMPTCP_PT_ADD_ADDR_ECHO = 10,
	EMPTCP_PT_RM_ADDR = 11,
	EMPTCP_PT_MP_PRIO = 12,
	EMPTCP_PT_MP_FAIL = 13,
	EMPTCP_PT_MP_FASTCLOSE = 14,
	EMPTCP_PT_MP_TCPRST = 15,
	EMPTCP_PT_TCP_PLAIN = 16,	/* no MPTCP option at all */
	EMPTCP_PT_SYN = 17,
	EMPTCP_PT_FIN = 18,
	EMPTCP_PT_RST = 19,
	EMPTCP_PT__MAX = 20,
};
struct emptcp_packet_type {
	__u32 mask;	/* 1 << enum emptcp_ptype */
	__u32 pad;
};
_Static_assert(sizeof(struct emptcp_packet_type) == 8, "emptcp_packet_type is 8 bytes");

/* set_backup */
enum emptcp_set_backup_flag {
	EMPTCP_BK_BACKUP = 0x01,	/* set (1) or clear (0) the backup flag */
	EMPTCP_BK_ONCE = 0x02,	/* once per subflow and slot */
};
struct emptcp_set_backup {
	__u8 flags;
	__u8 pad[7];
};
_Static_assert(sizeof(struct emptcp_set_backup) == 8, "emptcp_set_backup is 8 bytes");

/* Key of the per-subflow "already done" LRU map (v4 in the first 4 bytes). */
struct emptcp_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 slot;
	__u16 pad;
};
_Static_assert(sizeof(struct emptcp_flow_key) == 40, "emptcp_flow_key is 40 bytes");

/* ---- path management: sequence, blk_subflow, add_subflow ---- */


/* sequence: which number is compared. */
enum emptcp_seq_field {
	EMPTCP_SEQ_DSN = 0,	/* DSS mapping: data sequence number (4 or 8 bytes) */
	EMPTCP_SEQ_DATA_ACK = 1,	/* DSS data ACK (4 or 8 bytes) */
	EMPTCP_SEQ_SSN = 2,	/* TCP header sequence number of the subflow */
};
enum emptcp_seq_flag {
	EMPTCP_SEQF_RELATIVE = 0x01,	/* offsets from the first value seen per subflow */
	EMPTCP_SEQF_HAS_TO = 0x02,	/* `to` is set (else: no upper end) */
};
/*
 * Picks packets whose value v (relative: v - base) lies in [from, to).
 * 4-byte values are compared modulo 2^32 (a range may wrap), 8-byte ones
 * as 64-bit numbers.
 */
struct emptcp_sequence {
	__u64 from;
	__u64 to;
	__u8 field;	/* enum emptcp_seq_field */
	__u8 flags;	/* EMPTCP_SEQF_* */
	__u8 pad[6];
};
_Static_assert(sizeof(struct emptcp_sequence) == 24, "emptcp_sequence is 24 bytes");

/* First value seen per (subflow direction, slot): map emptcp_seq_base. */
struct emptcp_seq_base {
	__u64 base;
	__u8 width;	/* 4 or 8: the width the base was seen with */
	__u8 pad[7];
};
_Static_assert(sizeof(struct emptcp_seq_base) == 16, "emptcp_seq_base is 16 bytes");

/* blk_subflow: what to block. */
enum emptcp_blk_mode {
	EMPTCP_BLK_ADD_ADDR = 0,	/* take ADD_ADDR out and keep it (emptcp_g_kept) */
	EMPTCP_BLK_JOIN = 1,	/* drop MP_JOIN SYNs */
};
struct emptcp_blk_subflow {
	__u8 mode;	/* enum emptcp_blk_mode */
	__u8 pad[7];
};
_Static_assert(sizeof(struct emptcp_blk_subflow) == 8, "emptcp_blk_subflow is 8 bytes");

/*
 * An ADD_ADDR taken out by blk_subflow, byte for byte (HMAC included), in
 * map emptcp_g_kept keyed by emptcp_flow_key: the 4-tuple of the packet
 * that carried it (source = the announcing end), slot 0.
 */
#define EMPTCP_KEPT_MAX		32
struct emptcp_kept {
	__u8 opt[EMPTCP_KEPT_MAX];	/* the option: kind 30, len, ... */
	__u64 ts_ns;		/* when it was (last) taken out */
	__u32 count;		/* how many times (retransmissions included) */
	__u8 len;		/* option length (8..30) */
	__u8 pad[3];
};
_Static_assert(sizeof(struct emptcp_kept) == 48, "emptcp_kept is 48 bytes");

/*
 * rate_limit: clamp the receive window of the selected ACKs so that the
 * data sender stays under rate_Bps.
 */
struct emptcp_rate_limit {
	__u64 rate_Bps;		/* bytes per second, > 0 */
	__u64 burst_ns;		/* burst / rate in ns: how far the budget may run ahead */
	__u64 debt_ns;		/* 1.5 bursts in ns: the most a chain on ACKs alone charges ahead */
	__u32 burst;		/* bytes of credit kept at most (> 0) */
	__u32 pad;
};
_Static_assert(sizeof(struct emptcp_rate_limit) == 32, "emptcp_rate_limit is 32 bytes");

/*
 * rate_limit per-subflow state (LRU map emptcp_g_rl_flows, shared by the
 * XDP and TC stages so that a chain on the ACKs and one on the data fill
 * the same entry). Key: emptcp_flow_key with the lower (address, port) end
 * first and slot 0; index 0 of each array is the data sent from that end.
 * Sequence numbers are those of the data's sender.
 */
#define EMPTCP_RL_EDGE		0x01	/* tat_ns and hi are valid */
struct emptcp_rl_flow {
	__u64 tat_ns[2];	/* when the budget is paid up (GCRA theoretical arrival time) */
	__u32 hi[2];		/* highest data end passed or acknowledged */
	__u8 wscale[2];		/* window shift of the data's *receiver* (from its SYN), +1 (0: unseen) */
	__u8 flags[2];		/* EMPTCP_RL_* */
	__u32 pad;
};
_Static_assert(sizeof(struct emptcp_rl_flow) == 32, "emptcp_rl_flow is 32 bytes");

/*
 * Tables: named sets and maps (nftables-style), each a BPF map created by
 * emptcp and put into the outer map (ARRAY_OF_MAPS) of its key layout at
 * the table's id. A stage names a table by (layout, id), both constants in
 * its .rodata: the outer lookup is inlined by the verifier, and the inner
 * lookup costs no kernel hash whatever the table's size:
 * - addr, pair, subflow: an open-addressing table of 2^bits slots over an
 *   ARRAY (struct emptcp_tab_slot: tag, key words, value), probed by the
 *   stage itself from the key's emptcp_tab_hash() on, at most
 *   EMPTCP_TAB_PROBES slots; bits sits in the table reference's flags.
 *   Each size has its outer map (emptcp_g_tab_<layout>_<bits>), whose
 *   tables all have 2^bits + 1 slots, so that the verifier inlines the
 *   slot's lookup too; a program reaches them through EMPTCP_TAB_BINDS
 *   bindings, which emptcp points at load at the outer maps of the sizes
 *   its stages use, and writes each reference's binding into its flags.
 * - port: an ARRAY of EMPTCP_TAB_PORTS values indexed by the port, each
 *   with EMPTCP_TAB_PORT_SET when the port is in the table.
 * - prefix: two LPM tries, one per family, at the same id of two outer
 *   maps: IPv4 (struct emptcp_key_prefix4, 4 address bytes: the kernel
 *   compares a node in one step) and IPv6 (struct emptcp_key_prefix). An
 *   IPv6 prefix matches IPv6 packets only, as the literal `src`/`dst`.
 *   The IPv4 prefixes again in a slot table, the IPv4 index (struct
 *   emptcp_tab_pfx_head), which a walk's inline lookup probes first; its
 *   size in the reference's flags, as a slot table's.
 * The arrays are mmapable: emptcp writes each element with single aligned
 * 8-byte stores (key words first, the tag last), so a packet sees an
 * element whole or not at all, and a value old or new, never torn.
 * Addresses are 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so
 * that one table holds both families; ports in network order. Every value
 * is a __u64 (a set's is 1).
 */
enum emptcp_max_tables {
	EMPTCP_MAX_TABLES = 256,	/* per layout; id 0 is "no table" */
};

enum emptcp_layout {
	EMPTCP_LAYOUT_ADDR = 0,		/* slots, struct emptcp_key_addr */
	EMPTCP_LAYOUT_PAIR = 1,		/* slots, struct emptcp_key_pair */
	EMPTCP_LAYOUT_SUBFLOW = 2,	/* slots, struct emptcp_key_subflow */
	EMPTCP_LAYOUT_PORT = 3,		/* array indexed by port */
	EMPTCP_LAYOUT_PREFIX = 4,	/* LPM tries, and slots for IPv4 (emptcp_tab_pfx_head) */
	EMPTCP_LAYOUT__MAX = 5,
};

/* Which packet field(s) make a table's key. */
enum emptcp_keyof {
	EMPTCP_KEYOF_SRC = 0,		/* source address */
	EMPTCP_KEYOF_DST = 1,		/* destination address */
	EMPTCP_KEYOF_PAIR = 2,		/* (source, destination) */
	EMPTCP_KEYOF_SUBFLOW = 3,	/* (saddr, daddr, sport, dport) */
	EMPTCP_KEYOF_SPORT = 4,
	EMPTCP_KEYOF_DPORT = 5,
};

struct emptcp_key_addr {
	__u8 a[16];
};
_Static_assert(sizeof(struct emptcp_key_addr) == 16, "emptcp_key_addr is 16 bytes");

struct emptcp_key_pair {
	__u8 src[16];
	__u8 dst[16];
};
_Static_assert(sizeof(struct emptcp_key_pair) == 32, "emptcp_key_pair is 32 bytes");

struct emptcp_key_subflow {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
};
_Static_assert(sizeof(struct emptcp_key_subflow) == 36, "emptcp_key_subflow is 36 bytes");

struct emptcp_key_port {
	__u16 port;
	__u16 pad;
};
_Static_assert(sizeof(struct emptcp_key_port) == 4, "emptcp_key_port is 4 bytes");

/* IPv6 LPM trie key: prefixlen counts the bits of a. */
struct emptcp_key_prefix {
	__u32 prefixlen;
	__u8 a[16];
};
_Static_assert(sizeof(struct emptcp_key_prefix) == 20, "emptcp_key_prefix is 20 bytes");

/* IPv4 LPM trie key (a packet's key has prefixlen 32). */
struct emptcp_key_prefix4 {
	__u32 prefixlen;
	__u8 a[4];
};
_Static_assert(sizeof(struct emptcp_key_prefix4) == 8, "emptcp_key_prefix4 is 8 bytes");

/*
 * A reference to a table: the set a `lookup` selector tests, or the map an
 * actor takes its parameter from. In an actor's parameters it sits in the
 * last 4 bytes (EMPTCP_PARAM_TAB_OFF); id 0 means the parameter is the
 * literal one.
 */
enum emptcp_tab_flag {
	EMPTCP_TAB_BIDIR = 0x01,	/* pair/subflow: the reverse direction matches too */
	EMPTCP_TAB_BIND_SHIFT = 1,	/* (flags >> 1) & 3: the program's binding (tables.h) */
	EMPTCP_TAB_BIND_MASK = 3,
	EMPTCP_TAB_BINDS = 4,		/* slot-table outer maps one program binds */
	EMPTCP_TAB_BITS_SHIFT = 3,	/* flags >> 3: log2 of a slot table's slots */
};
struct emptcp_tab_ref {
	__u8 id;	/* table id in its layout's outer map; 0 = none */
	__u8 layout;	/* enum emptcp_layout */
	__u8 keyof;	/* enum emptcp_keyof */
	__u8 flags;	/* EMPTCP_TAB_* */
};
_Static_assert(sizeof(struct emptcp_tab_ref) == 4, "emptcp_tab_ref is 4 bytes");

/* A slot's state (struct emptcp_tab_slot.tag). */
enum emptcp_tab_tag {
	EMPTCP_TAB_EMPTY = 0,	/* never used since the table was built: a probe stops */
	EMPTCP_TAB_VALID = 1,	/* holds an element */
	EMPTCP_TAB_GONE = 2,	/* held one (deleted): a probe goes on */
};

enum emptcp_tab_limit {
	EMPTCP_TAB_PROBES = 32,		/* slots a lookup probes at most */
	EMPTCP_TAB_MIN_BITS = 4,	/* the smallest slot table: 16 slots */
	EMPTCP_TAB_MAX_BITS = 26,	/* the largest: 2^24 elements at load 1/4 */
	EMPTCP_TAB_PORTS = 65536,	/* a port table's values */
	EMPTCP_TAB_MAX_WORDS = 5,	/* key words of the widest key (subflow) */
	EMPTCP_TAB_PORT_SET_BIT = 63,	/* a port value's presence bit */
};

/* A port table's value: the element's value with this bit set. */
#define EMPTCP_TAB_PORT_SET (1ULL << EMPTCP_TAB_PORT_SET_BIT)

/*
 * One slot of an addr/pair/subflow table: key_words[] are the key's bytes
 * (struct emptcp_key_*) as 8-byte words, the last one padded with zeros;
 * value follows the key's words (the struct is the widest layout; a table
 * of a narrower key has slots of 8 * (words + 2) bytes). The array has
 * one slot more than the 2^bits a probe reaches: emptcp keeps the table's
 * counts in it.
 */
struct emptcp_tab_slot {
	__u64 tag;			/* enum emptcp_tab_tag */
	__u64 key_words[EMPTCP_TAB_MAX_WORDS];
	__u64 value;
};
_Static_assert(sizeof(struct emptcp_tab_slot) == 56, "emptcp_tab_slot is 56 bytes");

/*
 * A prefix table's IPv4 index: its IPv4 prefixes in a slot table of two
 * key words, (prefix length, the IPv4-mapped address's second word with
 * the bits past the prefix cleared), at the table's id in the outer map
 * of its size (emptcp_g_tab_prefix_<bits>). A walk's inline lookup
 * probes the address's own slot at each length the index's head lists,
 * longest first, so that a set of a few lengths costs a few array loads
 * where the trie costs a kernel call (docs/design.md "An IPv4 index for
 * prefix sets"). When a slot does not tell, when the head says
 * EMPTCP_TAB_PFX_TRIE (more lengths than EMPTCP_TAB_PFX_LENS), and for
 * every other lookup, the IPv4 trie answers: it always holds every IPv4
 * prefix. The head is the slot after the 2^bits a probe reaches (the
 * table's counts); the index array has EMPTCP_TAB_PFX_AUX slots more,
 * where emptcp keeps the number of prefixes of each length.
 */
struct emptcp_tab_pfx_head {
	__u64 tag;	/* EMPTCP_TAB_GONE: a probe never stops here */
	__u64 valid;	/* slots holding an element */
	__u64 gone;	/* slots deleted since the table was built */
	__u64 lens;	/* byte i: the i-th longest length + 1; 0: no more */
};
_Static_assert(sizeof(struct emptcp_tab_pfx_head) == 32, "one slot of two key words");

enum emptcp_tab_pfx {
	EMPTCP_TAB_PFX_LENS = 4,	/* lengths an inline lookup probes at most */
	EMPTCP_TAB_PFX_TRIE = 0xff,	/* lens' first byte: ask the trie */
	EMPTCP_TAB_PFX_AUX = 9,		/* slots after the head: a count per length 0..32 */
};

#endif /* __EMPTCP_ABI_H */
