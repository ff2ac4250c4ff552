// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * set_mark - actor (TC only): set the skb mark of the selected packets, for
 * policy routing (`ip rule fwmark`) or qdisc classification of one subflow.
 * Built for XDP too (there is no skb): it counts a skip and passes. The
 * mark may come from a map keyed by the packet (`mark = { map = … }`).
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>
#include <emptcp/tables.h>

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_STAGE int set_mark_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct emptcp_set_mark m;
	__u64 v;
	int lit;

	if (!emptcp_matched(r))
		return EMPTCP_CONTINUE;
	emptcp_param_copy(r, &m, sizeof(m));
	lit = emptcp_param_from_tab(ctx, r, &v);
	if (lit < 0)
		return EMPTCP_CONTINUE;
	if (lit == 0)
		m.value = v;
#ifdef EMPTCP_TC
	ctx->mark = (ctx->mark & ~m.mask) | (m.value & m.mask);
	emptcp_run_count(r, EMPTCP_CNT_HIT);
#else
	emptcp_run_count(r, EMPTCP_CNT_SKIP);
#endif
	return EMPTCP_CONTINUE;
}

EMPTCP_ACTOR(set_mark, set_mark_stage, sizeof(struct emptcp_set_mark));

EMPTCP_LICENSE("Dual BSD/GPL");
