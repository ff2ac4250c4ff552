/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/grow.h - add, remove and account for TCP option bytes.
 *
 * Needs:      vmlinux.h, <bpf/bpf_helpers.h>, <bpf/bpf_endian.h>,
 *             emptcp/csum.h, emptcp/ctx.h, emptcp/tcpopt.h.
 * Guarantees: after a successful add (emptcp_ctx_grow_tcp_header + emptcp_add_tcp_opts +
 *             emptcp_update_tcphlen_csum + emptcp_add_tcpopt_csum) the packet has a
 *             correct IPv4 total length / IPv6 payload length, TCP data
 *             offset, IPv4 header checksum and TCP checksum (the three
 *             parts: option bytes, the word holding doff, pseudo-header
 *             length). The network and TCP header offsets do not move.
 *             Nothing grows the TCP header past 60 bytes.
 * Limits:     XDP grows at the head (room right after the fixed 20-byte TCP
 *             header, so every segment can grow, data included); TC grows
 *             at the tail and therefore only segments without payload
 *             (bpf_skb_adjust_room() leaves csum_start on the old TCP
 *             header, see docs/design.md). Headers before the room must
 *             fit EMPTCP_GROW_MAX_HDR bytes. Grow by a multiple of 4.
 */
#ifndef __EMPTCP_GROW_H
#define __EMPTCP_GROW_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ctx.h"
#include "mptcp.h"

#ifndef EMPTCP_GROW_MAX_HDR
#define EMPTCP_GROW_MAX_HDR 192
#endif

#define EMPTCP_E2BIG	(-7)
#define EMPTCP_ENOMEM	(-12)
#define EMPTCP_EINVAL	(-22)
#define EMPTCP_ENOTSUP	(-95)

#ifdef EMPTCP_XDP
/*
 * Make @n bytes of room right after the fixed TCP header at @l4_off: the
 * packet start moves back by @n and the headers are copied to the new
 * start. On success *room_off is where the room begins.
 */
static __always_inline int emptcp_xdp_grow_tcp_header(struct xdp_md *ctx, __u32 l4_off, __u32 n,
					       __u32 *room_off)
{
	__u8 buf[EMPTCP_GROW_MAX_HDR];
	__u32 hlen = l4_off + 20;

	if (n == 0 || n > EMPTCP_TCP_MAX_OPT_LEN || (n & 3))
		return EMPTCP_EINVAL;
	/* bounded, non-zero size for the verifier */
	if (hlen > EMPTCP_GROW_MAX_HDR || hlen < 20)
		return EMPTCP_E2BIG;
	EMPTCP_TCPOPT_CLAMP(hlen, 20, EMPTCP_GROW_MAX_HDR);	/* Verifier: see tcpopt.h */
	if (emptcp_ctx_load_bytes(ctx, 0, buf, hlen) < 0)
		return EMPTCP_EINVAL;
	if (bpf_xdp_adjust_head(ctx, -(int)n) < 0)
		return EMPTCP_ENOMEM;
	if (emptcp_ctx_store_bytes(ctx, 0, buf, hlen) < 0) {
		/* cannot happen with room made above; restore the packet */
		bpf_xdp_adjust_head(ctx, (int)n);
		return EMPTCP_EINVAL;
	}
	*room_off = hlen;
	return 0;
}
#else
/*
 * TC twin: make @n bytes of room at the end of a segment without payload
 * whose IP packet ends at @pkt_end (trailing link padding is cut off).
 */
static __always_inline int emptcp_tc_grow_tcp_header(struct __sk_buff *skb, __u32 pkt_end, __u32 n,
					      __u32 *room_off)
{
	if (n == 0 || n > EMPTCP_TCP_MAX_OPT_LEN || (n & 3))
		return EMPTCP_EINVAL;
	if (bpf_skb_change_tail(skb, pkt_end + n, 0) < 0)
		return EMPTCP_ENOMEM;
	*room_off = pkt_end;
	return 0;
}
#endif

/*
 * Grow the TCP header of the packet by @n bytes, whichever way the hook
 * allows. @tcp_hlen is the current TCP header length, @payload the TCP
 * payload length. Returns 0 and the room offset, or a negative EMPTCP_E*:
 * EMPTCP_E2BIG when the header would pass 60 bytes, EMPTCP_ENOTSUP for a
 * data segment on TC. On error the packet is unchanged.
 */
static __always_inline int emptcp_ctx_grow_tcp_header(emptcp_ctx *ctx, __u32 l4_off, __u32 tcp_hlen,
					       __u32 payload, __u32 n, __u32 *room_off)
{
	if (tcp_hlen + n > EMPTCP_TCP_MAX_HDR_LEN)
		return EMPTCP_E2BIG;
#ifdef EMPTCP_XDP
	return emptcp_xdp_grow_tcp_header(ctx, l4_off, n, room_off);
#else
	if (payload)
		return EMPTCP_ENOTSUP;
	return emptcp_tc_grow_tcp_header(ctx, l4_off + tcp_hlen, n, room_off);
#endif
}

/* Write @n (<= 8, multiple of 4) option bytes into the room at @room_off. */
static __always_inline int emptcp_add_tcp_opts(emptcp_ctx *ctx, __u32 room_off, const __u8 *opt,
					       __u32 n)
{
	if (n != 4 && n != 8)
		return EMPTCP_EINVAL;
	return emptcp_ctx_store_bytes(ctx, room_off, opt, n) < 0 ? EMPTCP_EINVAL : 0;
}

/*
 * Add @n new option bytes (already in the packet at @room_off) to the TCP
 * checksum, 32 bits at a time (the room starts on a 4-byte boundary of the
 * TCP header, so the words line up with the checksum's 16-bit words).
 */
