// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lookup - selector: the packet's key (source or destination address or
 * prefix, address pair, 4-tuple, port) is in a named set (`src`, `dst`,
 * `ip_pair`, `subflow`, `port` with `set = "NAME"`). One probe of a slot
 * table, port array or trie whatever the set's size; the set changes at run time without
 * reloading the stage (emptcp/tables.h).
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>
#include <emptcp/tables.h>

/* The selector's table, from its parameters. */
static __always_inline struct emptcp_tab_ref lookup_ref(const struct emptcp_run *r)
{
	struct emptcp_tab_ref ref;

	ref.id = r->st->param[0];
	ref.layout = r->st->param[1];
	ref.keyof = r->st->param[2];
	ref.flags = r->st->param[3];
	return ref;
}

/* The selector's result: 1 when the packet's key is in the set. */
static __always_inline int lookup_hit(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	__u64 v;
	int found;

	found = emptcp_tab_lookup(ctx, r, lookup_ref(r), &v);
	if (found < 0)
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
	return found > 0;
}

/* The selector: lookup_stage() in a walk, the program `lookup` alone. */
EMPTCP_SELECTOR(lookup, lookup_hit, 4);

#ifdef EMPTCP_WALK
/*
 * The selector at a walk position, given what the walk's inline lookup
 * found (@found, walk.bpf.c walk_tab_inline(): the key's own slot only), and
 * a call of lookup_stage() only when that does not tell (the slot holds
 * another key, the reverse direction may hit, or the lookup did not run
 * inline: EMPTCP_TAB_MORE). A call and its return cost more than the
 * probe on a CPU that returns through a thunk (docs/design.md, "Tables").
 */
static __always_inline int lookup_walk(emptcp_ctx *ctx, struct emptcp_run *r, int found)
{
	if (emptcp_select_decided(r))
		return EMPTCP_CONTINUE;
	if (found == EMPTCP_TAB_MORE)
		return lookup_stage(ctx, r);
	emptcp_select_combine(r, found == EMPTCP_TAB_HIT);
	return EMPTCP_CONTINUE;
}
#endif

EMPTCP_LICENSE("Dual BSD/GPL");

