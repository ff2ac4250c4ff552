// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * prefix - selectors `src` and `dst`: the source (or destination) address
 * lies in an address prefix (a plain address is a /32 or /128).
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/* The selector's result: 1 when the address lies in the prefix. */
static __always_inline int prefix_hit(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	struct emptcp_prefix pf;
	__u8 s[16] EMPTCP_ALIGN8, d[16] EMPTCP_ALIGN8;
	const __u64 *a, *m, *want;
	__u16 sp, dp;
	int n;

	emptcp_param_copy(r, &pf, sizeof(pf));
	n = emptcp_tuple(ctx, r, s, d, &sp, &dp);
	if (n < 0) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return 0;
	}
	if ((n == 16) != !!(pf.flags & EMPTCP_PFX_V6))
		return 0;
	a = (const __u64 *)((pf.flags & EMPTCP_PFX_DST) ? d : s);
	m = (const __u64 *)pf.mask;
	want = (const __u64 *)pf.addr;
	return (a[0] & m[0]) == want[0] && (a[1] & m[1]) == want[1];
}

/* The selector: prefix_stage() in a walk, the program `prefix` alone. */
EMPTCP_SELECTOR(prefix, prefix_hit, sizeof(struct emptcp_prefix));

#ifdef EMPTCP_WALK
/*
 * The stage at one position of a walk (walk.bpf.c), inlined there as
 * ip_pair_walk() is: an IPv4 prefix against the IPv4 addresses the walk
 * read once per packet (@a: source, destination; NULL: not read), its
 * address and mask read in place from its description (the first 4 bytes
 * of each for IPv4). An IPv6 packet or prefix goes through prefix_stage().
 */
static __always_inline int prefix_walk(emptcp_ctx *ctx, struct emptcp_run *r, const __u32 *a)
{
	const volatile struct emptcp_prefix *pf = (const volatile void *)r->st->param;
	__u8 flags = pf->flags;
	__u32 x;

	if (!a || (r->p.flags & EMPTCP_PF_V6) || (flags & EMPTCP_PFX_V6))
		return prefix_stage(ctx, r);
	if (emptcp_select_decided(r))
		return EMPTCP_CONTINUE;
	x = (flags & EMPTCP_PFX_DST) ? a[1] : a[0];
	emptcp_select_combine(r, (x & *(const volatile __u32 *)pf->mask) ==
				     *(const volatile __u32 *)pf->addr);
	return EMPTCP_CONTINUE;
}
#endif

EMPTCP_LICENSE("Dual BSD/GPL");

