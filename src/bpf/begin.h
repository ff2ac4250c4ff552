/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * begin.h - what every packet meets first at an attach point, in the
 * program attached there: the entry program (one program per stage,
 * linked by tail calls) or a walk program (every chain in one program).
 * Counts the packet on the entry's counters (slot 0; a walk counts its
 * packets in its own block, walk.bpf.c), parses Ethernet,
 * VLAN, IPv4/IPv6 and TCP once and fills the per-packet context.
 */
#ifndef __EMPTCP_BEGIN_H
#define __EMPTCP_BEGIN_H

/*
 * Returns 0 with @p filled for the first stage, or -1 for a packet that
 * passes untouched (not TCP, or not parseable: counted).
 */
static __always_inline int emptcp_begin(emptcp_ctx *ctx, struct emptcp_pctx *p)
{
	struct emptcp_l34 l = {};
	int ret;

#ifndef EMPTCP_WALK
	emptcp_count(0, EMPTCP_CNT_RUN);
#endif
	ret = emptcp_parse_l34(emptcp_ctx_data(ctx), emptcp_ctx_data_end(ctx), &l);
	/*
	 * TC: headers may sit in frags; only then make them linear.
	 * bpf_skb_pull_data() also makes the head writable, which copies the
	 * head of every cloned skb (every TCP data segment at egress) and
	 * pulls payload into it: ~200 ns per packet on the wire
	 * (scripts/bench wire), where headers are almost always linear.
	 */
	if (ret == EMPTCP_ESHORT) {
		emptcp_ctx_pull(ctx, 128);
		ret = emptcp_parse_l34(emptcp_ctx_data(ctx), emptcp_ctx_data_end(ctx), &l);
	}
	if (ret != 0) {
		emptcp_count(0, ret < 0 ? EMPTCP_CNT_PARSE_ERR : EMPTCP_CNT_NOT_TCP);
		return -1;
	}
	p->match = EMPTCP_PM_TRUE | EMPTCP_PM_FRESH;
	p->flags = l.v6 ? EMPTCP_PF_V6 : 0;
	p->l3_off = l.l3_off;
	p->l4_off = l.l4_off;
	/* p->slot: the first stage sets its own */
	return 0;
}

#endif /* __EMPTCP_BEGIN_H */
