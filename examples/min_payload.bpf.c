// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * min_payload - a third-party selector, built outside emptcp: picks TCP
 * segments carrying at least params[0] bytes of payload.
 *
 * Build (once per hook family):
 *   clang -O2 -g -target bpf -DEMPTCP_XDP -I include -I vmlinux/x86 \
 *         -c examples/min_payload.bpf.c -o min_payload.xdp.o
 * Use:
 *   [[chain.select]]
 *   kind    = "custom"
 *   object  = "min_payload.xdp.o"
 *   program = "min_payload"
 *   params  = [1000]
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/* The selector's result: 1 when the segment carries at least params[0] bytes. */
static __always_inline int min_payload_hit(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	struct tcphdr *th;
	__u32 params[1], min;
	int l4len, hlen;

	emptcp_param_copy(r, &params, sizeof(params));
	min = params[0];
	th = emptcp_tcp(ctx, r);
	if (!th) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return 0;
	}
	/* read the header before any helper call: packet pointers do not survive them */
	hlen = th->doff * 4;
	l4len = emptcp_l4_len(ctx, r);
	if (l4len < hlen) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return 0;
	}
	return l4len - hlen >= (int)min;
}

/* The program `min_payload`, a selector reading one parameter (4 bytes). */
EMPTCP_SELECTOR(min_payload, min_payload_hit, 4);

char LICENSE[] SEC("license") = "Dual BSD/GPL";
