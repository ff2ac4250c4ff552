// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * port - selector: the TCP source and/or destination port.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/*
 * 1 when the packet's ports (network order) are the stage's: @pt read in
 * place from its description (volatile: see emptcp_stage_desc).
 */
static __always_inline int port_eq(const volatile struct emptcp_port *pt, __u16 sport,
				   __u16 dport)
{
	__u8 flags = pt->flags;

	if ((flags & EMPTCP_PORT_HAS_SPORT) && sport != pt->sport)
		return 0;
	if ((flags & EMPTCP_PORT_HAS_DPORT) && dport != pt->dport)
		return 0;
	return 1;
}

/* The selector's result: 1 when the configured ports match. */
static __always_inline int port_hit(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	struct tcphdr *th = emptcp_tcp(ctx, r);

	if (!th) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return 0;
	}
	return port_eq((const volatile void *)r->st->param, th->source, th->dest);
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
	if (!ports)	/* a walk with a port never leaves them unread */
		return port_stage(ctx, r);
	if (emptcp_select_decided(r))
		return EMPTCP_CONTINUE;
	emptcp_select_combine(r, port_eq((const volatile void *)r->st->param, ports[0], ports[1]));
	return EMPTCP_CONTINUE;
}
#endif

EMPTCP_LICENSE("Dual BSD/GPL");

