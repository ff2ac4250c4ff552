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

/* The selector: port_stage() in a walk, the program `port` alone. */
EMPTCP_SELECTOR(port, port_hit, sizeof(struct emptcp_port));

EMPTCP_LICENSE("Dual BSD/GPL");

