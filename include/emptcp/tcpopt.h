/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/tcpopt.h - bounded walk over TCP options.
 *
 * Needs:      vmlinux.h, <bpf/bpf_helpers.h>; bounded loops (Linux >= 5.3).
 * Guarantees: two ways to read options, which agree on every packet:
 *             - emptcp_tcpopt_walk_buf() walks options already copied into a
 *               stack buffer (struct emptcp_tcpopt_walk): any list, for stages
 *               that parse or rewrite option contents (mptcp.h parsers).
 *             - emptcp_tcpopt_sum_fast() reads the option area in place (packet
 *               memory before data_end, a bounds check before every read)
 *               when it has the shape Linux gives data and ACK segments,
 *               and says so otherwise; it keeps a summary (struct
 *               emptcp_tcpopt_sum: MPTCP subtypes seen, where the first
 *               MP_CAPABLE, MP_JOIN, DSS and ADD_ADDR and the timestamp
 *               and window-scale options are, where the walk stopped),
 *               which emptcp_tcpopt_sum_of_walk() also derives from a full walk.
 *               pkt.h emptcp_opts() uses the one, else the other.
 *             A walk stops at EOL, at the end of the option area, or at the
 *             first malformed option (length 0/1, or running past the
 *             area), reporting it as an error; so is a list longer than
 *             EMPTCP_TCPOPT_MAX options. The first MPTCP option of each
 *             subtype is remembered by offset.
 * Limits:     40 option bytes (a 60-byte header), EMPTCP_TCPOPT_MAX options.
 *             emptcp_tcpopt_walk_buf: the caller must zero the whole buffer before
 *             loading options into it (the walk reads it at variable
 *             offsets).
 */
#ifndef __EMPTCP_TCPOPT_H
#define __EMPTCP_TCPOPT_H

#include <bpf/bpf_helpers.h>

/* Options walked (NOPs count): more makes the packet "malformed". */
#ifndef EMPTCP_TCPOPT_MAX
#define EMPTCP_TCPOPT_MAX 16
#endif

#define EMPTCP_TCPOPT_EOL_KIND		0
#define EMPTCP_TCPOPT_NOP_KIND		1
#define EMPTCP_TCPOPT_MSS_KIND		2
#define EMPTCP_TCPOPT_WSCALE_KIND	3
#define EMPTCP_TCPOPT_SACKOK_KIND	4
#define EMPTCP_TCPOPT_SACK_KIND		5
#define EMPTCP_TCPOPT_TS_KIND		8
#define EMPTCP_TCPOPT_MPTCP_KIND	30

/* MPTCP option subtypes (byte 2, high nibble); the walks remember 0..3 by offset. */
#define EMPTCP_MPTCPOPT_MP_CAPABLE	0
#define EMPTCP_MPTCPOPT_MP_JOIN		1
#define EMPTCP_MPTCPOPT_DSS		2
#define EMPTCP_MPTCPOPT_ADD_ADDR	3
#define EMPTCP_MPTCPOPT_RM_ADDR		4
#define EMPTCP_MPTCPOPT_MP_PRIO		5
#define EMPTCP_MPTCPOPT_MP_FAIL		6
#define EMPTCP_MPTCPOPT_MP_FASTCLOSE	7
#define EMPTCP_MPTCPOPT_MP_TCPRST	8

#define EMPTCP_TCP_MAX_OPT_LEN		40
#define EMPTCP_TCP_MAX_HDR_LEN		60

/* Buffer mask: indexes are masked with it before every stack access. */
#define EMPTCP_TCPOPT_BUF_MASK		63

struct emptcp_tcpopt_walk {
	__u8 b[EMPTCP_TCPOPT_BUF_MASK + 1];	/* option bytes, b[0..len) valid */
	__u32 len;			/* option area length (0..40) */
	__u32 off;			/* walk position */
	__s32 err;			/* 0, or -1 when an option is malformed */
	__u32 mptcp;			/* bit (1 << subtype) per MPTCP subtype seen */
	__u32 kinds;			/* bit (1 << kind) per TCP option kind < 32 */
	__u8 mp_off[16];		/* offset+1 of the first MPTCP option of a subtype */
	__u8 mp_count;			/* MPTCP options seen */
	__u8 ts_off;			/* offset+1 of the timestamp option */
	__u8 ws_off;			/* offset+1 of window scale */
	__u8 pad;
};

