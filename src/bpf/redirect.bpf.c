// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * redirect - actor, terminal for the selected packets: send them out of
 * another device of the same network namespace.
 * XDP: bpf_redirect() to the device's transmit path, frame unchanged (the
 * target needs XDP support, e.g. veth with an XDP program or GRO on its
 * peer): for L2 paths such as bridges and hypervisors.
 * TC: bpf_redirect_neigh() fills in the Ethernet addresses from the
 * neighbour table: of the next hop `via` when given, else of the route the
 * kernel finds for the destination out of that device (for IPv6 the best
 * route must use the device: a worse-metric route through it is not
 * taken). Ingress flag: into the device's receive path instead, MAC
 * unchanged. The device may come from a map keyed by the packet
 * (`dev = { map = … }`, values are ifindexes); a packet whose key is not
 * in it goes on.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>
#include <emptcp/tables.h>

#define EMPTCP_BPF_F_INGRESS	1
#define EMPTCP_AF_INET		2
#define EMPTCP_AF_INET6		10

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_HEAVY_STAGE int redirect_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct emptcp_redirect rd;
	__u64 v;
	int lit;

	if (!emptcp_matched(r))
		return EMPTCP_CONTINUE;
	emptcp_param_copy(r, &rd, sizeof(rd));
	lit = emptcp_param_from_tab(ctx, r, &v);
	if (lit < 0)
		return EMPTCP_CONTINUE;
	if (lit == 0)
		rd.ifindex = (__u32)v;
	emptcp_run_count(r, EMPTCP_CNT_HIT);
#ifdef EMPTCP_TC
	if (rd.flags & EMPTCP_RD_INGRESS)
		return bpf_redirect(rd.ifindex, EMPTCP_BPF_F_INGRESS);
	if (rd.flags & (EMPTCP_RD_VIA4 | EMPTCP_RD_VIA6)) {
		struct bpf_redir_neigh nh = {};

		if (rd.flags & EMPTCP_RD_VIA6) {
			nh.nh_family = EMPTCP_AF_INET6;
			__builtin_memcpy(nh.ipv6_nh, rd.via, 16);
		} else {
			nh.nh_family = EMPTCP_AF_INET;
			__builtin_memcpy(&nh.ipv4_nh, rd.via, 4);
		}
		return bpf_redirect_neigh(rd.ifindex, &nh, sizeof(nh), 0);
	}
	return bpf_redirect_neigh(rd.ifindex, NULL, 0, 0);
#else
	return bpf_redirect(rd.ifindex, 0);
#endif
}

EMPTCP_ACTOR(redirect, redirect_stage, sizeof(struct emptcp_redirect));

EMPTCP_LICENSE("Dual BSD/GPL");
