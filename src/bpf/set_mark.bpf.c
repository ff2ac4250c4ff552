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
 * The stage at one position of a walk (walk.bpf.c), inlined there: a
 * literal mark (a constant of that position: the other branch is pruned)
 * read in place from its description; a mark from a map as the walk's
 * inline lookup found it (@found and the value in @s, walk_tab_inline()),
 * or by set_mark_stage() when that does not tell or did not run
 * (EMPTCP_TAB_MORE).
 */
static __always_inline int set_mark_walk(emptcp_ctx *ctx, struct emptcp_run *r,
					 const struct emptcp_tab_scratch *s, int found)
{
	const volatile struct emptcp_set_mark *m = (const volatile void *)r->st->param;
	struct emptcp_tab_ref ref = emptcp_param_tab(r);

	/* XDP has no mark: the stage counts a skip, no code here for it */
	if (ref.id != 0 && EMPTCP_IS_XDP)
		return set_mark_stage(ctx, r);
	if (!emptcp_matched(r))
		return EMPTCP_CONTINUE;
	if (ref.id == 0)
		return set_mark_apply(ctx, r, m->value, m->mask);
	if (found == EMPTCP_TAB_MORE)
		return set_mark_stage(ctx, r);
	if (found == EMPTCP_TAB_NOT) {
		emptcp_run_count(r, EMPTCP_CNT_NO_KEY);
		return EMPTCP_CONTINUE;
	}
	return set_mark_apply(ctx, r, s->val, m->mask);
}
#endif

EMPTCP_LICENSE("Dual BSD/GPL");
