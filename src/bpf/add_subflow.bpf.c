// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * add_subflow - actor: put an ADD_ADDR kept by blk_subflow back, byte for
 * byte (its HMAC stays valid), on the next selected packet of that
 * connection, so that the peer learns the address and opens its subflow.
 *
 * The kept option belongs to the direction it travelled in (announcing end
 * -> peer): it is looked up by the packet's own 4-tuple, so only packets
 * from the announcing end carry it back (put on a packet of the other
 * direction it would announce the address to its owner). Put on the hook
 * that sees those packets: e.g. blk_subflow and add_subflow both on the
 * peer's XDP ingress, or both on the announcer's TC egress.
 *
 * The option (padded with NOPs to a multiple of 4) goes right after the
 * fixed TCP header on XDP (any segment) and after the last option on TC
 * (segments without payload only; see grow.h). Segments that would pass a
 * 60-byte TCP header, and TC data segments, are counted as no_room and the
 * entry waits for the next one. Only established MPTCP segments (with a
 * DSS, no MP_CAPABLE/MP_JOIN, no ADD_ADDR already) get it. Once placed,
 * the entry is removed.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/* Kept ADD_ADDR options per connection (declared identically in blk_subflow). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct emptcp_flow_key);
	__type(value, struct emptcp_kept);
} emptcp_g_kept SEC(".maps");

SEC(EMPTCP_SEC)
int add_subflow(emptcp_ctx *ctx)
{
	struct emptcp_flow_key k;
	struct emptcp_kept *kept;
	struct emptcp_run r;
	struct tcphdr *th;
	__u32 hlen, len, n, room, word;
	int l4len, payload, ret;
	__u8 fl;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	if (!emptcp_matched(&r))
		return emptcp_next(ctx, &r);
	th = emptcp_tcp(ctx, &r);
	if (!th) {
		emptcp_count(r.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_next(ctx, &r);
	}
	fl = ((__u8 *)th)[13];
	hlen = th->doff * 4;
	if ((fl & (EMPTCP_TCP_SYN | EMPTCP_TCP_RST)) || !(fl & EMPTCP_TCP_ACK))
		return emptcp_next(ctx, &r);
	if (emptcp_tuple(ctx, &r, k.saddr, k.daddr, &k.sport, &k.dport) < 0) {
		emptcp_count(r.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_next(ctx, &r);
	}
	k.slot = 0;
	k.pad = 0;
	kept = bpf_map_lookup_elem(&emptcp_g_kept, &k);
	if (!kept)
		return emptcp_next(ctx, &r);
	len = kept->len;
	if (len < TCPOLEN_MPTCP_ADD_ADDR4_ECHO || len > EMPTCP_KEPT_MAX - 2) {
		emptcp_count(r.slot, EMPTCP_CNT_ERROR);
		return emptcp_next(ctx, &r);
	}
	/* blk_subflow pads the kept bytes with NOPs up to EMPTCP_KEPT_MAX */
	n = (len + 3) & ~3U;

	l4len = emptcp_l4_len(ctx, &r);
	if (l4len < (int)hlen || hlen < 20) {
		emptcp_count(r.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_next(ctx, &r);
	}
	payload = l4len - hlen;
	if (hlen + n > TCP_MAX_HDR_LEN || (!EMPTCP_IS_XDP && payload)) {
		emptcp_count(r.slot, EMPTCP_CNT_NO_ROOM);
		return emptcp_next(ctx, &r);
	}
	/* the per-packet option summary (the header length was checked above) */
	if (emptcp_opts(ctx, &r) < 0) {
		emptcp_count(r.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_next(ctx, &r);
	}
	if (!(r.p.subtypes & (1U << MPTCPOPT_DSS)) ||
	    (r.p.subtypes & ((1U << MPTCPOPT_MP_CAPABLE) | (1U << MPTCPOPT_MP_JOIN) |
			     (1U << MPTCPOPT_ADD_ADDR)))) {
		emptcp_count(r.slot, EMPTCP_CNT_SKIP);
		return emptcp_next(ctx, &r);
	}
	/* TC appends after the last option: behind an EOL nobody reads it */
	if (!EMPTCP_IS_XDP && (r.p.flags & EMPTCP_PF_EOL)) {
		emptcp_count(r.slot, EMPTCP_CNT_SKIP);
		return emptcp_next(ctx, &r);
	}

	ret = ctx_grow_tcp_header(ctx, r.p.l4_off, hlen, payload, n, &room);
	if (ret == EMPTCP_E2BIG || ret == EMPTCP_ENOTSUP) {
		emptcp_count(r.slot, EMPTCP_CNT_NO_ROOM);
		return emptcp_next(ctx, &r);
	}
	if (ret < 0) {
		emptcp_count(r.slot, EMPTCP_CNT_ERROR);
		return emptcp_next(ctx, &r);
	}
	/*
	 * Grown: a failure from here would leave the packet inconsistent, so
	 * it is dropped (TCP retransmits) rather than passed corrupt.
	 */
#pragma unroll
	for (int i = 0; i < EMPTCP_KEPT_MAX / 4; i++) {
		if ((__u32)i * 4 >= n)
			break;
		/* the map value outlives packet changes (stack is short here) */
		__builtin_memcpy(&word, &kept->opt[i * 4], 4);
		if (ctx_store_bytes(ctx, room + i * 4, &word, 4) < 0 ||
		    ctx_l4_csum_replace(ctx, r.p.l4_off + 16, 0, word, 4) < 0) {
			emptcp_count(r.slot, EMPTCP_CNT_ERROR);
			return EMPTCP_DROP;
		}
	}
	if (update_tcphlen_csum(ctx, r.p.l3_off, r.p.l4_off, r.p.flags & EMPTCP_PF_V6, n) < 0) {
		emptcp_count(r.slot, EMPTCP_CNT_ERROR);
		return EMPTCP_DROP;
	}
	bpf_map_delete_elem(&emptcp_g_kept, &k);
	emptcp_count(r.slot, EMPTCP_CNT_HIT);
	r.p.flags &= ~EMPTCP_PF_OPTS;
	r.p.flags |= EMPTCP_PF_PM;
	return emptcp_next(ctx, &r);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
