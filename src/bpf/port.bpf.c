// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * port - selector: the TCP source and/or destination port.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

SEC(EMPTCP_SEC)
int port(emptcp_ctx *ctx)
{
	struct emptcp_port pt;
	struct emptcp_run r;
	struct tcphdr *th;
	int hit = 1;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	if (emptcp_select_decided(&r))
		return emptcp_next(ctx, &r);
	emptcp_param_copy(&r, &pt, sizeof(pt));
	th = emptcp_tcp(ctx, &r);
	if (!th) {
		emptcp_count(r.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_select(ctx, &r, 0);
	}
	if ((pt.flags & EMPTCP_PORT_HAS_SPORT) && th->source != pt.sport)
		hit = 0;
	if ((pt.flags & EMPTCP_PORT_HAS_DPORT) && th->dest != pt.dport)
		hit = 0;
	return emptcp_select(ctx, &r, hit);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
