// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * redirect - actor, terminal for the selected packets: send them out of
 * another device of the same network namespace.
 * XDP: bpf_redirect() to the device's transmit path, frame unchanged (the
 * target needs XDP support, e.g. veth with an XDP program or GRO on its
 * peer): for L2 paths such as bridges and hypervisors. An XDP frame has
 * no socket.
 * TC: the Ethernet addresses become those of the next hop: `via` when
 * given, else of the route the kernel finds for the destination out of
 * that device (for IPv6 the best route must use the device: a worse-metric
 * route through it is not taken). TTL/hop limit, mark, priority and the
 * sender's delivery time (tstamp) are kept, as forwarding keeps them.
 * A packet received with a local socket still attached (a VM's or a
 * container's TCP socket, through veth, at tc-ingress) is sent as a clone
 * and the original freed here: that frees it from the socket, as
 * forwarding's ip_rcv() does with skb_orphan(). Left attached, it keeps
 * the sender's TCP Small Queues budget (about 1 ms of its pacing rate)
 * until it leaves the target's qdisc, so a subflow sharing that queue
 * with another flow is starved (README, use case 1). The original is
 * freed with the drop verdict: tcx turns TC_ACT_STOLEN into "next", and
 * the packet would be forwarded as well (drop monitors count it, reason
 * TC_INGRESS). The clone needs the next hop's MAC from bpf_fib_lookup
 * (neighbour known, untagged frame, route out of the device); otherwise
 * bpf_redirect_neigh() sends the packet as it is. A local host's own
 * packets (tc-egress, not received) keep their socket and its TSQ.
 * Ingress flag: into the device's receive path instead, MAC unchanged.
 * The device may come from a map keyed by the packet (`dev = { map = … }`,
 * values are ifindexes); a packet whose key is not in it goes on.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>
#include <emptcp/tables.h>

#define EMPTCP_BPF_F_INGRESS	1
#define EMPTCP_AF_INET		2
#define EMPTCP_AF_INET6		10
#define EMPTCP_ETH_HLEN		14
#define EMPTCP_OFF_INGRESS_IFINDEX	36	/* struct __sk_buff .ingress_ifindex */
#define EMPTCP_OFF_SK		168	/* struct __sk_buff .sk */

#ifdef EMPTCP_TC
/*
 * Whether the packet was received (skb_iif) and still belongs to a local
 * socket (skb->sk): a VM's or container's packet at tc-ingress.
 */
static __always_inline int redirect_owned(emptcp_ctx *ctx)
{
	__u64 sk;

	if (!EMPTCP_CTX_LD32(ctx, EMPTCP_OFF_INGRESS_IFINDEX))
		return 0;
	asm volatile("%0 = *(u64 *)(%1 + %2)" : "=r"(sk) : "r"(ctx), "i"(EMPTCP_OFF_SK));
	return sk != 0;
}

/*
 * Sends a clone of the packet out of rd->ifindex with the next hop's
 * Ethernet addresses and frees the original, which releases the sending
 * socket's hold on it. Returns the verdict, or EMPTCP_CONTINUE when the
 * next hop's MAC is not known here (the caller then redirects as is).
 */
static __always_inline int redirect_orphaned(emptcp_ctx *ctx, const struct emptcp_run *r,
					     const struct emptcp_redirect *rd)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	struct bpf_fib_lookup fib = {};
	__u32 off = r->p.l3_off;
	__u8 macs[12];

	if (off != EMPTCP_ETH_HLEN)
		return EMPTCP_CONTINUE;
	fib.ifindex = rd->ifindex;
	if (r->p.flags & EMPTCP_PF_V6) {
		struct ipv6hdr *ip6 = data + EMPTCP_ETH_HLEN;

		if ((void *)(ip6 + 1) > data_end)
			return EMPTCP_CONTINUE;
		fib.family = EMPTCP_AF_INET6;
		__builtin_memcpy(fib.ipv6_src, &ip6->saddr, 16);
		if (rd->flags & EMPTCP_RD_VIA6)
			__builtin_memcpy(fib.ipv6_dst, rd->via, 16);
		else
			__builtin_memcpy(fib.ipv6_dst, &ip6->daddr, 16);
	} else {
		struct iphdr *ip = data + EMPTCP_ETH_HLEN;

		if ((void *)(ip + 1) > data_end)
			return EMPTCP_CONTINUE;
		fib.family = EMPTCP_AF_INET;
		fib.ipv4_src = ip->saddr;
		if (rd->flags & EMPTCP_RD_VIA4)
			__builtin_memcpy(&fib.ipv4_dst, rd->via, 4);
		else
			fib.ipv4_dst = ip->daddr;
	}
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT) != BPF_FIB_LKUP_RET_SUCCESS ||
	    fib.ifindex != rd->ifindex)
		return EMPTCP_CONTINUE;
	/*
	 * A helper, not a direct write: a direct write anywhere in the
	 * program makes the verifier unclone every packet at entry.
	 */
	__builtin_memcpy(macs, fib.dmac, 6);
	__builtin_memcpy(macs + 6, fib.smac, 6);
	if (emptcp_ctx_store_bytes(ctx, 0, macs, sizeof(macs)) < 0 ||
	    bpf_clone_redirect(ctx, rd->ifindex, 0) < 0)
		return EMPTCP_CONTINUE;
	return EMPTCP_DROP;
}
#endif

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
	if (redirect_owned(ctx)) {
		int ret = redirect_orphaned(ctx, r, &rd);

		if (ret != EMPTCP_CONTINUE)
			return ret;
	}
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
