// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ip_pair - selector: the packet's (source, destination) address pair equals
 * the configured one (either side may be "any"); with bidir, the reverse
 * pair matches too. IPv4 and IPv6.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

static __always_inline int addr_eq(const __u8 *a, const __u8 *b, int n)
{
	if (n == 4)
		return *(const __u32 *)a == *(const __u32 *)b;
	return ((const __u64 *)a)[0] == ((const __u64 *)b)[0] &&
	       ((const __u64 *)a)[1] == ((const __u64 *)b)[1];
}

static __always_inline int pair_eq(const struct emptcp_ip_pair *pp, const __u8 *s,
				   const __u8 *d, int n)
{
	if ((pp->flags & EMPTCP_IPP_SRC) && !addr_eq(pp->src, s, n))
		return 0;
	if ((pp->flags & EMPTCP_IPP_DST) && !addr_eq(pp->dst, d, n))
		return 0;
	return 1;
}

/* The selector's result: 1 when the packet's address pair matches. */
static __always_inline int ip_pair_hit(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	struct emptcp_ip_pair pp;
	__u8 s[16], d[16];
	__u32 off;
	int n, v6, hit;

	emptcp_param_copy(r, &pp, sizeof(pp));
	v6 = !!(r->p.flags & EMPTCP_PF_V6);
	if (v6 != !!(pp.flags & EMPTCP_IPP_V6))
		return 0;
	/* variable offset, bounded for the verifier */
	off = r->p.l3_off;
	if (off > EMPTCP_MAX_L4_OFF)
		return 0;
	EMPTCP_OFF_BOUND(off);
	if (v6) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end) {
			emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
			return 0;
		}
		__builtin_memcpy(s, &ip6->saddr, 16);
		__builtin_memcpy(d, &ip6->daddr, 16);
		n = 16;
	} else {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end) {
			emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
			return 0;
		}
		__builtin_memcpy(s, &ip->saddr, 4);
		__builtin_memcpy(d, &ip->daddr, 4);
		n = 4;
	}
	hit = pair_eq(&pp, s, d, n);
	if (!hit && (pp.flags & EMPTCP_IPP_BIDIR))
		hit = pair_eq(&pp, d, s, n);
	return hit;
}

/* The selector: ip_pair_stage() in a walk, the program `ip_pair` alone. */
EMPTCP_SELECTOR(ip_pair, ip_pair_hit, sizeof(struct emptcp_ip_pair));

EMPTCP_LICENSE("Dual BSD/GPL");

