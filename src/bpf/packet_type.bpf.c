// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * packet_type - selector: the packet is one of the configured kinds (MPTCP
 * option subtypes refined by TCP flags and payload, or plain TCP kinds).
 * The option walk runs once per packet; later stages reuse its summary.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/* The selector's result: 1 when the packet is one of the configured kinds. */
static __always_inline int packet_type_hit(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct emptcp_packet_type pt;
	__u32 types;

	emptcp_param_copy(r, &pt, sizeof(pt));
	if (emptcp_ptypes(ctx, r, &types) < 0) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return 0;
	}
	return !!(types & pt.mask);
}

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_HEAVY_STAGE int packet_type_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	if (!emptcp_select_decided(r))
		emptcp_select_combine(r, packet_type_hit(ctx, r));
	return EMPTCP_CONTINUE;
}

#ifndef EMPTCP_WALK
SEC(EMPTCP_SEC)
int packet_type(emptcp_ctx *ctx)
{
	struct emptcp_run r;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	return emptcp_stage_exit(ctx, &r, packet_type_stage(ctx, &r));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
