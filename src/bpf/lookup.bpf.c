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

/* The selector's result: 1 when the packet's key is in the set. */
static __always_inline int lookup_hit(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	struct emptcp_tab_ref ref;
	__u64 v;
	int found;

	ref.id = r->st->param[0];
	ref.layout = r->st->param[1];
	ref.keyof = r->st->param[2];
	ref.flags = r->st->param[3];
	found = emptcp_tab_lookup(ctx, r, ref, &v);
	if (found < 0)
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
	return found > 0;
}

/* The selector: lookup_stage() in a walk, the program `lookup` alone. */
EMPTCP_SELECTOR(lookup, lookup_hit, 4);

EMPTCP_LICENSE("Dual BSD/GPL");

