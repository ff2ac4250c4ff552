// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * packet_type - selector: the packet is one of the configured kinds (MPTCP
 * option subtypes refined by TCP flags and payload, or plain TCP kinds).
 * The option walk runs once per packet; later stages reuse its summary.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

SEC(EMPTCP_SEC)
int packet_type(emptcp_ctx *ctx)
{
	struct emptcp_packet_type pt;
	struct emptcp_run r;
	__u32 types;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	if (emptcp_select_decided(&r))
		return emptcp_next(ctx, &r);
	emptcp_param_copy(&r, &pt, sizeof(pt));
	if (emptcp_ptypes(ctx, &r, &types) < 0) {
		emptcp_count(r.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_select(ctx, &r, 0);
	}
	return emptcp_select(ctx, &r, types & pt.mask);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
