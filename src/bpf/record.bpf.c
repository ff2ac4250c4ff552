// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * record - actor: per-subflow metrics of the selected packets in the
 * table emptcp_g_flows (flowtab.h; read by `emptcp stats`): packets and
 * payload bytes each way, retransmissions (data seen before), last window (scaled by the
 * shift from the sender's SYN), RTT from TCP timestamps (a TSval seen one
 * way, its echo the other way: put record on both hooks of a host), and the
 * MPTCP keys / join token that tie the subflow to its connection.
 * Read-only: the packet is never changed.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>
#include "flowtab.h"

/* Per-subflow records of every chain, both hooks (flowtab.h). */
struct emptcp_rec_slot {
	struct emptcp_flow_key key;
	struct emptcp_flow_rec rec;
};
FLOWTAB(emptcp_g_flows, struct emptcp_rec_slot);

/*
 * RTT from timestamps, on a packet sent in direction @dir with TSval @tsval
 * and TSecr @tsecr. The exact clock is read only when a sample closes or
 * starts (about once per RTT each way), not on every packet.
 */
static __always_inline void record_rtt(struct emptcp_flow_rec *rec, int dir, __u32 tsval,
				       __u32 tsecr, __u32 payload)
{
	int closes, starts;
	__u64 now;

	dir &= 1;
	/* this end echoes a TSval the other end sent: one RTT sample */
	closes = rec->ts_sent_val[dir ^ 1] && tsecr == rec->ts_sent_val[dir ^ 1] &&
		 rec->ts_sent_ns[dir ^ 1];
	/*
	 * Start a sample on a data segment when none is pending: the peer
	 * acknowledges data promptly, while an idle end's TSval may wait for
	 * an echo for as long as the peer stays silent.
	 */
	starts = !rec->ts_sent_val[dir] && tsval && payload;
	if (!closes && !starts)
		return;
	now = emptcp_now_ns();
	if (closes) {
		__u64 rtt = now - rec->ts_sent_ns[dir ^ 1];

		rec->rtt_last_ns = rtt;
		__sync_fetch_and_add(&rec->rtt_sum_ns, rtt);
		__sync_fetch_and_add(&rec->rtt_n, 1);
		rec->ts_sent_val[dir ^ 1] = 0;
	}
	if (starts) {
		rec->ts_sent_val[dir] = tsval;
		rec->ts_sent_ns[dir] = now;
	}
}

/* Segments after the SYNs read for MP_CAPABLE keys: the third ACK, the first data. */
#define REC_LOOK	2

/*
 * The work of record on a selected packet.
 * Returns the counter to bump (EMPTCP_CNT_*).
 */
