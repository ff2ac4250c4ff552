// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * observe - actors `get_connect` and `get_subflow` (param[0] = 1 / 2):
 * parse MP_CAPABLE / MP_JOIN of the selected packets and send what they
 * carry (keys; token, nonce, address id, backup bit) with the 4-tuple to the
 * ring buffer of each `emptcp events` reader. Read-only: the packet is
 * never changed. A full ring buffer drops the event (counted as an error),
 * never the packet; with no reader no event is made (counted as a skip).
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/*
 * Events of every chain, both hooks, for `emptcp events`. A BPF ring buffer
 * has one consumer position, so two readers of one ring would each see part
 * of the stream: every reader owns a ring of its own instead (slot i: an
 * flock on the state directory's reader-i), and emptcp_g_readers[i] says
 * which rings have a reader now. An event goes to each of them; with no
 * reader it is not made.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} emptcp_g_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} emptcp_g_events1 SEC(".maps"), emptcp_g_events2 SEC(".maps"), emptcp_g_events3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMPTCP_EV_READERS);
	__type(key, __u32);
	__type(value, __u32);	/* the reader's pid; 0 = no reader */
} emptcp_g_readers SEC(".maps");

/* 1: sent, 0: no reader, -1: a reader's ring was full */
static __always_inline int publish_to(void *ring, __u32 slot, const struct emptcp_event *e)
{
	__u32 *pid = bpf_map_lookup_elem(&emptcp_g_readers, &slot);

	if (!pid || !*pid)
		return 0;
	return bpf_ringbuf_output(ring, (void *)e, sizeof(*e), 0) ? -1 : 1;
}

static __always_inline int publish(const struct emptcp_event *e)
{
	int r0 = publish_to(&emptcp_g_events, 0, e);
	int r1 = publish_to(&emptcp_g_events1, 1, e);
	int r2 = publish_to(&emptcp_g_events2, 2, e);
	int r3 = publish_to(&emptcp_g_events3, 3, e);

	if (r0 < 0 || r1 < 0 || r2 < 0 || r3 < 0)
		return -1;
	return r0 | r1 | r2 | r3;
}

static __always_inline int emit(emptcp_ctx *ctx, struct emptcp_run *r, struct emptcp_tcpopt_walk *w,
				__u8 tcp_flags, int what)
{
	struct emptcp_event ev, *e = &ev;
	struct emptcp_mptcp_mpc mpc;
	struct emptcp_mptcp_mpj mpj;

	if (what == EMPTCP_EV_CONNECT) {
		if (emptcp_mptcp_parse_mpc(w, &mpc) < 0 || !mpc.has_skey)
			return 0;	/* a SYN carries no key yet */
	} else {
		if (emptcp_mptcp_parse_mpj(w, &mpj) < 0)
			return 0;
	}
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
	return publish(e);
}

/*
 * The work of get_connect/get_subflow on a selected packet.
 * Returns the counter to bump (EMPTCP_CNT_*).
 */
static __always_inline int observe_act(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct emptcp_tcpopt_walk w;
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
	    !(r->p.subtypes & (1U << (what == EMPTCP_EV_SUBFLOW ? EMPTCP_MPTCPOPT_MP_JOIN
								 : EMPTCP_MPTCPOPT_MP_CAPABLE))))
		return EMPTCP_CNT_SKIP;
	if (emptcp_opts_load(ctx, r, &w, hlen) < 0)
		return EMPTCP_CNT_PARSE_ERR;
	ret = emit(ctx, r, &w, fl, what);
	return ret > 0 ? EMPTCP_CNT_HIT : ret < 0 ? EMPTCP_CNT_ERROR : EMPTCP_CNT_SKIP;
}

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_HEAVY_STAGE int observe_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	/* one exit to the next stage, whatever the outcome (step.h) */
	if (emptcp_matched(r))
		emptcp_run_count(r, observe_act(ctx, r));
	return EMPTCP_CONTINUE;
}

EMPTCP_ACTOR(observe, observe_stage, 8);

EMPTCP_LICENSE("Dual BSD/GPL");
