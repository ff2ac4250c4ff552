// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ip_pair - selector: the packet's (source, destination) address pair equals
 * the configured one (either side may be "any"); with bidir, the reverse
 * pair matches too. IPv4 and IPv6.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/*
 * @a: the stage's address, read in place from its description (volatile:
 * see emptcp_stage_desc; no copy to the stack); @b: the packet's.
 */
static __always_inline int addr_eq(const volatile __u8 *a, const __u8 *b, int n)
{
	if (n == 4)
		return *(const volatile __u32 *)a == *(const __u32 *)b;
	return ((const volatile __u64 *)a)[0] == ((const __u64 *)b)[0] &&
	       ((const volatile __u64 *)a)[1] == ((const __u64 *)b)[1];
}

static __always_inline int pair_eq(const volatile struct emptcp_ip_pair *pp, __u8 flags,
				   const __u8 *s, const __u8 *d, int n)
{
	if ((flags & EMPTCP_IPP_SRC) && !addr_eq(pp->src, s, n))
		return 0;
	if ((flags & EMPTCP_IPP_DST) && !addr_eq(pp->dst, d, n))
		return 0;
	return 1;
}

/* The selector's result: 1 when the packet's address pair matches. */
static __always_inline int ip_pair_hit(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	const volatile struct emptcp_ip_pair *pp = (const volatile void *)r->st->param;
	const __u8 *s, *d;
	__u8 flags = pp->flags;
	__u32 off;
	int n, v6, hit;

	v6 = !!(r->p.flags & EMPTCP_PF_V6);
	if (v6 != !!(flags & EMPTCP_IPP_V6))
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
		s = (const __u8 *)&ip6->saddr;
		d = (const __u8 *)&ip6->daddr;
		n = 16;
	} else {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end) {
			emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
			return 0;
		}
		s = (const __u8 *)&ip->saddr;
		d = (const __u8 *)&ip->daddr;
		n = 4;
	}
	hit = pair_eq(pp, flags, s, d, n);
	if (!hit && (flags & EMPTCP_IPP_BIDIR))
		hit = pair_eq(pp, flags, d, s, n);
	return hit;
}

/* The selector: ip_pair_stage() in a walk, the program `ip_pair` alone. */
EMPTCP_SELECTOR(ip_pair, ip_pair_hit, sizeof(struct emptcp_ip_pair));

#ifdef EMPTCP_WALK
/*
 * The stage at one position of a walk (walk.bpf.c), inlined there so that
 * its flags are constants in the code of that position: the packet is
 * compared on the addresses the walk read once per packet (@a: source
 * then destination, 1 word each for IPv4, 4 for IPv6; NULL: not read,
 * which a walk with an ip_pair never leaves).
 */
static __always_inline int ip_pair_walk(emptcp_ctx *ctx, struct emptcp_run *r, const __u32 *a)
{
	const volatile struct emptcp_ip_pair *pp = (const volatile void *)r->st->param;
	__u8 flags = pp->flags;
	int hit = 0, w;

	if (!a)
		return ip_pair_stage(ctx, r);
	if (emptcp_select_decided(r))
		return EMPTCP_CONTINUE;
	if (!(r->p.flags & EMPTCP_PF_V6) == !(flags & EMPTCP_IPP_V6)) {
		w = (flags & EMPTCP_IPP_V6) ? 4 : 1;
		hit = pair_eq(pp, flags, (const __u8 *)a, (const __u8 *)(a + w), 4 * w);
		if (!hit && (flags & EMPTCP_IPP_BIDIR))
			hit = pair_eq(pp, flags, (const __u8 *)(a + w), (const __u8 *)a, 4 * w);
	}
	emptcp_select_combine(r, hit);
	return EMPTCP_CONTINUE;
}
#endif

EMPTCP_LICENSE("Dual BSD/GPL");