/*
 * Hide a value from clang's optimiser, so that the branch-free arithmetic
 * below is not turned back into branches (the BPF backend has no cmov).
 */
#define EMPTCP_TCPOPT_OPAQUE(v) asm volatile("" : "+r"(v))

/*
 * Clamp @v, already checked to lie in [@lo, @hi], to that range again in
 * the register that is used next. A no-op at run time; for the verifier of
 * Linux 6.1, which loses a bound that clang checked on another copy of the
 * value (a spilled one, or "v - lo > hi - lo"), and learns no lower bound
 * from "v != 0" (a helper size that may be 0 is an "invalid zero-sized
 * read"). No control flow leaves the macro: the jumps stay inside the asm.
 */
#define EMPTCP_TCPOPT_CLAMP(v, lo, hi)						\
	({								\
		__u64 __c = (v);					\
		asm volatile("if %0 <= %1 goto +1\n\t%0 = %1\n\t"	\
			     "if %0 >= %2 goto +1\n\t%0 = %2"		\
			     : "+r"(__c) : "i"(hi), "i"(lo));		\
		(v) = __c;						\
	})

/* 1 if @a < @b (both < 2^32), 0 otherwise, without a branch. */
static __always_inline __u64 emptcp_tcpopt_lt(__u64 a, __u64 b)
{
	__u64 r = (a - b) >> 63;

	EMPTCP_TCPOPT_OPAQUE(r);
	return r;
}

/* 1 if @a == @b (both < 2^32), without a branch. */
static __always_inline __u64 emptcp_tcpopt_eq(__u64 a, __u64 b)
{
	__u64 r = ((a ^ b) - 1) >> 63;

	EMPTCP_TCPOPT_OPAQUE(r);
	return r;
}

/*
 * One step of the walk: the option at w->off. Returns 1 to stop.
 * Verifier: the only branches leave the loop; everything else is
 * arithmetic, so each step adds one path instead of doubling them. Stack
 * indexes are masked with EMPTCP_TCPOPT_BUF_MASK and b[] is fully initialised, so
 * reads and writes at a variable offset are allowed.
 */
static __always_inline int emptcp_tcpopt_step(struct emptcp_tcpopt_walk *w)
{
	__u64 off = w->off, len = w->len;
	__u64 kind, l, sub, single, olen, ismp, isnew, bit, cur, x;

	if (off >= len)
		return 1;
	kind = w->b[off & EMPTCP_TCPOPT_BUF_MASK];
	if (kind == EMPTCP_TCPOPT_EOL_KIND)
		return 1;
	l = w->b[(off + 1) & EMPTCP_TCPOPT_BUF_MASK];
	sub = (w->b[(off + 2) & EMPTCP_TCPOPT_BUF_MASK] >> 4) & 15;
	single = emptcp_tcpopt_lt(kind, 2);			/* NOP: one byte */
	olen = l + single * (1 - l);
	/* a real option needs a length byte, length >= 2, inside the area */
	if (!single && (off + 1 >= len || l < 2 || off + l > len)) {
		w->err = -1;
		return 1;
	}
	x = (1 - single) * emptcp_tcpopt_lt(kind, 32);
	w->kinds |= (__u32)(x << (kind & 31));
	ismp = emptcp_tcpopt_eq(kind, EMPTCP_TCPOPT_MPTCP_KIND);
	if (ismp && l < 3) {
		w->err = -1;
		return 1;
	}
	bit = ismp << sub;
	isnew = emptcp_tcpopt_lt(0, bit & ~(__u64)w->mptcp);	/* first of its subtype */
	w->mptcp |= (__u32)bit;
	cur = w->mp_off[sub];
	w->mp_off[sub] = cur + isnew * (off + 1 - cur);
	w->mp_count += ismp;
	x = emptcp_tcpopt_eq(kind, EMPTCP_TCPOPT_TS_KIND) * emptcp_tcpopt_eq(l, 10);
	w->ts_off += x * (off + 1 - w->ts_off);
	x = emptcp_tcpopt_eq(kind, EMPTCP_TCPOPT_WSCALE_KIND) * emptcp_tcpopt_eq(l, 3);
	w->ws_off += x * (off + 1 - w->ws_off);
	w->off = off + olen;
	return 0;
}

