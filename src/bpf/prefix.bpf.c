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
 * Whether the packet's address in @a (the walk's: ip_pair_walk()) lies in
 * the prefix @pf, its address and mask read in place from its description
 * (the first word of each for IPv4).
 */
static __always_inline int prefix_in(const volatile struct emptcp_prefix *pf, __u8 flags,
				     const __u32 *a)
{
	const volatile __u32 *m = (const volatile void *)pf->mask;
	const volatile __u32 *want = (const volatile void *)pf->addr;

	if (!(flags & EMPTCP_PFX_V6))
		return (a[(flags & EMPTCP_PFX_DST) ? 1 : 0] & m[0]) == want[0];
	if (flags & EMPTCP_PFX_DST)
		a += 4;
	return (a[0] & m[0]) == want[0] && (a[1] & m[1]) == want[1] &&
	       (a[2] & m[2]) == want[2] && (a[3] & m[3]) == want[3];
}

/*
 * The stage at one position of a walk (walk.bpf.c), inlined there as
 * ip_pair_walk() is: the prefix against the addresses the walk read once
 * per packet (@a: as for ip_pair_walk()).
 */
static __always_inline int prefix_walk(emptcp_ctx *ctx, struct emptcp_run *r, const __u32 *a)
{
	const volatile struct emptcp_prefix *pf = (const volatile void *)r->st->param;
	__u8 flags = pf->flags;
	int hit = 0;

	if (!a)
		return prefix_stage(ctx, r);
	if (emptcp_select_decided(r))
		return EMPTCP_CONTINUE;
	if (!(r->p.flags & EMPTCP_PF_V6) == !(flags & EMPTCP_PFX_V6))
		hit = prefix_in(pf, flags, a);
	emptcp_select_combine(r, hit);
	return EMPTCP_CONTINUE;
}
#endif

EMPTCP_LICENSE("Dual BSD/GPL");

