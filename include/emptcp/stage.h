/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/stage.h - declaring a stage: EMPTCP_SELECTOR, EMPTCP_SELECTOR_FN,
 * EMPTCP_ACTOR, EMPTCP_LICENSE.
 *
 * Needs:      vmlinux.h; -DEMPTCP_XDP or -DEMPTCP_TC.
 * Guarantees: a stage's work is its stage function (step.h); these macros
 *             add what makes it a stage program: outside a walk, the
 *             program `name` (SEC(EMPTCP_SEC): its counters looked up, the
 *             function run, then the verdict or the step to the next stage)
 *             and its record `emptcp_info_<name>` (abi.h struct
 *             emptcp_stage_info: role, ABI version, parameter bytes), which
 *             emptcp checks when it loads a third-party object. Inside a
 *             walk (EMPTCP_WALK) only the function is kept.
 *
 *	EMPTCP_SELECTOR(name, hit, psize)	hit(ctx, r): 1 when the packet
 *						matches; defines name##_stage
 *	EMPTCP_SELECTOR_FN(name, fn, psize)	a selector with its own stage
 *						function fn
 *	EMPTCP_ACTOR(name, fn, psize)		fn(ctx, r): EMPTCP_CONTINUE or
 *						a verdict
 *
 *             psize: the bytes of parameters the stage reads (0 ..
 *             EMPTCP_PARAM_SIZE). The object still needs its license:
 *             EMPTCP_LICENSE("Dual BSD/GPL") or char LICENSE[] SEC("license").
 *             docs/stage-abi.md describes the whole protocol.
 * Limits:     psize past EMPTCP_PARAM_SIZE is a build error.
 */
#ifndef __EMPTCP_STAGE_H
#define __EMPTCP_STAGE_H

#include <bpf/bpf_helpers.h>
#include "abi.h"
#include "step.h"

#ifdef EMPTCP_WALK
#define EMPTCP_STAGE_PROGRAM(name, fn, stage_role, psize)
#else
#define EMPTCP_STAGE_PROGRAM(name, fn, stage_role, psize)			\
	_Static_assert((psize) <= EMPTCP_PARAM_SIZE,				\
		       #name ": more parameters than a stage slot holds");	\
	const volatile struct emptcp_stage_info emptcp_info_##name = {		\
		.abi = EMPTCP_ABI_VERSION,					\
		.role = (stage_role),						\
		.param_size = (psize),						\
	};									\
	SEC(EMPTCP_SEC)								\
	int name(emptcp_ctx *ctx)						\
	{									\
		struct emptcp_run r;						\
										\
		if (emptcp_stage_begin(ctx, &r) < 0)				\
			return EMPTCP_PASS;					\
		return emptcp_stage_exit(ctx, &r, fn(ctx, &r));			\
	}
#endif

#define EMPTCP_SELECTOR(name, hit, psize)					\
	EMPTCP_STAGE int name##_stage(emptcp_ctx *ctx, struct emptcp_run *r)	\
	{									\
		if (!emptcp_select_decided(r))					\
			emptcp_select_combine(r, hit(ctx, r));			\
		return EMPTCP_CONTINUE;						\
	}									\
	EMPTCP_STAGE_PROGRAM(name, name##_stage, EMPTCP_ROLE_SELECTOR, psize)

#define EMPTCP_SELECTOR_FN(name, fn, psize)					\
	EMPTCP_STAGE_PROGRAM(name, fn, EMPTCP_ROLE_SELECTOR, psize)

#define EMPTCP_ACTOR(name, fn, psize)						\
	EMPTCP_STAGE_PROGRAM(name, fn, EMPTCP_ROLE_ACTOR, psize)

#ifndef EMPTCP_WALK
#define EMPTCP_LICENSE(text) char LICENSE[] SEC("license") = text
#else
#define EMPTCP_LICENSE(text)
#endif

#endif /* __EMPTCP_STAGE_H */
