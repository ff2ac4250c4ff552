// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * observe - actors `get_connect` and `get_subflow` (param[0] = 1 / 2):
 * parse MP_CAPABLE / MP_JOIN of the selected packets and send what they
 * carry (keys; token, nonce, address id, backup bit) with the 4-tuple to the
 * ring buffer emptcp_g_events. Read-only: the packet is never changed. A
 * full ring buffer drops the event (counted as an error), never the packet.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/* Events of every chain, both hooks: read by `emptcp events`. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} emptcp_g_events SEC(".maps");

static __always_inline int emit(emptcp_ctx *ctx, struct emptcp_run *r, struct tcpopt_walk *w,
				__u8 tcp_flags, int what)
{
	struct emptcp_event *e;
	struct mptcp_mpc mpc;
	struct mptcp_mpj mpj;

	if (what == EMPTCP_EV_CONNECT) {
		if (mptcp_parse_mpc(w, &mpc) < 0 || !mpc.has_skey)
			return 0;	/* a SYN carries no key yet */
	} else {
		if (mptcp_parse_mpj(w, &mpj) < 0)
			return 0;
	}
	e = bpf_ringbuf_reserve(&emptcp_g_events, sizeof(*e), 0);
	if (!e)
		return -1;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = what;
	e->slot = r->slot;
#ifdef EMPTCP_XDP
	e->ifindex = EMPTCP_CTX_LD32(ctx, 12);	/* xdp_md.ingress_ifindex */
	e->flags = EMPTCP_EVF_XDP;
#else
	e->ifindex = EMPTCP_CTX_LD32(ctx, 40);	/* __sk_buff.ifindex */
#endif
	if (emptcp_tuple(ctx, r, e->saddr, e->daddr, &e->sport, &e->dport) == 16)
		e->flags |= EMPTCP_EVF_V6;
	e->tcp_flags = tcp_flags;
	if (what == EMPTCP_EV_CONNECT) {
		e->opt_len = mpc.len;
		e->version = mpc.version;
		e->mpc_flags = mpc.flags;
		e->skey = mpc.skey;
		e->rkey = mpc.rkey;
		e->flags |= EMPTCP_EVF_SKEY | (mpc.has_rkey ? EMPTCP_EVF_RKEY : 0);
	} else {
		e->opt_len = mpj.len;
		e->backup = mpj.backup;
		e->addr_id = mpj.addr_id;
		e->token = mpj.token;
		e->nonce = mpj.nonce;
	}
	bpf_ringbuf_submit(e, 0);
	return 1;
}

/*
 * The work of get_connect/get_subflow on a selected packet.
 * Returns the counter to bump (EMPTCP_CNT_*).
 */
static __always_inline int observe_act(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct tcpopt_walk w;
	struct tcphdr *th;
	__u64 p[1];
	__u32 hlen;
	__u8 fl;
	int what, ret;

	emptcp_param_copy(r, p, sizeof(p));
	what = (p[0] & 0xff) == EMPTCP_EV_SUBFLOW ? EMPTCP_EV_SUBFLOW : EMPTCP_EV_CONNECT;
	th = emptcp_tcp(ctx, r);
	if (!th)
		return EMPTCP_CNT_PARSE_ERR;
	/* header fields first: packet pointers do not survive helper calls */
	hlen = th->doff * 4;
	fl = ((__u8 *)th)[13];
	if (hlen <= 20)
		return EMPTCP_CNT_SKIP;
	/*
	 * The per-packet option summary first: a segment without the option
	 * (every data segment) is skipped without copying its options. (No
	 * summary, e.g. an IP length shorter than the TCP header: decide on
	 * the options alone, below.)
	 */
	if (emptcp_opts(ctx, r) == 0 &&
	    !(r->p.subtypes & (1U << (what == EMPTCP_EV_SUBFLOW ? MPTCPOPT_MP_JOIN
								 : MPTCPOPT_MP_CAPABLE))))
		return EMPTCP_CNT_SKIP;
	if (emptcp_opts_load(ctx, r, &w, hlen) < 0)
		return EMPTCP_CNT_PARSE_ERR;
	ret = emit(ctx, r, &w, fl, what);
	return ret > 0 ? EMPTCP_CNT_HIT : ret < 0 ? EMPTCP_CNT_ERROR : EMPTCP_CNT_SKIP;
}

SEC(EMPTCP_SEC)
int observe(emptcp_ctx *ctx)
{
	struct emptcp_run r;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	/* one exit to the next stage, whatever the outcome (chain.h) */
	if (emptcp_matched(&r))
		emptcp_count(r.slot, observe_act(ctx, &r));
	return emptcp_next(ctx, &r);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
