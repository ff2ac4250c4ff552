// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * baseline - an empty program (XDP_PASS / TC_ACT_UNSPEC) timed beside the
 * chains in the cost benchmarks: figures are reported over it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <emptcp/csum.h>
#include <emptcp/ctx.h>

SEC(EMPTCP_SEC)
int emptcp_baseline(emptcp_ctx *ctx)
{
	return EMPTCP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
