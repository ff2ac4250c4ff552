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

/* The selector: packet_type_stage() in a walk, the program `packet_type` alone. */
EMPTCP_SELECTOR(packet_type, packet_type_hit, sizeof(struct emptcp_packet_type));

EMPTCP_LICENSE("Dual BSD/GPL");

