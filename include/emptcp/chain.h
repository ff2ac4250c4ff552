/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/chain.h - everything a chain stage uses besides the protocol
 * parsers: the chain's maps (maps.h), the run and the step to the next
 * stage (step.h), the stage declaration macros (stage.h) and packet access
 * (pkt.h), with parse.h and grow.h. docs/stage-abi.md describes the
 * protocol between emptcp and a stage.
 *
 * Needs:      vmlinux.h; -DEMPTCP_XDP or -DEMPTCP_TC.
 * Guarantees: what those headers guarantee. A stage is written as:
 *
 *		static __always_inline int my_hit(emptcp_ctx *ctx,
 *						  const struct emptcp_run *r)
 *		{
 *			... 1 when the packet matches ...
 *		}
 *		EMPTCP_SELECTOR(my_selector, my_hit, 0);
 *
 *		static __always_inline int my_act(emptcp_ctx *ctx,
 *						  struct emptcp_run *r)
 *		{
 *			if (!emptcp_matched(r))
 *				return EMPTCP_CONTINUE;
 *			... act, emptcp_run_count() the outcome ...
 *			return EMPTCP_CONTINUE;	(or a verdict)
 *		}
 *		EMPTCP_ACTOR(my_actor, my_act, 0);
 *		EMPTCP_LICENSE("Dual BSD/GPL");
 *
 * Limits:     see each header.
 */
#ifndef __EMPTCP_CHAIN_H
#define __EMPTCP_CHAIN_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "grow.h"
#include "maps.h"
#include "step.h"
#include "stage.h"
#include "pkt.h"

#endif /* __EMPTCP_CHAIN_H */
