// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * rate_limit - actor: bound the rate of a subflow's data sender by clamping
 * the receive window in the ACKs that travel to it. Never raises a window.
 *
 * Where: the stage must see the packets of the *receiver* of the data (its
 * SYN or SYN-ACK and its ACKs): TC egress of the receiving host, or XDP /
 * TC ingress of the sending host (or a middle node), with selectors that
 * pick the receiver -> sender direction. The window scale that applies to
 * those ACKs is the one the receiver announced in its own SYN/SYN-ACK
 * (RFC 7323; Linux always answers a scaled SYN with a scaled SYN-ACK), so
 * the stage records it from the handshake. A subflow whose handshake the
 * stage did not see passes untouched (counted as skip).
 *
 * How: a token bucket on the right window edge. Each subflow has an edge in
 * the sender's sequence space that advances by rate x elapsed time; an ACK
 * announces at most (edge - ack), so the bytes the sender may have sent by
 * time t never exceed rate x t + burst, whatever the RTT. The edge never
 * moves back and stays within `burst` of the ACK (idle time does not pile
 * up credit beyond that; bytes sent past it anyway are paid back, below). With an RTT large against MSS / rate this is the
 * classic window = rate x RTT clamp (ACK clocked); on a path with almost no
 * RTT (veth) the sender empties the window at once and waits for the next
 * window-opening ACK (at worst its zero-window probe, >= 200 ms with
 * exponential backoff), which is why the default burst is a second of rate.
 *
 * The window field changes in place: one incremental checksum update
 * (bpf_l4_csum_replace on TC, so CHECKSUM_PARTIAL skbs stay right).
 * RST drops the subflow's state; otherwise LRU ages it out.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/* Per-subflow window scale and granted edge (key: ACK direction + slot). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct emptcp_flow_key);
	__type(value, struct emptcp_rl_flow);
} emptcp_rl_flows SEC(".maps");

/* Credit is computed over at most this long a gap (keeps rate x dt in 64 bits). */
#define RL_MAX_GAP_NS	1000000000ULL

SEC(EMPTCP_SEC)
int rate_limit(emptcp_ctx *ctx)
{
	struct emptcp_rate_limit rl;
	struct emptcp_flow_key key;
	struct emptcp_rl_flow *st, init = {};
	struct tcpopt_walk w;
	struct emptcp_run r;
	struct tcphdr *th;
	__u32 hlen, ack, allowed, shift, want;
	__u16 win_old, win_new;
	__u64 now, dt;
	int l4len;
	__u8 fl, ws = 0;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	if (!emptcp_matched(&r))
		return emptcp_next(ctx, &r);
	emptcp_param_copy(&r, &rl, sizeof(rl));

	th = emptcp_tcp(ctx, &r);
	if (!th) {
		emptcp_count(r.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_next(ctx, &r);
	}
	/* header fields first: packet pointers do not survive helper calls */
	fl = ((__u8 *)th)[13];
	hlen = th->doff * 4;
	ack = bpf_ntohl(th->ack_seq);
	win_old = th->window;
	l4len = emptcp_l4_len(ctx, &r);
	if (hlen < 20 || l4len < (int)hlen) {
		emptcp_count(r.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_next(ctx, &r);
	}
	__builtin_memset(&key, 0, sizeof(key));
	if (emptcp_tuple(ctx, &r, key.saddr, key.daddr, &key.sport, &key.dport) < 0) {
		emptcp_count(r.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_next(ctx, &r);
	}
	key.slot = r.slot;

	if (fl & EMPTCP_TCP_RST) {
		bpf_map_delete_elem(&emptcp_rl_flows, &key);
		emptcp_count(r.slot, EMPTCP_CNT_SKIP);
		return emptcp_next(ctx, &r);
	}
	if (fl & EMPTCP_TCP_SYN) {
		/* the ACK sender's own SYN or SYN-ACK: its window shift */
		if (hlen > 20) {
			if (emptcp_opts_load(ctx, &r, &w, hlen) < 0) {
				emptcp_count(r.slot, EMPTCP_CNT_PARSE_ERR);
				return emptcp_next(ctx, &r);
			}
			if (w.ws_off)
				ws = tcpopt_byte(&w, w.ws_off - 1 + 2);
		}
		init.wscale = (ws > 14 ? 14 : ws) + 1;
		/* a new handshake starts over (a reused 4-tuple) */
		bpf_map_update_elem(&emptcp_rl_flows, &key, &init, BPF_ANY);
		emptcp_count(r.slot, EMPTCP_CNT_SKIP);
		return emptcp_next(ctx, &r);
	}
	if (!(fl & EMPTCP_TCP_ACK)) {
		emptcp_count(r.slot, EMPTCP_CNT_SKIP);
		return emptcp_next(ctx, &r);
	}
	st = bpf_map_lookup_elem(&emptcp_rl_flows, &key);
	if (!st || !st->wscale) {
		/* no handshake seen: the window's unit is unknown */
		emptcp_count(r.slot, EMPTCP_CNT_SKIP);
		return emptcp_next(ctx, &r);
	}
	shift = (st->wscale - 1) & 15;
	now = bpf_ktime_get_ns();
	if (!(st->flags & EMPTCP_RL_EDGE)) {
		/* first ACK: no credit yet, the bucket fills from here */
		st->edge = ack;
		st->last_ns = now;
		st->flags |= EMPTCP_RL_EDGE;
	} else {
		dt = now - st->last_ns;
		if (dt > RL_MAX_GAP_NS)
			dt = RL_MAX_GAP_NS;
		st->edge += (__u32)(rl.rate_Bps * dt / 1000000000ULL);
		st->last_ns = now;
	}
	/*
	 * At most a burst ahead of the ACK (idle time does not pile up
	 * credit). Bytes acknowledged beyond the edge are a debt paid with
	 * zero windows, up to half a burst: a Linux MPTCP sender may send
	 * past a subflow's window, because pushing new data onto a subflow
	 * raises its send window to the connection-level one, which the
	 * other subflows' ACKs keep open (MPTcpExtSndWndShared). While a
	 * debt lasts the sender probes the zero window (200 ms, 400 ms, ...
	 * backoff); half a burst of debt is paid before the credit cap can
	 * waste time spent waiting for the next probe.
	 */
	if ((__s32)(st->edge - ack) > (__s32)rl.burst)
		st->edge = ack + rl.burst;
	else if ((__s32)(ack - st->edge) > (__s32)(rl.burst / 2))
		st->edge = ack - rl.burst / 2;
	allowed = (__s32)(st->edge - ack) > 0 ? st->edge - ack : 0;

	want = allowed >> shift;
	if (want >= bpf_ntohs(win_old)) {
		/* already within the budget: never raise a window */
		emptcp_count(r.slot, EMPTCP_CNT_SKIP);
		return emptcp_next(ctx, &r);
	}
	win_new = bpf_htons((__u16)want);
	if (ctx_store_bytes(ctx, r.p.l4_off + 14, &win_new, 2) < 0) {
		/* nothing changed */
		emptcp_count(r.slot, EMPTCP_CNT_ERROR);
		return emptcp_next(ctx, &r);
	}
	if (ctx_l4_csum_replace(ctx, r.p.l4_off + 16, win_old, win_new, 2) < 0) {
		/* window changed, checksum not: drop rather than pass it corrupt */
		emptcp_count(r.slot, EMPTCP_CNT_ERROR);
		return EMPTCP_DROP;
	}
	emptcp_count(r.slot, EMPTCP_CNT_HIT);
	return emptcp_next(ctx, &r);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
