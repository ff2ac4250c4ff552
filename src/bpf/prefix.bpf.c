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

EMPTCP_LICENSE("Dual BSD/GPL");

