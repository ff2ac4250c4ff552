// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * blk_subflow - actor: keep the peer from opening new subflows.
 *
 * mode add_addr: every ADD_ADDR announcement (not the echo) of a selected
 * packet is taken out and kept, byte for byte, in emptcp_g_kept (per
 * connection: the packet's 4-tuple, announcing end first), where
 * add_subflow finds it. The packet keeps its length:
 *  - if it also carries a DSS, the ADD_ADDR becomes NOPs;
 *  - otherwise (Linux sends ADD_ADDR on a pure ACK *instead* of the DSS,
 *    and it is often the server's first segment after the handshake) it
 *    becomes a DSS with only a 64-bit data ACK, padded with NOPs. NOPs
 *    alone would make the receiver see an MPTCP-less first segment and
 *    fall back to TCP (net/mptcp/options.c check_fully_established); a
 *    DSS data ACK is what makes it fully established instead. The ACK
 *    value (EMPTCP_BLK_DACK) is one the receiver ignores: ack_update_msk
 *    only moves snd_una for a value in (snd_una, snd_nxt], a window of
 *    the bytes in flight in a 2^64 space that starts at a random IDSN.
 * mode join: MP_JOIN SYNs are dropped (counted as hits).
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/* Data ACK of the replacement DSS (see above). */
#ifndef EMPTCP_BLK_DACK
#define EMPTCP_BLK_DACK 0ULL
#endif

const volatile struct emptcp_blk_subflow emptcp_blk_subflow_abi SEC(".rodata.abi") = {};
const volatile struct emptcp_kept emptcp_kept_abi SEC(".rodata.abi") = {};

#include "kept.h"

/* Per-CPU scratch: the option kept and its replacement (the stack is full). */
struct blk_scratch {
	struct emptcp_kept kept;
	__u8 repl[EMPTCP_KEPT_MAX];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct blk_scratch);
} blk_scratch SEC(".maps");

/*
 * Replace the @len option bytes at @opt_off with @repl (length kept) and
 * fix the TCP checksum with one bpf_csum_diff() over the option area.
 */
static __always_inline int tcpopt_replace(emptcp_ctx *ctx, __u32 l4_off,
					  struct emptcp_tcpopt_walk *w,
					  __u32 opt_off, __u32 len, const __u8 *repl)
{
	__u64 old[EMPTCP_TCP_MAX_OPT_LEN / 8];
	__u32 area = w->len;
	__s64 diff;

	if (area == 0 || area > EMPTCP_TCP_MAX_OPT_LEN || (area & 3))
		return EMPTCP_EINVAL;
	if (opt_off + len > area || len == 0 || len > EMPTCP_KEPT_MAX)
		return EMPTCP_EINVAL;
	__builtin_memcpy(old, w->b, sizeof(old));
	/* in place in the walk buffer: indexes masked to it */
	for (int i = 0; i < EMPTCP_KEPT_MAX; i++) {
		if ((__u32)i >= len)
			break;
		w->b[(opt_off + i) & EMPTCP_TCPOPT_BUF_MASK] = repl[i];
	}
	/*
	 * Verifier (tcpopt.h): Linux 6.1 lost the check above once the stage
	 * kept its counters' pointer (one more live value, area spilled).
	 */
	EMPTCP_TCPOPT_CLAMP(area, 1, EMPTCP_TCP_MAX_OPT_LEN);
	diff = bpf_csum_diff((__be32 *)old, area, (__be32 *)w->b, area, 0);
	if (diff < 0)
		return EMPTCP_EINVAL;
	EMPTCP_TCPOPT_CLAMP(area, 1, EMPTCP_TCP_MAX_OPT_LEN);	/* Verifier: see tcpopt.h */
	if (emptcp_ctx_store_bytes(ctx, l4_off + 20, w->b, area) < 0)
		return EMPTCP_EINVAL;
	if (emptcp_ctx_l4_csum_replace(ctx, l4_off + 16, 0, (__u32)diff, 0) < 0)
		return EMPTCP_EINVAL;
	return 0;
}

static __always_inline int valid_announce_len(__u32 len)
{
	return len == EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4 ||
	       len == EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4_PORT ||
	       len == EMPTCP_TCPOLEN_MPTCP_ADD_ADDR6 ||
	       len == EMPTCP_TCPOLEN_MPTCP_ADD_ADDR6_PORT;
}

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_HEAVY_STAGE int blk_subflow_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct emptcp_kept *old;
	struct blk_scratch *sc;
	__u32 zero = 0;
	struct emptcp_blk_subflow bs;
	struct emptcp_flow_key k EMPTCP_ALIGN8;
	struct emptcp_tcpopt_walk w;
	struct tcphdr *th;
	__u64 dack = EMPTCP_BLK_DACK;
	__u32 hlen, len;
	__u8 fl;
	int off, ret;

	if (!emptcp_matched(r))
		return EMPTCP_CONTINUE;
	emptcp_param_copy(r, &bs, sizeof(bs));
	/* an ADD_ADDR add_subflow has just put back stays */
	if (r->p.flags & EMPTCP_PF_PM)
		return EMPTCP_CONTINUE;
	/*
	 * A summary left by an earlier stage saves the walk. Not computed
	 * here: with it inlined, Linux 6.1's verifier loses the bound of the
	 * option copy below ("unbounded memory access").
	 */
	if ((r->p.flags & EMPTCP_PF_OPTS) &&
	    !(r->p.mptcp & (1U << (bs.mode == EMPTCP_BLK_JOIN ? EMPTCP_PT_MP_JOIN_SYN
							     : EMPTCP_PT_ADD_ADDR))))
		return EMPTCP_CONTINUE;
	th = emptcp_tcp(ctx, r);
	if (!th) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return EMPTCP_CONTINUE;
	}
	hlen = th->doff * 4;
	fl = ((__u8 *)th)[13];
	/* the IP length must cover the TCP header it rewrites (checksum range) */
	if (emptcp_l4_len(ctx, r) < (int)hlen) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return EMPTCP_CONTINUE;
	}
	if (emptcp_opts_load(ctx, r, &w, hlen) < 0) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return EMPTCP_CONTINUE;
	}
	if (bs.mode == EMPTCP_BLK_JOIN) {
		/* MP_JOIN on a SYN without ACK: a peer opening a subflow */
		if ((fl & (EMPTCP_TCP_SYN | EMPTCP_TCP_ACK)) != EMPTCP_TCP_SYN ||
		    !(w.mptcp & (1U << EMPTCP_MPTCPOPT_MP_JOIN)))
			return EMPTCP_CONTINUE;
		emptcp_run_count(r, EMPTCP_CNT_HIT);
		return EMPTCP_DROP;
	}
	off = emptcp_tcpopt_mptcp_off(&w, EMPTCP_MPTCPOPT_ADD_ADDR);
	if (off < 0 || off >= EMPTCP_TCP_MAX_OPT_LEN)
		return EMPTCP_CONTINUE;
	len = emptcp_tcpopt_byte(&w, off + 1);
	if (!valid_announce_len(len)) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return EMPTCP_CONTINUE;
	}
	if (emptcp_tuple(ctx, r, k.saddr, k.daddr, &k.sport, &k.dport) < 0) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return EMPTCP_CONTINUE;
	}
	k.slot = 0;
	k.pad = 0;
	sc = bpf_map_lookup_elem(&blk_scratch, &zero);
	if (!sc) {
		emptcp_run_count(r, EMPTCP_CNT_ERROR);
		return EMPTCP_CONTINUE;
	}