static __always_inline int record_act(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct emptcp_rec_slot *s;
	struct emptcp_flow_rec *rec;
	struct emptcp_flow_key k EMPTCP_ALIGN8;
	struct emptcp_tcpopt_walk w;
	struct tcphdr *th;
	__u32 metrics, hlen, seq, win, tsval = 0, tsecr = 0, end, payload;
	__u64 p[1], now;
	int l4len, dir, walk = 0, have_ts = 0, fresh, look;
	__u8 fl, ws = 0;

	emptcp_param_copy(r, p, sizeof(p));
	metrics = p[0];
	th = emptcp_tcp(ctx, r);
	if (!th)
		return EMPTCP_CNT_PARSE_ERR;
	/* header fields first: packet pointers do not survive helper calls */
	hlen = th->doff * 4;
	fl = ((__u8 *)th)[13];
	seq = bpf_ntohl(th->seq);
	win = bpf_ntohs(th->window);
	l4len = emptcp_l4_len(ctx, r);
	if (l4len < (int)hlen)
		return EMPTCP_CNT_PARSE_ERR;
	payload = l4len - hlen;

	/* one entry per subflow: the lower (address, port) end first */
	dir = emptcp_flow_canon(ctx, r, &k);
	if (dir < 0)
		return EMPTCP_CNT_PARSE_ERR;
	/* first and last seen: to the tick; RTT samples read the exact clock */
	now = emptcp_now_coarse_ns();
	k.pad = FLOWTAB_LIVE;
	s = flowtab_find(&emptcp_g_flows, &k, 1, &fresh);
	if (!s)
		return EMPTCP_CNT_ERROR;
	rec = &s->rec;
	if (fresh) {
		flowtab_claim(&s->key, &k, sizeof(*rec));
		rec->first_ns = now;
		rec->v6 = !!(r->p.flags & EMPTCP_PF_V6);
	}
	dir &= 1;
	rec->last_ns = now;

	/*
	 * Options: timestamps for RTT (read in place where the per-packet
	 * summary says), SYN window shift, MPTCP keys and token (from a copy,
	 * only on the segments that carry them: the SYNs, and the first
	 * segments after them, where MP_CAPABLE's third ACK and first data
	 * repeat the keys). Without RTT, a subflow's later segments skip the
	 * option summary (~20 ns).
	 */
	look = (metrics & EMPTCP_REC_RTT) || (fl & EMPTCP_TCP_SYN) || rec->looked[dir] < REC_LOOK;
	if (!(fl & EMPTCP_TCP_SYN) && rec->looked[dir] < REC_LOOK)
		rec->looked[dir]++;
	if (hlen > 20 && look && emptcp_opts(ctx, r) == 0) {
		if ((metrics & EMPTCP_REC_RTT) && r->p.ts_off)
			have_ts = emptcp_ts(ctx, r, &tsval, &tsecr) == 0;
		if ((fl & EMPTCP_TCP_SYN) ||
		    (r->p.subtypes & ((1U << EMPTCP_MPTCPOPT_MP_CAPABLE) |
				      (1U << EMPTCP_MPTCPOPT_MP_JOIN))))
			walk = emptcp_opts_load(ctx, r, &w, hlen) == 0;
	}
	if (walk) {
		if ((fl & EMPTCP_TCP_SYN) && w.ws_off)
			ws = emptcp_tcpopt_byte(&w, w.ws_off - 1 + 2);
		if (fl & EMPTCP_TCP_SYN)
			rec->wscale[dir] = (ws > 14 ? 14 : ws) + 1;
		if (w.mptcp & (1U << EMPTCP_MPTCPOPT_MP_CAPABLE)) {
			struct emptcp_mptcp_mpc mpc;

			if (emptcp_mptcp_parse_mpc(&w, &mpc) == 0) {
				if (mpc.has_skey)
					rec->key[dir] = mpc.skey;
				if (mpc.has_rkey)
					rec->key[dir ^ 1] = mpc.rkey;
			}
		}
		if (w.mptcp & (1U << EMPTCP_MPTCPOPT_MP_JOIN)) {
			struct emptcp_mptcp_mpj mpj;

			if (emptcp_mptcp_parse_mpj(&w, &mpj) == 0 && mpj.token)
				rec->token = mpj.token;
		}
	}

	if (metrics & EMPTCP_REC_PACKETS)
		__sync_fetch_and_add(&rec->pkts[dir], 1);
	if (metrics & EMPTCP_REC_BYTES)
		__sync_fetch_and_add(&rec->bytes[dir], payload);
	if ((metrics & EMPTCP_REC_RETRANS) && payload) {
		end = seq + payload;
		if (!(rec->seq_init & (1 << dir))) {
			rec->seq_next[dir] = end;
			rec->seq_init |= 1 << dir;
		} else if ((__s32)(end - rec->seq_next[dir]) <= 0) {
			__sync_fetch_and_add(&rec->retrans[dir], 1);
		} else {
			rec->seq_next[dir] = end;
		}
	}
	if (metrics & EMPTCP_REC_WINDOW) {
		__u8 sh = rec->wscale[dir];

		/* SYNs are never scaled; after them, the sender's own shift */
		rec->win[dir] = (!(fl & EMPTCP_TCP_SYN) && sh) ? win << ((sh - 1) & 15) : win;
	}
	if ((metrics & EMPTCP_REC_RTT) && have_ts)
		record_rtt(rec, dir, tsval, tsecr, payload);
	return EMPTCP_CNT_HIT;
}

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_HEAVY_STAGE int record_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	/* one exit to the next stage, whatever the outcome (step.h) */
	if (emptcp_matched(r))
		emptcp_run_count(r, record_act(ctx, r));
	return EMPTCP_CONTINUE;
}

EMPTCP_ACTOR(record, record_stage, 8);

EMPTCP_LICENSE("Dual BSD/GPL");
