// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lookup - selector: the packet's key (source or destination address or
 * prefix, address pair, 4-tuple, port) is in a named set (`src`, `dst`,
 * `ip_pair`, `subflow`, `port` with `set = "NAME"`). One hash or trie
 * lookup whatever the set's size; the set changes at run time without
 * reloading the stage (emptcp/tables.h).
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>
#include <emptcp/tables.h>

/* The selector's result: 1 when the packet's key is in the set. */
static __always_inline int lookup_hit(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	struct emptcp_tab_ref ref;
	int err;

	ref.id = r->st->param[0];
	ref.layout = r->st->param[1];
	ref.keyof = r->st->param[2];
	ref.flags = r->st->param[3];
	if (emptcp_tab_lookup(ctx, r, ref, &err))
		return 1;
	if (err)
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
	return 0;
}

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_HEAVY_STAGE int lookup_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	if (!emptcp_select_decided(r))
		emptcp_select_combine(r, lookup_hit(ctx, r));
	return EMPTCP_CONTINUE;
}

#ifndef EMPTCP_WALK
SEC(EMPTCP_SEC)
int lookup(emptcp_ctx *ctx)
{
	struct emptcp_run r;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	return emptcp_stage_exit(ctx, &r, lookup_stage(ctx, &r));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