#pragma unroll
	for (int i = 0; i < EMPTCP_KEPT_MAX; i++) {
		sc->kept.opt[i] = (__u32)i < len ? emptcp_tcpopt_byte(&w, off + i) :
						   EMPTCP_TCPOPT_NOP_KIND;
		sc->repl[i] = EMPTCP_TCPOPT_NOP_KIND;
	}
	sc->kept.len = len;
	sc->kept.ts_ns = bpf_ktime_get_ns();

	if (!(w.mptcp & (1U << EMPTCP_MPTCPOPT_DSS))) {
		/* DSS, 64-bit data ACK only (len 12), then NOPs */
		sc->repl[0] = EMPTCP_TCPOPT_MPTCP_KIND;
		sc->repl[1] = 12;
		sc->repl[2] = EMPTCP_MPTCPOPT_DSS << 4;
		sc->repl[3] = EMPTCP_MPTCP_DSS_HAS_ACK | EMPTCP_MPTCP_DSS_ACK64;
#pragma unroll
		for (int i = 0; i < 8; i++)
			sc->repl[4 + i] = (__u8)(dack >> (56 - 8 * i));
	}
	ret = tcpopt_replace(ctx, r->p.l4_off, &w, off, len, sc->repl);
	if (ret < 0) {
		emptcp_run_count(r, EMPTCP_CNT_ERROR);
		return EMPTCP_CONTINUE;
	}
	old = bpf_map_lookup_elem(&emptcp_g_kept, &k);
	sc->kept.count = old ? old->count + 1 : 1;
	bpf_map_update_elem(&emptcp_g_kept, &k, &sc->kept, BPF_ANY);
	emptcp_run_count(r, EMPTCP_CNT_HIT);
	/* the option summary no longer describes the packet */
	r->p.flags &= ~EMPTCP_PF_OPTS;
	r->p.flags |= EMPTCP_PF_PM;
	return EMPTCP_CONTINUE;
}

EMPTCP_ACTOR(blk_subflow, blk_subflow_stage, sizeof(struct emptcp_blk_subflow));

EMPTCP_LICENSE("Dual BSD/GPL");
