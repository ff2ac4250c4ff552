/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/csum.h - Internet checksum arithmetic (RFC 1071, RFC 1624).
 *
 * Needs:      vmlinux.h, <bpf/bpf_helpers.h>, <bpf/bpf_endian.h>.
 * Guarantees: the one place emptcp does checksum math. Sums are kept in a
 *             64-bit accumulator and folded at the end; incremental updates
 *             follow RFC 1624 eqn. 3, so a field never becomes 0x0000 from
 *             0xffff by accident. Pure functions on values, no packet access.
 * Limits:     csum_replace* work on a *full* checksum (CHECKSUM_NONE
 *             semantics). For skbs whose checksum is completed later
 *             (CHECKSUM_PARTIAL, TC egress) use the ctx.h shim, which calls
 *             bpf_l4_csum_replace() there.
 */
#ifndef __EMPTCP_CSUM_H
#define __EMPTCP_CSUM_H

#include <bpf/bpf_helpers.h>

/* Fold a 64-bit one's complement sum to 16 bits (not complemented). */
static __always_inline __u16 emptcp_csum_fold64(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* One's complement add / subtract of 32-bit partial sums. */
static __always_inline __u32 emptcp_csum_add32(__u32 a, __u32 b)
{
	__u32 r = a + b;

	return r + (r < b);
}

static __always_inline __u32 emptcp_csum_sub32(__u32 a, __u32 b)
{
	return emptcp_csum_add32(a, ~b);
}

/*
 * RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for a 16-bit field that changed
 * from @from to @to (both in network order, as stored in the packet).
 */
static __always_inline __u16 emptcp_csum_replace2_val(__u16 check, __u16 from, __u16 to)
{
	__u64 s = (__u16)~check;

	s += (__u16)~from;
	s += to;
	return (__u16)~emptcp_csum_fold64(s);
}

/* Same for a 32-bit field (e.g. an address or 4 option bytes). */
static __always_inline __u16 emptcp_csum_replace4_val(__u16 check, __u32 from, __u32 to)
{
	__u64 s = (__u16)~check;

	s += (~from) & 0xffff;
	s += (~from) >> 16;
	s += to & 0xffff;
	s += to >> 16;
	return (__u16)~emptcp_csum_fold64(s);
}

/*
 * Apply a pre-computed difference (e.g. from bpf_csum_diff(), a 32-bit
 * one's complement sum of new - old) to a full checksum.
 */
static __always_inline __u16 emptcp_csum_apply_diff(__u16 check, __u32 diff)
{
	__u64 s = (__u16)~check;

	s += diff;
	return (__u16)~emptcp_csum_fold64(s);
}

/* Sum of @n 16-bit words in a buffer, @n bounded by EMPTCP_CSUM_MAX_WORDS. */
#ifndef EMPTCP_CSUM_MAX_WORDS
#define EMPTCP_CSUM_MAX_WORDS 30
#endif
static __always_inline __u64 emptcp_csum_words(const __u16 *w, __u32 n)
{
	__u64 s = 0;

	for (int i = 0; i < EMPTCP_CSUM_MAX_WORDS; i++) {
		if ((__u32)i >= n)
			break;
		s += w[i];
	}
	return s;
}

#endif /* __EMPTCP_CSUM_H */
