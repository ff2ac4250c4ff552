// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * subflow - selector: one TCP 4-tuple (absent fields match anything); with
 * bidir, the reverse direction too. IPv4 and IPv6.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

static __always_inline int sf_addr_eq(const __u8 *a, const __u8 *b)
{
	return ((const __u64 *)a)[0] == ((const __u64 *)b)[0] &&
	       ((const __u64 *)a)[1] == ((const __u64 *)b)[1];
}

static __always_inline int tuple_eq(const struct emptcp_subflow *f, const __u8 *s, const __u8 *d,
				    __u16 sp, __u16 dp)
{
	if ((f->flags & EMPTCP_SF_HAS_SADDR) && !sf_addr_eq(f->saddr, s))
		return 0;
	if ((f->flags & EMPTCP_SF_HAS_DADDR) && !sf_addr_eq(f->daddr, d))
		return 0;
	if ((f->flags & EMPTCP_SF_HAS_SPORT) && f->sport != sp)
		return 0;
	if ((f->flags & EMPTCP_SF_HAS_DPORT) && f->dport != dp)
		return 0;
	return 1;
}

/* The selector's result: 1 when the packet's 4-tuple matches. */
static __always_inline int subflow_hit(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	struct emptcp_subflow f;
	__u8 s[16] EMPTCP_ALIGN8, d[16] EMPTCP_ALIGN8;
	__u16 sp, dp;
	int n, hit;

	emptcp_param_copy(r, &f, sizeof(f));
	n = emptcp_tuple(ctx, r, s, d, &sp, &dp);
	if (n < 0) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return 0;
	}
	/* the family matters only when an address is configured */
	if ((f.flags & (EMPTCP_SF_HAS_SADDR | EMPTCP_SF_HAS_DADDR)) &&
	    (n == 16) != !!(f.flags & EMPTCP_SF_V6))
		return 0;
	hit = tuple_eq(&f, s, d, sp, dp);
	if (!hit && (f.flags & EMPTCP_SF_BIDIR))
		hit = tuple_eq(&f, d, s, dp, sp);
	return hit;
}

/* The selector: subflow_stage() in a walk, the program `subflow` alone. */
EMPTCP_SELECTOR(subflow, subflow_hit, sizeof(struct emptcp_subflow));

EMPTCP_LICENSE("Dual BSD/GPL");

