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

/* Sets the mark's bits under @mask to @value (TC; XDP has no mark). */
static __always_inline int set_mark_apply(emptcp_ctx *ctx, struct emptcp_run *r, __u32 value,
					  __u32 mask)
{
#ifdef EMPTCP_TC
	ctx->mark = (ctx->mark & ~mask) | (value & mask);
	emptcp_run_count(r, EMPTCP_CNT_HIT);
#else
	emptcp_run_count(r, EMPTCP_CNT_SKIP);
#endif
	return EMPTCP_CONTINUE;
}

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
	return set_mark_apply(ctx, r, m.value, m.mask);
}

EMPTCP_ACTOR(set_mark, set_mark_stage, sizeof(struct emptcp_set_mark));

#ifdef EMPTCP_WALK
/*
 * The stage at one position of a walk (walk.bpf.c), inlined there when its
 * mark is a literal (a constant of that position: the other branch is
 * pruned), read in place from its description; a mark from a map goes
 * through set_mark_stage(), whose table lookup stays one function.
 */
static __always_inline int set_mark_walk(emptcp_ctx *ctx, struct emptcp_run *r)
{
	const volatile struct emptcp_set_mark *m = (const volatile void *)r->st->param;

	if (emptcp_param_tab(r).id != 0)
		return set_mark_stage(ctx, r);
	if (!emptcp_matched(r))
		return EMPTCP_CONTINUE;
	return set_mark_apply(ctx, r, m->value, m->mask);
}
#endif

EMPTCP_LICENSE("Dual BSD/GPL");