/*
 * Walk the @w->len option bytes already in @w->b. Returns @w->err.
 * Not bpf_loop(): its callback is reached by an indirect call (a retpoline
 * on mitigated CPUs), about 20 ns per option.
 */
static __always_inline int emptcp_tcpopt_walk_buf(struct emptcp_tcpopt_walk *w)
{
	w->off = 0;
	w->err = 0;
	w->mptcp = 0;
	w->kinds = 0;
	w->mp_count = 0;
	w->ts_off = 0;
	w->ws_off = 0;
	__builtin_memset(w->mp_off, 0, sizeof(w->mp_off));
#pragma unroll
	for (int i = 0; i < EMPTCP_TCPOPT_MAX; i++) {
		if (emptcp_tcpopt_step(w))
			return w->err;
	}
	/* more options than we walk: treat as malformed */
	if (w->off < w->len && w->b[w->off & EMPTCP_TCPOPT_BUF_MASK] != EMPTCP_TCPOPT_EOL_KIND)
		w->err = -1;
	return w->err;
}

/*
 * What emptcp_tcpopt_sum_fast() / emptcp_tcpopt_sum_of_walk() keep of an option
 * area. Offsets are from the start of the option area, + 1 (0: no such option).
 */
struct emptcp_tcpopt_sum {
	__u32 mptcp;		/* bit (1 << subtype) per MPTCP subtype seen */
	__u8 mpc_off;		/* first MP_CAPABLE */
	__u8 mpj_off;		/* first MP_JOIN */
	__u8 dss_off;		/* first DSS */
	__u8 add_addr_off;	/* first ADD_ADDR */
	__u8 ts_off;		/* timestamp option (length 10; the last one) */
	__u8 ws_off;		/* window scale (length 3; the last one) */
	__u8 end;		/* where the walk stopped: < area length after an EOL */
	__u8 dss_flags;		/* byte 3 of the first DSS (0 if shorter) */
	__u8 add_addr_b2;	/* byte 2 of the first ADD_ADDR (echo bit) */
	__u8 pad[3];
};

/*
 * The summary of options already walked into @w (emptcp_tcpopt_walk_buf() == 0).
 */
static __always_inline void emptcp_tcpopt_sum_of_walk(const struct emptcp_tcpopt_walk *w,
						      struct emptcp_tcpopt_sum *s)
{
	__u8 o;

	__builtin_memset(s, 0, sizeof(*s));
	s->mptcp = w->mptcp;
	s->mpc_off = w->mp_off[EMPTCP_MPTCPOPT_MP_CAPABLE];
	s->mpj_off = w->mp_off[EMPTCP_MPTCPOPT_MP_JOIN];
	s->dss_off = o = w->mp_off[EMPTCP_MPTCPOPT_DSS];
	/* a DSS shorter than 4 bytes has no flags byte */
	if (o && w->b[o & EMPTCP_TCPOPT_BUF_MASK] >= 4)
		s->dss_flags = w->b[(o + 2) & EMPTCP_TCPOPT_BUF_MASK];
	s->add_addr_off = o = w->mp_off[EMPTCP_MPTCPOPT_ADD_ADDR];
	if (o)
		s->add_addr_b2 = w->b[(o + 1) & EMPTCP_TCPOPT_BUF_MASK];
	s->ts_off = w->ts_off;
	s->ws_off = w->ws_off;
	s->end = w->off;
}

