/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/ctx.h - one shim over struct xdp_md and struct __sk_buff, so that a
 * selector or actor is written once and built for both hooks.
 *
 * Needs:      vmlinux.h, <bpf/bpf_helpers.h>, <bpf/bpf_endian.h>,
 *             emptcp/csum.h, and exactly one of EMPTCP_XDP or EMPTCP_TC
 *             defined before inclusion (build with -DEMPTCP_XDP / -DEMPTCP_TC).
 * Guarantees: emptcp_ctx, EMPTCP_SEC, EMPTCP_PASS/EMPTCP_DROP and ctx_*
 *             helpers with the same meaning on both hooks. Checksum
 *             updates go through bpf_l4_csum_replace()/bpf_l3_csum_replace()
 *             on TC (correct for CHECKSUM_PARTIAL and CHECKSUM_NONE skbs)
 *             and through csum.h arithmetic on XDP (full checksums).
 * Limits:     XDP frags (multi-buffer) are not handled: headers must sit in
 *             the first buffer. ctx_* offsets are from the packet start.
 *             Before Linux 5.18 (no bpf_xdp_load_bytes/store_bytes) XDP
 *             copies by direct packet access, at most EMPTCP_XDP_COPY_MAX
 *             bytes at a time.
 */
#ifndef __EMPTCP_CTX_H
#define __EMPTCP_CTX_H

#include <bpf/bpf_helpers.h>
#include "csum.h"

#if defined(EMPTCP_XDP) == defined(EMPTCP_TC)
#error "define exactly one of EMPTCP_XDP and EMPTCP_TC"
#endif

/* bpf_l4_csum_replace flags (uapi; not all are in vmlinux.h) */
#define EMPTCP_F_PSEUDO_HDR	0x10	/* BPF_F_PSEUDO_HDR */
#define EMPTCP_F_MARK_MANGLED_0	0x20	/* BPF_F_MARK_MANGLED_0 (UDP only) */

#ifdef EMPTCP_XDP
/* Not a typedef: vmlinux.h's preserve_access_index breaks CO-RE on typedefs. */
#define emptcp_ctx	struct xdp_md
#define EMPTCP_SEC	"xdp"
#define EMPTCP_PASS	2	/* XDP_PASS */
#define EMPTCP_DROP	1	/* XDP_DROP */
#define EMPTCP_IS_XDP	1
#else
#define emptcp_ctx	struct __sk_buff
#define EMPTCP_SEC	"tc"
/*
 * TC_ACT_UNSPEC / TCX_NEXT: let the next program (or filter) decide.
 * emptcp never ends processing for programs it does not own.
 */
#define EMPTCP_PASS	(-1)
#define EMPTCP_DROP	2	/* TC_ACT_SHOT */
#define EMPTCP_IS_XDP	0
#endif

/*
 * Context fields are read with a plain 32-bit load at a constant offset.
 * Verifier: vmlinux.h marks __sk_buff/xdp_md preserve_access_index, and
 * clang then may compute "ctx + offset" into a register before loading,
 * which the verifier rejects ("dereference of modified ctx ptr"). The uapi
 * offsets are stable, so we load them directly.
 */
#define EMPTCP_CTX_LD32(ctx, off) ({					\
	__u32 __v;							\
	asm volatile("%0 = *(u32 *)(%1 + %2)"				\
		     : "=r"(__v) : "r"(ctx), "i"(off));			\
	__v; })
#define EMPTCP_CTX_ST32(ctx, off, val) ({				\
	asm volatile("*(u32 *)(%0 + %1) = %2"				\
		     : : "r"(ctx), "i"(off), "r"((__u32)(val)) : "memory");	\
	0; })

#ifdef EMPTCP_XDP
#define EMPTCP_OFF_DATA		0	/* struct xdp_md .data */
#define EMPTCP_OFF_DATA_END	4	/* .data_end */
#else
#define EMPTCP_OFF_LEN		0	/* struct __sk_buff .len */
#define EMPTCP_OFF_IFINDEX	40	/* .ifindex */
#define EMPTCP_OFF_CB		48	/* .cb[0] */
#define EMPTCP_OFF_DATA		76	/* .data */
#define EMPTCP_OFF_DATA_END	80	/* .data_end */
#endif

static __always_inline void *emptcp_ctx_data(emptcp_ctx *ctx)
{
	void *p;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(p) : "r"(ctx), "i"(EMPTCP_OFF_DATA));
	return p;
}

static __always_inline void *emptcp_ctx_data_end(emptcp_ctx *ctx)
{
	void *p;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(p) : "r"(ctx), "i"(EMPTCP_OFF_DATA_END));
	return p;
}

/* Total packet length (all buffers / the whole skb). */
static __always_inline __u32 emptcp_ctx_len(emptcp_ctx *ctx)
{
#ifdef EMPTCP_XDP
	return emptcp_ctx_data_end(ctx) - emptcp_ctx_data(ctx);
#else
	return EMPTCP_CTX_LD32(ctx, EMPTCP_OFF_LEN);
#endif
}

/* Make at least @len bytes directly readable (TC: pull from frags). */
static __always_inline int emptcp_ctx_pull(emptcp_ctx *ctx, __u32 len)
{
#ifdef EMPTCP_XDP
	if (emptcp_ctx_data(ctx) + len > emptcp_ctx_data_end(ctx))
		return -1;
	return 0;
#else
	if (emptcp_ctx_data(ctx) + len <= emptcp_ctx_data_end(ctx))
		return 0;
	if (len > emptcp_ctx_len(ctx))
		len = emptcp_ctx_len(ctx);
	return bpf_skb_pull_data(ctx, len);
#endif
}

#ifdef EMPTCP_XDP
#include <bpf/bpf_core_read.h>

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
#endif

static __always_inline long emptcp_ctx_load_bytes(emptcp_ctx *ctx, __u32 off, void *buf, __u32 len)
{
#ifdef EMPTCP_XDP
	if (!EMPTCP_XDP_HAS_LOAD_BYTES)
		return emptcp_xdp_copy_direct(ctx, off, buf, len, 0);
	return bpf_xdp_load_bytes(ctx, off, buf, len);
#else
	return bpf_skb_load_bytes(ctx, off, buf, len);
#endif
}

static __always_inline long emptcp_ctx_store_bytes(emptcp_ctx *ctx, __u32 off, const void *buf,
						   __u32 len)
{
#ifdef EMPTCP_XDP
	if (!EMPTCP_XDP_HAS_LOAD_BYTES)
		return emptcp_xdp_copy_direct(ctx, off, (__u8 *)buf, len, 1);
	return bpf_xdp_store_bytes(ctx, off, (void *)buf, len);
#else
	return bpf_skb_store_bytes(ctx, off, buf, len, 0);
#endif
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
#ifdef EMPTCP_XDP
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
#else
	return bpf_l4_csum_replace(ctx, csum_off, from, to, flags);
#endif
}

/* Same for the IPv4 header checksum (size 2 or 4). */
static __always_inline long emptcp_ctx_l3_csum_replace(emptcp_ctx *ctx, __u32 csum_off,
						__u32 from, __u32 to, __u64 size)
{
#ifdef EMPTCP_XDP
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
#else
	return bpf_l3_csum_replace(ctx, csum_off, from, to, size);
#endif
}

#endif /* __EMPTCP_CTX_H */
