/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/ctx.h - one interface over struct xdp_md and struct __sk_buff, so
 * that a selector or actor is written once and built for both hooks.
 *
 * Needs:      vmlinux.h, and exactly one of EMPTCP_XDP or EMPTCP_TC defined
 *             before inclusion (build with -DEMPTCP_XDP / -DEMPTCP_TC); with
 *             neither or both the build stops with an #error naming them.
 * Guarantees: the hook's header, ctx/xdp.h or ctx/tc.h, which both define
 *             the same interface with the same meaning:
 *               emptcp_ctx              the context type (a macro, not a
 *                                       typedef: see ctx/xdp.h)
 *               EMPTCP_SEC              the program section
 *               EMPTCP_PASS, EMPTCP_DROP   the two verdicts emptcp uses
 *               EMPTCP_IS_XDP           1 on XDP, 0 on TC (a constant for `if`)
 *               emptcp_ctx_data(), emptcp_ctx_data_end(), emptcp_ctx_len(),
 *               emptcp_ctx_pull(), emptcp_ctx_load_bytes(),
 *               emptcp_ctx_store_bytes(), emptcp_ctx_l4_csum_replace(),
 *               emptcp_ctx_l3_csum_replace()
 *             and ctx/common.h's EMPTCP_CTX_LD32/ST32 and EMPTCP_F_* flags.
 *             Checksum updates go through bpf_l4_csum_replace()/
 *             bpf_l3_csum_replace() on TC (correct for CHECKSUM_PARTIAL and
 *             CHECKSUM_NONE skbs) and through csum.h arithmetic on XDP (full
 *             checksums). Offsets given to emptcp_ctx_* are from the packet
 *             start.
 * Limits:     see ctx/xdp.h (no multi-buffer XDP; the copy fallback before
 *             Linux 5.18) and ctx/tc.h.
 */
#ifndef __EMPTCP_CTX_H
#define __EMPTCP_CTX_H

#include <bpf/bpf_helpers.h>
#include "csum.h"

#if defined(EMPTCP_XDP) && defined(EMPTCP_TC)
#error "emptcp/ctx.h: both EMPTCP_XDP and EMPTCP_TC are defined; build each object for one hook"
#elif defined(EMPTCP_XDP)
#include "ctx/xdp.h"
#elif defined(EMPTCP_TC)
#include "ctx/tc.h"
#else
#error "emptcp/ctx.h: no hook: build with -DEMPTCP_XDP or -DEMPTCP_TC"
#endif

#endif /* __EMPTCP_CTX_H */