/*
 * Summarise the @len option bytes at @opt (a packet pointer) in place when
 * they have the shape Linux gives every segment after the handshake:
 *
 *	[NOP NOP TS(10)] [one MPTCP option] [up to 3 NOPs, or NOPs then EOL]
 *
 * (timestamps on or off; DSS, or another single MPTCP option; plain TCP).
 * Returns 0 with @s filled exactly as emptcp_tcpopt_walk_buf() + emptcp_tcpopt_sum_of_walk()
 * would fill it, or 1 when the area has another shape, is malformed, or is
 * not readable before @data_end: the caller then walks a copy (the general
 * walk decides what is malformed).
 * Verifier: straight-line code, a bounds check before every read; no loop
 * (a branchy loop over options multiplies verifier states: >500k
 * instructions processed for one stage).
 */
static __always_inline int emptcp_tcpopt_sum_fast(const __u8 *opt, const void *data_end, __u32 len,
					   struct emptcp_tcpopt_sum *s)
{
	__u32 pos = 0, l, sub, end = len;
	const __u8 *p;

	__builtin_memset(s, 0, sizeof(*s));
	if (len > EMPTCP_TCP_MAX_OPT_LEN)
		return 1;
	if (len >= 12 && (const void *)(opt + 4) <= data_end && opt[0] == EMPTCP_TCPOPT_NOP_KIND &&
	    opt[1] == EMPTCP_TCPOPT_NOP_KIND && opt[2] == EMPTCP_TCPOPT_TS_KIND && opt[3] == 10) {
		s->ts_off = 2 + 1;
		pos = 12;
	}
	/* one MPTCP option (kind, length, subtype: 3 bytes at least) */
	p = opt + pos;
	if (pos + 3 <= len && (const void *)(p + 3) <= data_end &&
	    p[0] == EMPTCP_TCPOPT_MPTCP_KIND) {
		l = p[1];
		if (l < 3 || pos + l > len)
			return 1;
		sub = p[2] >> 4;
		s->mptcp = 1U << sub;
		if (sub == EMPTCP_MPTCPOPT_DSS) {
			s->dss_off = pos + 1;
			if (l >= 4) {
				if ((const void *)(p + 4) > data_end)
					return 1;
				s->dss_flags = p[3];
			}
		} else if (sub == EMPTCP_MPTCPOPT_ADD_ADDR) {
			s->add_addr_off = pos + 1;
			s->add_addr_b2 = p[2];
		} else if (sub == EMPTCP_MPTCPOPT_MP_CAPABLE) {
			s->mpc_off = pos + 1;
		} else if (sub == EMPTCP_MPTCPOPT_MP_JOIN) {
			s->mpj_off = pos + 1;
		}
		pos += l;
	}
	/* the rest: NOP padding, or NOPs then an EOL (the walk stops there) */
	p = opt + (pos & EMPTCP_TCPOPT_BUF_MASK);
#pragma unroll
	for (int k = 0; k < 3; k++) {
		if (pos + k >= len)
			break;
		if ((const void *)(p + k + 1) > data_end)
			return 1;
		if (p[k] == EMPTCP_TCPOPT_EOL_KIND) {
			end = pos + k;
			break;
		}
		if (p[k] != EMPTCP_TCPOPT_NOP_KIND)
			return 1;
	}
	/* more than 3 bytes left unread: not this shape */
	if (end == len && pos + 3 < len)
		return 1;
	s->end = end;
	return 0;
}

/*
 * The byte at @off of the buffer, masked so the verifier sees a bounded
 * stack index.
 */
static __always_inline __u8 emptcp_tcpopt_byte(const struct emptcp_tcpopt_walk *w, __u32 off)
{
	return w->b[off & EMPTCP_TCPOPT_BUF_MASK];
}

/* Offset of the first MPTCP option of @sub, or -1. */
static __always_inline int emptcp_tcpopt_mptcp_off(const struct emptcp_tcpopt_walk *w, __u8 sub)
{
	__u8 o = w->mp_off[sub & 15];

	return o ? (int)o - 1 : -1;
}

#endif /* __EMPTCP_TCPOPT_H */
