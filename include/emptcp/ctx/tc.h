/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/ctx/tc.h - the emptcp context interface (emptcp/ctx.h) on TC:
 * struct __sk_buff, the skb helpers, checksums by bpf_l4/l3_csum_replace().
 *
 * Needs:      vmlinux.h; EMPTCP_TC defined (and not EMPTCP_XDP). Stages
 *             include emptcp/ctx.h, which picks this header or ctx/xdp.h.
 * Guarantees: the interface listed in emptcp/ctx.h; checksum updates are
 *             correct for CHECKSUM_PARTIAL and CHECKSUM_NONE skbs.
 * Limits:     headers outside the linear data must be pulled first
 *             (emptcp_ctx_pull(), which may copy a cloned skb's head).
 */
#ifndef __EMPTCP_CTX_TC_H
#define __EMPTCP_CTX_TC_H

#if !defined(EMPTCP_TC) || defined(EMPTCP_XDP)
#error "emptcp/ctx/tc.h is the TC context: build with -DEMPTCP_TC (not -DEMPTCP_XDP)"
#endif

#include <bpf/bpf_helpers.h>
#include "common.h"

#define emptcp_ctx	struct __sk_buff
#define EMPTCP_SEC	"tc"
/*
 * TC_ACT_UNSPEC / TCX_NEXT: let the next program (or filter) decide.
 * emptcp never ends processing for programs it does not own.
 */
#define EMPTCP_PASS	(-1)
#define EMPTCP_DROP	2	/* TC_ACT_SHOT */
#define EMPTCP_IS_XDP	0

#define EMPTCP_OFF_LEN		0	/* struct __sk_buff .len */
#define EMPTCP_OFF_IFINDEX	40	/* .ifindex */
#define EMPTCP_OFF_CB		48	/* .cb[0] */
#define EMPTCP_OFF_DATA		76	/* .data */
#define EMPTCP_OFF_DATA_END	80	/* .data_end */

static __always_inline void *emptcp_ctx_data(emptcp_ctx *ctx)
{
	return EMPTCP_CTX_LDPTR(ctx, EMPTCP_OFF_DATA);
}

static __always_inline void *emptcp_ctx_data_end(emptcp_ctx *ctx)
{
	return EMPTCP_CTX_LDPTR(ctx, EMPTCP_OFF_DATA_END);
}

/* Total packet length (the whole skb, frags included). */
static __always_inline __u32 emptcp_ctx_len(emptcp_ctx *ctx)
{
	return EMPTCP_CTX_LD32(ctx, EMPTCP_OFF_LEN);
}

/* Make at least @len bytes directly readable (pulled from frags). */
static __always_inline int emptcp_ctx_pull(emptcp_ctx *ctx, __u32 len)
{
	if (emptcp_ctx_data(ctx) + len <= emptcp_ctx_data_end(ctx))
		return 0;
	if (len > emptcp_ctx_len(ctx))
		len = emptcp_ctx_len(ctx);
	return bpf_skb_pull_data(ctx, len);
}

static __always_inline long emptcp_ctx_load_bytes(emptcp_ctx *ctx, __u32 off, void *buf,
						  __u32 len)
{
	return bpf_skb_load_bytes(ctx, off, buf, len);
}

static __always_inline long emptcp_ctx_store_bytes(emptcp_ctx *ctx, __u32 off, const void *buf,
						   __u32 len)
{
	return bpf_skb_store_bytes(ctx, off, buf, len, 0);
}

/*
 * Replace a 2- or 4-byte field's contribution to the TCP/UDP checksum at
 * @csum_off. @flags: size (2 or 4) | EMPTCP_F_PSEUDO_HDR when the field is
 * part of the pseudo-header (addresses, length). Size 0 applies @to as a
 * precomputed difference (bpf_csum_diff()).
 */
static __always_inline long emptcp_ctx_l4_csum_replace(emptcp_ctx *ctx, __u32 csum_off,
						       __u32 from, __u32 to, __u64 flags)
{
	return bpf_l4_csum_replace(ctx, csum_off, from, to, flags);
}

/* Same for the IPv4 header checksum (size 2 or 4). */
static __always_inline long emptcp_ctx_l3_csum_replace(emptcp_ctx *ctx, __u32 csum_off,
						       __u32 from, __u32 to, __u64 size)
{
	return bpf_l3_csum_replace(ctx, csum_off, from, to, size);
}

#endif /* __EMPTCP_CTX_TC_H */
