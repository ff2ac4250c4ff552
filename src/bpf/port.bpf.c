// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * port - selector: the TCP source and/or destination port.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/* The selector's result: 1 when the configured ports match. */
static __always_inline int port_hit(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	struct emptcp_port pt;
	struct tcphdr *th;

	emptcp_param_copy(r, &pt, sizeof(pt));
	th = emptcp_tcp(ctx, r);
	if (!th) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return 0;
	}
	if ((pt.flags & EMPTCP_PORT_HAS_SPORT) && th->source != pt.sport)
		return 0;
	if ((pt.flags & EMPTCP_PORT_HAS_DPORT) && th->dest != pt.dport)
		return 0;
	return 1;
}

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_STAGE int port_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	if (!emptcp_select_decided(r))
		emptcp_select_combine(r, port_hit(ctx, r));
	return EMPTCP_CONTINUE;
}

#ifndef EMPTCP_WALK
SEC(EMPTCP_SEC)
int port(emptcp_ctx *ctx)
{
	struct emptcp_run r;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	return emptcp_stage_exit(ctx, &r, port_stage(ctx, &r));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
