/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/ctx/xdp.h - the emptcp context interface (emptcp/ctx.h) on XDP:
 * struct xdp_md, direct packet access, checksums by csum.h arithmetic.
 *
 * Needs:      vmlinux.h; EMPTCP_XDP defined (and not EMPTCP_TC). Stages
 *             include emptcp/ctx.h, which picks this header or ctx/tc.h.
 * Guarantees: the interface listed in emptcp/ctx.h.
 * Limits:     XDP frags (multi-buffer) are not handled: headers must sit in
 *             the first buffer. Before Linux 5.18 (no bpf_xdp_load_bytes/
 *             store_bytes) bytes are copied by direct packet access, at most
 *             EMPTCP_XDP_COPY_MAX at a time, at offsets up to
 *             EMPTCP_XDP_COPY_OFF_MAX.
 */
#ifndef __EMPTCP_CTX_XDP_H
#define __EMPTCP_CTX_XDP_H

#if !defined(EMPTCP_XDP) || defined(EMPTCP_TC)
#error "emptcp/ctx/xdp.h is the XDP context: build with -DEMPTCP_XDP (not -DEMPTCP_TC)"
#endif

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "../csum.h"

/* Not a typedef: vmlinux.h's preserve_access_index breaks CO-RE on typedefs. */
#define emptcp_ctx	struct xdp_md
#define EMPTCP_SEC	"xdp"
#define EMPTCP_PASS	2	/* XDP_PASS */
#define EMPTCP_DROP	1	/* XDP_DROP */
#define EMPTCP_IS_XDP	1

#define EMPTCP_OFF_DATA		0	/* struct xdp_md .data */
#define EMPTCP_OFF_DATA_END	4	/* .data_end */

static __always_inline void *emptcp_ctx_data(emptcp_ctx *ctx)
{
	return EMPTCP_CTX_LDPTR(ctx, EMPTCP_OFF_DATA);
}

static __always_inline void *emptcp_ctx_data_end(emptcp_ctx *ctx)
{
	return EMPTCP_CTX_LDPTR(ctx, EMPTCP_OFF_DATA_END);
}

/* Packet length: the one buffer. */
static __always_inline __u32 emptcp_ctx_len(emptcp_ctx *ctx)
{
	return emptcp_ctx_data_end(ctx) - emptcp_ctx_data(ctx);
}

/* At least @len bytes directly readable? (XDP cannot pull.) */
static __always_inline int emptcp_ctx_pull(emptcp_ctx *ctx, __u32 len)
{
	if (emptcp_ctx_data(ctx) + len > emptcp_ctx_data_end(ctx))
		return -1;
	return 0;
}

#ifndef EMPTCP_XDP_COPY_MAX
#define EMPTCP_XDP_COPY_MAX 192	/* EMPTCP_GROW_MAX_HDR: grow.h's header copy */
#endif

/*
 * bpf_xdp_load_bytes()/bpf_xdp_store_bytes() came in Linux 5.18. The CO-RE
 * relocation makes this a constant at load time: the verifier walks one
 * side only, and an older kernel never sees the call to a helper it lacks
 * (dead code is removed before helper calls are resolved).
 */
#define EMPTCP_XDP_HAS_LOAD_BYTES \
	bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_xdp_load_bytes)

/*
 * The fallback: before 5.18 an XDP packet is one linear buffer of at most a
 * page, so copy @len bytes at @off byte by byte through direct packet
 * access; nothing is copied if the range is not all in the packet. -14
 * (-EFAULT) like the helpers. Verifier: the loop has a constant bound and i
 * is a constant in each round it walks, so every stack and packet access is
 * at a known offset (5.10 has no variable-offset stack writes); a packet
 * pointer check gives a range only while the offset's bound plus the
 * constant part stays within 0xffff, hence the small offset bound.
 */
#define EMPTCP_XDP_COPY_OFF_MAX	0x1fff
static __always_inline long emptcp_xdp_copy_direct(struct xdp_md *ctx, __u32 off, __u8 *buf,
						   __u32 len, int store)
{
	void *data = emptcp_ctx_data(ctx), *end = emptcp_ctx_data_end(ctx);
	__u64 o = off;
	__u8 *p;
	__u32 i;

	if (len > EMPTCP_XDP_COPY_MAX || o > EMPTCP_XDP_COPY_OFF_MAX)
		return -14;
	/* the bound, in the register used */
	asm volatile("%0 &= %1" : "+r"(o) : "i"(EMPTCP_XDP_COPY_OFF_MAX));
	p = data + o;
	if ((void *)p + len > end)
		return -14;
	for (i = 0; i < EMPTCP_XDP_COPY_MAX; i++) {
		if (i >= len)
			break;
		if ((void *)(p + i + 1) > end)
			return -14;
		if (store)
			p[i] = buf[i];
		else
			buf[i] = p[i];
	}
	return 0;
}

static __always_inline long emptcp_ctx_load_bytes(emptcp_ctx *ctx, __u32 off, void *buf,
						  __u32 len)
{
	if (!EMPTCP_XDP_HAS_LOAD_BYTES)
		return emptcp_xdp_copy_direct(ctx, off, buf, len, 0);
	return bpf_xdp_load_bytes(ctx, off, buf, len);
}

static __always_inline long emptcp_ctx_store_bytes(emptcp_ctx *ctx, __u32 off, const void *buf,
						   __u32 len)
{
	if (!EMPTCP_XDP_HAS_LOAD_BYTES)
		return emptcp_xdp_copy_direct(ctx, off, (__u8 *)buf, len, 1);
	return bpf_xdp_store_bytes(ctx, off, (void *)buf, len);
}

/*
 * Replace a 2- or 4-byte field's contribution to the TCP/UDP checksum at
 * @csum_off. @flags: size (2 or 4) | EMPTCP_F_PSEUDO_HDR when the field is
 * part of the pseudo-header (addresses, length). Size 0 applies @to as a
 * precomputed difference (bpf_csum_diff()). XDP packets carry a full
 * checksum, so the flag changes nothing here.
 */
static __always_inline long emptcp_ctx_l4_csum_replace(emptcp_ctx *ctx, __u32 csum_off,
						       __u32 from, __u32 to, __u64 flags)
{
	__u16 check;
	__u32 size = flags & 0xf;
	long ret;

	ret = emptcp_ctx_load_bytes(ctx, csum_off, &check, sizeof(check));
	if (ret < 0)
		return ret;
	if (size == 2)
		check = emptcp_csum_replace2_val(check, from, to);
	else if (size == 4)
		check = emptcp_csum_replace4_val(check, from, to);
	else if (size == 0)
		check = emptcp_csum_apply_diff(check, to);
	else
		return -22;
	return emptcp_ctx_store_bytes(ctx, csum_off, &check, sizeof(check));
}

/* Same for the IPv4 header checksum (size 2 or 4). */
static __always_inline long emptcp_ctx_l3_csum_replace(emptcp_ctx *ctx, __u32 csum_off,
						       __u32 from, __u32 to, __u64 size)
{
	__u16 check;
	long ret;

	ret = emptcp_ctx_load_bytes(ctx, csum_off, &check, sizeof(check));
	if (ret < 0)
		return ret;
	if (size == 2)
		check = emptcp_csum_replace2_val(check, from, to);
	else if (size == 4)
		check = emptcp_csum_replace4_val(check, from, to);
	else
		return -22;
	return emptcp_ctx_store_bytes(ctx, csum_off, &check, sizeof(check));
}

#endif /* __EMPTCP_CTX_XDP_H */
