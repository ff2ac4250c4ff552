// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * rate_limit - actor: hold a subflow's data to a rate, per direction.
 *
 * A budget per subflow and direction of data (a GCRA: "paid up until"
 * time tat; new bytes cost bytes / rate; at most a burst ahead), kept in
 * one map for every stage, XDP and TC, so that chains on the two
 * directions of a subflow (or on two hooks) share it. A packet can carry
 * both things the stage acts on:
 *
 *  - data (payload): new bytes that would overdraw the budget are dropped,
 *    as a receiver drops data beyond the window it announced; bytes already
 *    passed (retransmissions) go through. This is what holds a Linux MPTCP
 *    sender: pushing new data onto a subflow raises the subflow's send
 *    window to the connection-level one, which the other subflows' ACKs
 *    keep open (MPTcpExtSndWndShared), so it does send past a subflow's
 *    window. The drops put that subflow into loss recovery; the sender's
 *    scheduler then moves the rest of the data to the other subflows.
 *  - an ACK (for the other direction's data): the window announces at most
 *    what is in flight plus the credit left, in the unit the ACK sender
 *    chose in its SYN / SYN-ACK (window scale, RFC 7323; recorded from the
 *    handshake: no handshake seen, no clamp). Never raises a window. A
 *    sender that keeps to the window (plain TCP) then loses nothing.
 *    Bytes acknowledged that no stage saw pass (a chain on the ACKs alone)
 *    are charged when acknowledged, a debt of at most half a burst.
 *
 * Where: on the data (the receiver's XDP / tc-ingress, the sender's
 * tc-egress, a middle node) and, for the window, on the ACKs (the
 * receiver's tc-egress, ...); selectors pick the subflow. A chain on the
 * ACKs alone cannot hold a Linux MPTCP sender (it overshoots several
 * times on a fast path); one on the data alone can, with losses.
 *
 * The window field changes in place: one incremental checksum update
 * (bpf_l4_csum_replace on TC, so CHECKSUM_PARTIAL skbs stay right).
 * RST frees the subflow's state; otherwise a new subflow of its set takes
 * it over in time (flowtab.h).
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>
#include <emptcp/tables.h>
#include "flowtab.h"

/* Per-subflow budget, both directions (abi.h struct emptcp_rl_flow). */
struct emptcp_rl_slot {
	struct emptcp_flow_key key;
	struct emptcp_rl_flow st;
};
FLOWTAB(emptcp_g_rl_flows, struct emptcp_rl_slot);

#define NSEC		1000000000ULL

/*
 * A budget whose burst lasts at least this long reads the clock as of the
 * last tick (clock.h: at most 1/HZ behind, 4 ms at HZ=250; ~30 ns cheaper
 * per packet): what the stage lets through stays exact over time (every
 * byte is charged to tat), a burst starts up to a tick's worth of bytes
 * early or late, at most 1/16 of it. The default burst (one second of the
 * rate) and a rate from a map (burst one second) always do; a shorter
 * burst reads the exact clock. Two stages on one subflow that read
 * different clocks disagree by at most a tick.
 */
#define EMPTCP_RL_COARSE_NS	(64ULL * 1000 * 1000)

/* Nanoseconds that @bytes take at the rate. */
static __always_inline __u64 rl_ns(const struct emptcp_rate_limit *rl, __u64 bytes)
{
	return bytes * NSEC / rl->rate_Bps;
}

/*
 * The budget of the subflow @key, or a fresh one when @create (the first
 * state of a new slot: no direction started, no window shift known).
 */
static __always_inline struct emptcp_rl_flow *rl_flow(const struct emptcp_flow_key *key,
						      int create, int fresh_anyway)
{
	struct emptcp_rl_slot *s;
	int fresh;

	s = flowtab_find(&emptcp_g_rl_flows, key, create, &fresh);
	if (!s)
		return NULL;
	if (fresh || fresh_anyway)
		flowtab_claim(&s->key, key, sizeof(s->st));
	return &s->st;
}

/* Start the budget of data direction @d at @base with a full burst of credit. */
static __always_inline void rl_start(struct emptcp_rl_flow *st, int d, __u32 base, __u64 now)
{
	d &= 1;
	st->hi[d] = base;
	st->tat_ns[d] = now;
	st->flags[d] |= EMPTCP_RL_EDGE;
}

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_HEAVY_STAGE int rate_limit_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct emptcp_rate_limit rl;
	struct emptcp_flow_key key EMPTCP_ALIGN8;
	struct emptcp_rl_flow *st;
	struct emptcp_tcpopt_walk w;
	struct tcphdr *th;
	__u32 hlen, seq, ack, end, payload, allowed, shift, want;
	__u16 win_old, win_new;
	__u64 now, tat, owed, v;
	int l4len, dir, d, lit;
	__u8 fl, ws = 0;

	if (!emptcp_matched(r))
		return EMPTCP_CONTINUE;
	emptcp_param_copy(r, &rl, sizeof(rl));
	/*
	 * The rate from a map keyed by the packet (bytes/s): the burst is then
	 * one second of it (the loader refuses an explicit burst with a map).
	 */
	lit = emptcp_param_from_tab(ctx, r, &v);
	if (lit < 0)
		return EMPTCP_CONTINUE;
	if (lit == 0) {
		if (v == 0)
			return EMPTCP_CONTINUE;
		rl.rate_Bps = v;
		rl.burst_ns = NSEC;
		rl.debt_ns = NSEC + NSEC / 2;
		rl.burst = v > 0xffffffffULL ? 0xffffffffU : (__u32)v;
	}

	th = emptcp_tcp(ctx, r);
	if (!th) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return EMPTCP_CONTINUE;
	}
	/* header fields first: packet pointers do not survive helper calls */
	fl = ((__u8 *)th)[13];
	hlen = th->doff * 4;
	seq = bpf_ntohl(th->seq);
	ack = bpf_ntohl(th->ack_seq);
	win_old = th->window;
	l4len = emptcp_l4_len(ctx, r);
	if (hlen < 20 || l4len < (int)hlen) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return EMPTCP_CONTINUE;
	}
	payload = l4len - hlen;
	dir = emptcp_flow_canon(ctx, r, &key);
	if (dir < 0) {
		emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
		return EMPTCP_CONTINUE;
	}
	dir &= 1;
	key.pad = FLOWTAB_LIVE;

	if (fl & EMPTCP_TCP_RST) {
		struct emptcp_rl_slot *s;
		int fresh;

		s = flowtab_find(&emptcp_g_rl_flows, &key, 0, &fresh);
		if (s)
			flowtab_free(&s->key);
		emptcp_run_count(r, EMPTCP_CNT_SKIP);
		return EMPTCP_CONTINUE;
	}
	now = rl.burst_ns >= EMPTCP_RL_COARSE_NS ? emptcp_now_coarse_ns() : emptcp_now_ns();
	if (fl & EMPTCP_TCP_SYN) {
		/* the SYN sender's window shift: the unit of its ACKs' windows */
		if (hlen > 20) {
			if (emptcp_opts_load(ctx, r, &w, hlen) < 0) {
				emptcp_run_count(r, EMPTCP_CNT_PARSE_ERR);
				return EMPTCP_CONTINUE;
			}
			if (w.ws_off)
				ws = emptcp_tcpopt_byte(&w, w.ws_off - 1 + 2);
		}
		/* a SYN without ACK starts over (a reused 4-tuple) */
		st = rl_flow(&key, 1, !(fl & EMPTCP_TCP_ACK));
		if (!st) {
			emptcp_run_count(r, EMPTCP_CNT_ERROR);
			return EMPTCP_CONTINUE;
		}
		/* it receives the data of the other direction */
		st->wscale[(dir ^ 1) & 1] = (ws > 14 ? 14 : ws) + 1;
		/* its own data starts after the SYN */
		rl_start(st, dir, seq + 1, now);
		emptcp_run_count(r, EMPTCP_CNT_SKIP);
		return EMPTCP_CONTINUE;
	}
	if (!(fl & EMPTCP_TCP_ACK)) {
		emptcp_run_count(r, EMPTCP_CNT_SKIP);
		return EMPTCP_CONTINUE;
	}
	/* no handshake seen: data can still be held to the budget */
	st = rl_flow(&key, payload != 0, 0);
	if (!st) {
		emptcp_run_count(r, payload ? EMPTCP_CNT_ERROR : EMPTCP_CNT_SKIP);
		return EMPTCP_CONTINUE;
	}

	/*
	 * 1. The data this packet carries: new bytes past the budget's edge
	 * are dropped, as a receiver drops data beyond the window it
	 * announced. A Linux MPTCP sender does send past a subflow's window:
	 * pushing new data onto a subflow raises its send window to the
	 * connection-level one, which the other subflows' ACKs keep open
	 * (MPTcpExtSndWndShared), so the window alone does not hold it.
	 * Retransmissions of bytes already passed go through.
	 */
	if (payload) {
		if (!(st->flags[dir] & EMPTCP_RL_EDGE))
			rl_start(st, dir, seq, now);
		end = seq + payload;
		if ((__s32)(end - st->hi[dir]) > 0) {
			/*
			 * GCRA: pass while the budget is paid up to a burst
			 * ahead; a segment larger than the burst (a GSO packet
			 * at a sender's tc-egress) only when it is paid up.
			 */
			tat = st->tat_ns[dir];
			if (tat < now)
				tat = now;
			tat += rl_ns(&rl, end - st->hi[dir]);
			if (tat > now + rl.burst_ns && st->tat_ns[dir] > now) {
				emptcp_run_count(r, EMPTCP_CNT_DROP);
				return EMPTCP_DROP;
			}
			st->tat_ns[dir] = tat;
			st->hi[dir] = end;
		}
	}

	/*
	 * 2. The ACK it carries, for the data of the other direction: the
	 * window announces at most what is in flight plus the credit left. A
	 * sender that keeps to it loses nothing; the window's unit is known
	 * only from the handshake.
	 */
	d = (dir ^ 1) & 1;
	if (!st->wscale[d]) {
		emptcp_run_count(r, EMPTCP_CNT_SKIP);
		return EMPTCP_CONTINUE;
	}
	shift = (st->wscale[d] - 1) & 15;
	if (!(st->flags[d] & EMPTCP_RL_EDGE))
		rl_start(st, d, ack, now);
	tat = st->tat_ns[d];
	if (tat < now)
		tat = now;
	if ((__s32)(ack - st->hi[d]) > 0) {
		/*
		 * Bytes acknowledged that no stage of this limiter saw pass
		 * (no chain on the data): charged now, a debt paid with zero
		 * windows, up to half a burst beyond the burst.
		 */
		tat += rl_ns(&rl, ack - st->hi[d]);
		if (tat > now + rl.debt_ns)
			tat = now + rl.debt_ns;
		st->tat_ns[d] = tat;
		st->hi[d] = ack;
	}
	/* what is in flight, plus the credit left */
	allowed = st->hi[d] - ack;
	owed = ((tat - now) * rl.rate_Bps + NSEC - 1) / NSEC;
	if (owed < rl.burst)
		allowed += rl.burst - (__u32)owed;

	want = allowed >> shift;
	if (want >= bpf_ntohs(win_old)) {
		/* already within the budget: never raise a window */
		emptcp_run_count(r, EMPTCP_CNT_SKIP);
		return EMPTCP_CONTINUE;
	}
	win_new = bpf_htons((__u16)want);
	if (emptcp_ctx_store_bytes(ctx, r->p.l4_off + 14, &win_new, 2) < 0) {
		/* nothing changed */
		emptcp_run_count(r, EMPTCP_CNT_ERROR);
		return EMPTCP_CONTINUE;
	}
	if (emptcp_ctx_l4_csum_replace(ctx, r->p.l4_off + 16, win_old, win_new, 2) < 0) {
		/* window changed, checksum not: drop rather than pass it corrupt */
		emptcp_run_count(r, EMPTCP_CNT_ERROR);
		return EMPTCP_DROP;
	}
	emptcp_run_count(r, EMPTCP_CNT_HIT);
	return EMPTCP_CONTINUE;
}

EMPTCP_ACTOR(rate_limit, rate_limit_stage, sizeof(struct emptcp_rate_limit));

EMPTCP_LICENSE("Dual BSD/GPL");
