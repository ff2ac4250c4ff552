// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * set_dscp - a third-party actor, built outside emptcp: writes DSCP
 * params[0] (0..63) into the IPv4 TOS / IPv6 traffic class of the selected
 * packets, keeping ECN bits, and fixes the IPv4 header checksum. Shows the
 * L3 side of the ctx.h shim; a subflow's packets can then be queued by DSCP
 * on the path.
 *
 * Build: clang -O2 -g -target bpf -DEMPTCP_TC -I include -I vmlinux/x86 \
 *              -c examples/set_dscp.bpf.c -o set_dscp.tc.o
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/* The actor's work on one packet: EMPTCP_CONTINUE or a verdict. */
static __always_inline int set_dscp_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	__u16 old, new;
	__u32 params[1], dscp;

	if (!emptcp_matched(r))
		return EMPTCP_CONTINUE;
	emptcp_param_copy(r, &params, sizeof(params));
	dscp = params[0];
	dscp &= 63;
	/* the first 16-bit word: v4 = version/ihl + tos, v6 = version/tc/flow */
	if (emptcp_ctx_load_bytes(ctx, r->p.l3_off, &old, 2) < 0) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return EMPTCP_CONTINUE;
	}
	if (r->p.flags & EMPTCP_PF_V6)
		/* traffic class spans bits 4..11 of the word: DSCP is its top 6 */
		new = bpf_htons((bpf_ntohs(old) & 0xf03f) | (dscp << 6));
	else
		new = bpf_htons((bpf_ntohs(old) & 0xff03) | (dscp << 2));
	if (new != old) {
		if (emptcp_ctx_store_bytes(ctx, r->p.l3_off, &new, 2) < 0) {
			emptcp_run_count(r, EMPTCP_CNT_ERROR);
			return EMPTCP_CONTINUE;
		}
		if (!(r->p.flags & EMPTCP_PF_V6) &&
		    emptcp_ctx_l3_csum_replace(ctx, r->p.l3_off + 10, old, new, 2) < 0) {
			emptcp_run_count(r, EMPTCP_CNT_ERROR);
			return EMPTCP_DROP;
		}
	}
	emptcp_run_count(r, EMPTCP_CNT_HIT);
	return EMPTCP_CONTINUE;
}

/* The program `set_dscp`, an actor reading one parameter (4 bytes). */
EMPTCP_ACTOR(set_dscp, set_dscp_stage, 4);

char LICENSE[] SEC("license") = "Dual BSD/GPL";
