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

#ifdef EMPTCP_WALK
/*
 * The stage at one position of a walk (walk.bpf.c), inlined there as
 * ip_pair_walk() is: the packet's ports (@ports: source, destination in
 * network order, read once per packet; NULL: not read) against the stage's, read
 * in place from its description, with no call and no header bounds check
 * per position.
 */
static __always_inline int port_walk(emptcp_ctx *ctx, struct emptcp_run *r, const __u16 *ports)
{
	const volatile struct emptcp_port *pt = (const volatile void *)r->st->param;
	__u8 flags = pt->flags;
	int hit = 1;

	if (!ports)
		return port_stage(ctx, r);
	if (emptcp_select_decided(r))
		return EMPTCP_CONTINUE;
	if ((flags & EMPTCP_PORT_HAS_SPORT) && ports[0] != pt->sport)
		hit = 0;
	if ((flags & EMPTCP_PORT_HAS_DPORT) && ports[1] != pt->dport)
		hit = 0;
	emptcp_select_combine(r, hit);
	return EMPTCP_CONTINUE;
}
#endif

EMPTCP_LICENSE("Dual BSD/GPL");

