// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * redirect - actor, terminal for the selected packets: send them out of
 * another device of the same network namespace. XDP: bpf_redirect() to the
 * device's transmit path (the target needs XDP support, e.g. veth with an
 * XDP program or GRO on its peer). TC: bpf_redirect_neigh() fills in the
 * Ethernet addresses from the neighbour table (ingress flag: into the
 * device's receive path instead, MAC unchanged).
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

#define EMPTCP_BPF_F_INGRESS 1

SEC(EMPTCP_SEC)
int redirect(emptcp_ctx *ctx)
{
	struct emptcp_redirect rd;
	struct emptcp_run r;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	if (!emptcp_matched(&r))
		return emptcp_next(ctx, &r);
	emptcp_param_copy(&r, &rd, sizeof(rd));
	emptcp_count(r.slot, EMPTCP_CNT_HIT);
#ifdef EMPTCP_TC
	if (rd.flags & EMPTCP_RD_INGRESS)
		return bpf_redirect(rd.ifindex, EMPTCP_BPF_F_INGRESS);
	return bpf_redirect_neigh(rd.ifindex, NULL, 0, 0);
#else
	return bpf_redirect(rd.ifindex, 0);
#endif
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
