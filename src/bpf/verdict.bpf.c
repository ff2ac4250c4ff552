// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * verdict - actors `pass` and `drop`: end the walk over the chains with a
 * terminal verdict for the selected packets (param[0]: 0 = pass, 1 = drop).
 * Unselected packets go on to the next stage.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/*
 * The stage's work on one packet: EMPTCP_CONTINUE or a verdict. Inlined in
 * a walk too (not EMPTCP_STAGE): a position that ends chains with pass or
 * drop makes no call.
 */
static __always_inline int verdict_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	__u64 p[1];

	if (!emptcp_matched(r))
		return EMPTCP_CONTINUE;
	emptcp_param_copy(r, p, sizeof(p));
	emptcp_run_count(r, EMPTCP_CNT_HIT);
	return (p[0] & 0xff) ? EMPTCP_DROP : EMPTCP_PASS;
}

EMPTCP_ACTOR(verdict, verdict_stage, 8);

EMPTCP_LICENSE("Dual BSD/GPL");