static __always_inline int emptcp_add_tcpopt_csum(emptcp_ctx *ctx, __u32 l4_off, const __u8 *opt,
						  __u32 n)
{
	__u32 w;

	if (n != 4 && n != 8)
		return EMPTCP_EINVAL;
	__builtin_memcpy(&w, opt, 4);
	if (emptcp_ctx_l4_csum_replace(ctx, l4_off + 16, 0, w, 4) < 0)
		return EMPTCP_EINVAL;
	if (n == 8) {
		__builtin_memcpy(&w, opt + 4, 4);
		if (emptcp_ctx_l4_csum_replace(ctx, l4_off + 16, 0, w, 4) < 0)
			return EMPTCP_EINVAL;
	}
	return 0;
}

/*
 * Account for a TCP header grown by @n bytes: data offset (and the 16-bit
 * word holding it in the TCP checksum), IPv4 total length and header
 * checksum or IPv6 payload length, and the pseudo-header length in the TCP
 * checksum.
 */
static __always_inline int emptcp_update_tcphlen_csum(emptcp_ctx *ctx, __u32 l3_off, __u32 l4_off,
					       int v6, __u32 n)
{
	__u16 w_old, w_new, len_old, len_new;
	__u32 tcp_len;

	/* bytes 12..13: doff(4) res(4) flags(8) */
	if (emptcp_ctx_load_bytes(ctx, l4_off + 12, &w_old, 2) < 0)
		return EMPTCP_EINVAL;
	w_new = bpf_htons(bpf_ntohs(w_old) + ((n / 4) << 12));
	if (emptcp_ctx_store_bytes(ctx, l4_off + 12, &w_new, 2) < 0)
		return EMPTCP_EINVAL;
	if (emptcp_ctx_l4_csum_replace(ctx, l4_off + 16, w_old, w_new, 2) < 0)
		return EMPTCP_EINVAL;

	if (v6) {
		/* payload_len at offset 4 */
		if (emptcp_ctx_load_bytes(ctx, l3_off + 4, &len_old, 2) < 0)
			return EMPTCP_EINVAL;
		len_new = bpf_htons(bpf_ntohs(len_old) + n);
		if (emptcp_ctx_store_bytes(ctx, l3_off + 4, &len_new, 2) < 0)
			return EMPTCP_EINVAL;
	} else {
		/* tot_len at offset 2, checksum at offset 10 */
		if (emptcp_ctx_load_bytes(ctx, l3_off + 2, &len_old, 2) < 0)
			return EMPTCP_EINVAL;
		len_new = bpf_htons(bpf_ntohs(len_old) + n);
		if (emptcp_ctx_store_bytes(ctx, l3_off + 2, &len_new, 2) < 0)
			return EMPTCP_EINVAL;
		if (emptcp_ctx_l3_csum_replace(ctx, l3_off + 10, len_old, len_new, 2) < 0)
			return EMPTCP_EINVAL;
	}
	/* pseudo-header TCP length: (IP payload) - (extension/option bytes) */
	tcp_len = bpf_ntohs(len_new) - (v6 ? 0 : (l4_off - l3_off)) -
		  (v6 ? (l4_off - l3_off - 40) : 0);
	len_new = bpf_htons(tcp_len);
	len_old = bpf_htons(tcp_len - n);
	if (emptcp_ctx_l4_csum_replace(ctx, l4_off + 16, len_old, len_new,
				       EMPTCP_F_PSEUDO_HDR | 2) < 0)
		return EMPTCP_EINVAL;
	return 0;
}

/*
 * Overwrite @len option bytes at @opt_off (from the start of the option
 * area) with NOPs, keeping the packet length; the TCP checksum is fixed
 * with one bpf_csum_diff() over the 4-byte aligned option area.
 * @w holds the option area as loaded by the caller (it is updated too).
 */
static __always_inline int emptcp_tcpopt_nop_out(emptcp_ctx *ctx, __u32 l4_off,
						 struct emptcp_tcpopt_walk *w, __u32 opt_off,
						 __u32 len)
{
	__u8 nb[EMPTCP_TCP_MAX_OPT_LEN];
	__u32 area = w->len;
	__s64 diff;

	if (area == 0 || area > EMPTCP_TCP_MAX_OPT_LEN || (area & 3))
		return EMPTCP_EINVAL;
	if (opt_off + len > area || len == 0)
		return EMPTCP_EINVAL;
#pragma unroll
	for (int i = 0; i < EMPTCP_TCP_MAX_OPT_LEN; i++) {
		__u8 b = w->b[i];

		if ((__u32)i >= opt_off && (__u32)i < opt_off + len)
			b = EMPTCP_TCPOPT_NOP_KIND;
		nb[i] = b;
	}
	diff = bpf_csum_diff((__be32 *)w->b, area, (__be32 *)nb, area, 0);
	if (diff < 0)
		return EMPTCP_EINVAL;
	EMPTCP_TCPOPT_CLAMP(area, 1, EMPTCP_TCP_MAX_OPT_LEN);	/* Verifier: see tcpopt.h */
	if (emptcp_ctx_store_bytes(ctx, l4_off + 20, nb, area) < 0)
		return EMPTCP_EINVAL;
	if (emptcp_ctx_l4_csum_replace(ctx, l4_off + 16, 0, (__u32)diff, 0) < 0)
		return EMPTCP_EINVAL;
	__builtin_memcpy(w->b, nb, EMPTCP_TCP_MAX_OPT_LEN);
	return 0;
}

#endif /* __EMPTCP_GROW_H */
