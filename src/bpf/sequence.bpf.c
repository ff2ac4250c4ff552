// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sequence - selector: packets whose DSS data sequence number, DSS data
 * ACK or TCP (subflow) sequence number lies in [from, to).
 *
 * relative: the value is counted from the first one this stage saw on the
 * subflow, per direction (emptcp_seq_base, a flowtab.h cache keyed by the
 * packet's 4-tuple and the stage's slot, so v4 and v6 share it). The MPTCP token is
 * not in data packets, so the DSN and data-ACK bases are per subflow too:
 * on a joined subflow "relative" counts from that subflow's first DSN.
 * The base goes away when the direction sends FIN or RST (or when a new
 * subflow takes its slot).
 *
 * Widths: 4-byte values (ssn, 4-byte DSN or data ACK) are compared modulo
 * 2^32, so a range may wrap; when both the value and the base are 8 bytes
 * the comparison is 64-bit. `ssn` counts payload bytes: a SYN's sequence
 * number is taken + 1. Packets without the field (no DSS mapping for dsn,
 * no data ACK for data_ack) are not picked, nor is a DSS written by
 * blk_subflow in the same walk (EMPTCP_PF_PM): it is not the peer's.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>
#include "flowtab.h"

/* Forces the parameter type into BTF (read by emptcp, never by this code). */
const volatile struct emptcp_sequence emptcp_sequence_abi SEC(".rodata.abi") = {};

/* First value seen per (subflow direction, slot). */
struct emptcp_seq_slot {
	struct emptcp_flow_key key;
	struct emptcp_seq_base b;
};
FLOWTAB(emptcp_seq_base, struct emptcp_seq_slot);

/* Is @off (4- or 8-byte arithmetic, see above) inside [from, to)? */
static __always_inline int seq_in_range(const struct emptcp_sequence *sq, __u64 off, int wide,
					int relative)
{
	__u64 span;
	__u32 o32, f32;

	if (wide) {
		if (off < sq->from)
			return 0;
		return !(sq->flags & EMPTCP_SEQF_HAS_TO) || off < sq->to;
	}
	o32 = (__u32)off;
	f32 = (__u32)sq->from;
	if (sq->flags & EMPTCP_SEQF_HAS_TO) {
		span = sq->to - sq->from;
		if (sq->to <= sq->from)
			return 0;
		if (span >= (1ULL << 32))
			return 1;
		return (__u32)(o32 - f32) < (__u32)span;
	}
	/* no upper end: offsets count up from 0; absolute values wrap */
	if (relative)
		return o32 >= f32;
	return (__s32)(o32 - f32) >= 0;
}

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_HEAVY_STAGE int sequence_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct emptcp_seq_slot *s;
	struct emptcp_sequence sq;
	struct emptcp_flow_key k EMPTCP_ALIGN8;
	struct emptcp_mptcp_dss d;
	struct tcphdr *th;
	__u64 v, off;
	__u32 width;
	int relative, wide, hit, fresh;
	__u8 fl;

	if (emptcp_select_decided(r))
		return EMPTCP_CONTINUE;
	emptcp_param_copy(r, &sq, sizeof(sq));
	th = emptcp_tcp(ctx, r);
	if (!th) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return emptcp_selected(r, 0);
	}
	fl = ((__u8 *)th)[13];
	v = bpf_ntohl(th->seq);
	width = 4;
	if (sq.field == EMPTCP_SEQ_SSN) {
		if (fl & EMPTCP_TCP_SYN)
			v = (__u32)(v + 1);
	} else {
		/* a DSS blk_subflow wrote carries no value of the peer's */
		if (r->p.flags & EMPTCP_PF_PM)
			return emptcp_selected(r, 0);
		/*
		 * The DSS, parsed in place; the option summary is not kept,
		 * so the walk has no context to reload after this stage. No
		 * DSS: nothing to compare; a malformed one: a parse error.
		 */
		hit = emptcp_dss_peek(ctx, r, &d);
		if (hit <= 0) {
			if (hit < 0)
				emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
			return emptcp_selected(r, 0);
		}
		if (sq.field == EMPTCP_SEQ_DSN) {
			if (!(d.flags & EMPTCP_MPTCP_DSS_HAS_MAP))
				return emptcp_selected(r, 0);
			v = d.dsn;
			width = (d.flags & EMPTCP_MPTCP_DSS_DSN64) ? 8 : 4;
		} else {
			if (!(d.flags & EMPTCP_MPTCP_DSS_HAS_ACK))
				return emptcp_selected(r, 0);
			v = d.data_ack;
			width = (d.flags & EMPTCP_MPTCP_DSS_ACK64) ? 8 : 4;
		}
	}

	relative = sq.flags & EMPTCP_SEQF_RELATIVE;
	off = v;
	wide = width == 8;
	if (relative) {
		if (emptcp_tuple(ctx, r, k.saddr, k.daddr, &k.sport, &k.dport) < 0) {
			emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
			return emptcp_selected(r, 0);
		}
		k.slot = r->slot;
		k.pad = FLOWTAB_LIVE;
		s = flowtab_find(&emptcp_seq_base, &k, 1, &fresh);
		if (!s) {
			emptcp_run_count(r, EMPTCP_CNT_ERROR);
			return emptcp_selected(r, 0);
		}
		if (fresh) {
			flowtab_claim(&s->key, &k, sizeof(s->b));
			s->b.base = v;
			s->b.width = width;
			off = 0;
		} else {
			wide = wide && s->b.width == 8;
			off = v - s->b.base;
		}
		/* the direction is done: its base goes */
		if (fl & (EMPTCP_TCP_FIN | EMPTCP_TCP_RST))
			flowtab_free(&s->key);
	}
	hit = seq_in_range(&sq, off, wide, relative);
	return emptcp_selected(r, hit);
}

EMPTCP_SELECTOR_FN(sequence, sequence_stage, sizeof(struct emptcp_sequence));

EMPTCP_LICENSE("Dual BSD/GPL");
