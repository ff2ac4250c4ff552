/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/ctx/common.h - what the XDP and TC contexts share: loads and
 * stores of context fields at constant offsets, and the checksum flags.
 *
 * Needs:      vmlinux.h. No hook macro: ctx/xdp.h and ctx/tc.h include it.
 * Guarantees: EMPTCP_CTX_LD32/EMPTCP_CTX_ST32 (a 32-bit context field),
 *             EMPTCP_CTX_LDPTR (a packet pointer field: data, data_end),
 *             EMPTCP_F_* (bpf_l4_csum_replace flags).
 * Limits:     offsets must be compile-time constants.
 */
#ifndef __EMPTCP_CTX_COMMON_H
#define __EMPTCP_CTX_COMMON_H

#include <bpf/bpf_helpers.h>

/* bpf_l4_csum_replace flags (uapi; not all are in vmlinux.h) */
#define EMPTCP_F_PSEUDO_HDR	0x10	/* BPF_F_PSEUDO_HDR */
#define EMPTCP_F_MARK_MANGLED_0	0x20	/* BPF_F_MARK_MANGLED_0 (UDP only) */

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
/* The same load for data/data_end: the verifier makes it a packet pointer. */
#define EMPTCP_CTX_LDPTR(ctx, off) ({					\
	void *__p;							\
	asm volatile("%0 = *(u32 *)(%1 + %2)"				\
		     : "=r"(__p) : "r"(ctx), "i"(off));			\
	__p; })

#endif /* __EMPTCP_CTX_COMMON_H */
