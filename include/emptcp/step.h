/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/step.h - a stage's run: the per-packet context it loads, its
 * description, parameters and counters, a selector's result, and the step
 * to the next stage.
 *
 * Needs:      vmlinux.h; -DEMPTCP_XDP or -DEMPTCP_TC.
 * Guarantees: a stage's work is a function of (ctx, struct emptcp_run *)
 *             that returns EMPTCP_CONTINUE or a verdict; stage.h's macros
 *             wrap it into a program that begins with emptcp_stage_begin()
 *             and ends with emptcp_stage_exit(). Written out by hand:
 *
 *		struct emptcp_run r;
 *		if (emptcp_stage_begin(ctx, &r) < 0)
 *			return EMPTCP_PASS;
 *		selector: if (!emptcp_select_decided(&r))
 *				emptcp_select_combine(&r, hit);
 *			  return emptcp_next(ctx, &r);
 *		actor:    if (emptcp_matched(&r))
 *				... act, emptcp_run_count() the outcome ...
 *			  return emptcp_next(ctx, &r);
 *
 *             Every emptcp_next()/emptcp_select() call site is a full copy
 *             of the step to the next stage (context store, tail call,
 *             miss count): a stage with one exit is about half the size
 *             and measurably faster (docs/design.md, Cost).
 *
 *             Every stage is its own program instance: emptcp writes the
 *             stage's description (emptcp_stage_desc) and slot into .rodata
 *             before loading it. The verifier then knows the next slot as a
 *             constant and the JIT turns the tail call into a direct jump
 *             (no retpoline), and parameters cost no map lookup. A stage has
 *             exactly one successor, st->next, so that every tail call site
 *             sees one constant.
 *             The context lives in skb->cb (TC) or a per-CPU scratch slot
 *             (XDP), never in a map shared by two packets in flight; a
 *             missed tail call is counted and the default verdict returned.
 * Limits:     EMPTCP_MAX_SLOTS stages per hook type (abi.h); the kernel
 *             ends a walk by tail calls after 33 of them.
 */
#ifndef __EMPTCP_STEP_H
#define __EMPTCP_STEP_H

#include <bpf/bpf_helpers.h>
#include "abi.h"
#include "ctx.h"
#include "maps.h"

/*
 * This program instance's stage, written by emptcp into .rodata before load
 * (reads are constants to the verifier; volatile keeps clang from folding
 * the zero initialiser).
 */
const volatile struct emptcp_stage emptcp_stage_desc = {};
const volatile __u32 emptcp_stage_slot = 0;

/* What a stage works with while it runs. */
struct emptcp_run {
	struct emptcp_pctx p;
	const volatile struct emptcp_stage *st;
	__u32 slot;
	/* private: XDP, the per-CPU context slot found by emptcp_stage_begin */
	struct emptcp_pctx *scratch;
	/* private: this stage's counters on this CPU (NULL: not found) */
	struct emptcp_counters *cnt;
#ifdef EMPTCP_WALK
	/* private: this position's (walks ended here, hits) in the walk's block */
	__u64 *pos;
#endif
};

/*
 * Count one packet for @slot's @reason (a map lookup). A running stage
 * counts through emptcp_run_count() instead: its counters were looked up
 * once, by emptcp_stage_begin().
 */
static __always_inline void emptcp_count(__u32 slot, __u32 reason)
{
	__u32 key = slot % EMPTCP_MAX_SLOTS;
	struct emptcp_counters *v;

	if (reason >= EMPTCP_CNT__MAX)
		return;
	v = bpf_map_lookup_elem(&emptcp_stats, &key);
	if (v)
		v->c[reason] += 1;
}

/*
 * The context is moved as four 32-bit words: clang otherwise copies the
 * 16-byte struct field by field (byte loads and shifts, 40 instructions
 * per stage).
 */
_Static_assert(sizeof(struct emptcp_pctx) == 16, "the context moves as 4 words");
static __always_inline void emptcp_pctx_from_words(struct emptcp_pctx *p, __u32 a, __u32 b,
						   __u32 c, __u32 d)
{
	__builtin_memcpy((__u8 *)p, &a, 4);
	__builtin_memcpy((__u8 *)p + 4, &b, 4);
	__builtin_memcpy((__u8 *)p + 8, &c, 4);
	__builtin_memcpy((__u8 *)p + 12, &d, 4);
}

#ifdef EMPTCP_XDP
/* XDP: this CPU's context slot (the lookup is inlined by the verifier). */
static __always_inline struct emptcp_pctx *emptcp_scratch_slot(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&emptcp_scratch, &zero);
}

static __always_inline void emptcp_scratch_store(struct emptcp_pctx *s,
						 const struct emptcp_pctx *p)
{
	__u32 a, b, c, d;

	__builtin_memcpy(&a, (const __u8 *)p, 4);
	__builtin_memcpy(&b, (const __u8 *)p + 4, 4);
	__builtin_memcpy(&c, (const __u8 *)p + 8, 4);
	__builtin_memcpy(&d, (const __u8 *)p + 12, 4);
	((__u32 *)s)[0] = a;
	((__u32 *)s)[1] = b;
	((__u32 *)s)[2] = c;
	((__u32 *)s)[3] = d;
}
#endif

static __always_inline int emptcp_pctx_load(emptcp_ctx *ctx, struct emptcp_pctx *p)
{
#ifdef EMPTCP_XDP
	struct emptcp_pctx *s = emptcp_scratch_slot();

	if (!s)
		return -1;
	emptcp_pctx_from_words(p, ((__u32 *)s)[0], ((__u32 *)s)[1], ((__u32 *)s)[2],
			       ((__u32 *)s)[3]);
#else
	/* cb[0..3], word by word (see EMPTCP_CTX_LD32 in ctx/common.h) */
	emptcp_pctx_from_words(p, EMPTCP_CTX_LD32(ctx, EMPTCP_OFF_CB),
			       EMPTCP_CTX_LD32(ctx, EMPTCP_OFF_CB + 4),
			       EMPTCP_CTX_LD32(ctx, EMPTCP_OFF_CB + 8),
			       EMPTCP_CTX_LD32(ctx, EMPTCP_OFF_CB + 12));
#endif
	return 0;
}

static __always_inline int emptcp_pctx_store(emptcp_ctx *ctx, const struct emptcp_pctx *p)
{
#ifdef EMPTCP_XDP
	struct emptcp_pctx *s = emptcp_scratch_slot();

	if (!s)
		return -1;
	emptcp_scratch_store(s, p);
#else
	__u32 a, b, c, d;

	__builtin_memcpy(&a, (const __u8 *)p, 4);
	__builtin_memcpy(&b, (const __u8 *)p + 4, 4);
	__builtin_memcpy(&c, (const __u8 *)p + 8, 4);
	__builtin_memcpy(&d, (const __u8 *)p + 12, 4);
	EMPTCP_CTX_ST32(ctx, EMPTCP_OFF_CB, a);
	EMPTCP_CTX_ST32(ctx, EMPTCP_OFF_CB + 4, b);
	EMPTCP_CTX_ST32(ctx, EMPTCP_OFF_CB + 8, c);
	EMPTCP_CTX_ST32(ctx, EMPTCP_OFF_CB + 12, d);
#endif
	return 0;
}

/*
 * Jump to the stage at @slot (0 = the chains are done: default verdict).
 * Only returns when the tail call fails, which is counted.
 */
static __always_inline int emptcp_goto(emptcp_ctx *ctx, struct emptcp_pctx *p, __u32 slot)
{
	if (slot == 0 || slot >= EMPTCP_MAX_SLOTS)
		return EMPTCP_PASS;
	p->slot = slot;
	if (emptcp_pctx_store(ctx, p) < 0)
		return EMPTCP_PASS;
	bpf_tail_call(ctx, &emptcp_progs, slot);
	emptcp_count(slot, EMPTCP_CNT_TAIL_MISS);
	return EMPTCP_PASS;
}

/*
 * Count one packet for the running stage's @reason, through the counters
 * emptcp_stage_begin() found. On the wire (cold caches: the CPU did ~10 us
 * of other work since the stage last ran) each inlined lookup cost ~5 ns;
 * a stage that counts its run and a hit now pays one (docs/design.md, Cost).
 */
static __always_inline void emptcp_run_count(const struct emptcp_run *r, __u32 reason)
{
#ifdef EMPTCP_WALK
	/*
	 * In a walk program, a hit goes to the position's pair in the walk's
	 * counter block (walk.bpf.c, which counts runs itself); the other
	 * reasons to the slot.
	 */
	if (reason == EMPTCP_CNT_HIT)
		r->pos[1] += 1;
	else
		emptcp_count(r->slot, reason);
#else
	if (r->cnt && reason < EMPTCP_CNT__MAX)
		r->cnt->c[reason] += 1;
#endif
}

/* Load the context and this stage's description; count the run. */
static __always_inline int emptcp_stage_begin(emptcp_ctx *ctx, struct emptcp_run *r)
{
#ifdef EMPTCP_XDP
	/* one lookup per stage: emptcp_next() stores through the same pointer */
	r->scratch = emptcp_scratch_slot();
	if (!r->scratch)
		return -1;
	emptcp_pctx_from_words(&r->p, ((__u32 *)r->scratch)[0], ((__u32 *)r->scratch)[1],
			       ((__u32 *)r->scratch)[2], ((__u32 *)r->scratch)[3]);
#else
	r->scratch = NULL;
	if (emptcp_pctx_load(ctx, &r->p) < 0)
		return -1;
#endif
	r->st = &emptcp_stage_desc;
	r->slot = emptcp_stage_slot;
	r->p.slot = r->slot;
	if (r->st->flags & EMPTCP_SF_FIRST)
		r->p.match = EMPTCP_PM_TRUE | EMPTCP_PM_FRESH;
	r->cnt = bpf_map_lookup_elem(&emptcp_stats, &r->slot);
	emptcp_run_count(r, EMPTCP_CNT_RUN);
	return 0;
}

/*
 * Copy the first @len bytes (a multiple of 4, at most EMPTCP_PARAM_SIZE) of
 * this stage's parameters into @dst (8-byte aligned), never past @len. The reads stay volatile (see
 * emptcp_stage_desc) and the verifier still knows their values.
 */
static __always_inline void emptcp_param_copy(const struct emptcp_run *r, void *dst, __u32 len)
{
	const volatile __u64 *src = (const volatile __u64 *)r->st->param;
	__u64 *d = dst;

#pragma unroll
	for (int i = 0; i < EMPTCP_PARAM_SIZE / 8; i++) {
		if ((__u32)i * 8 + 8 <= len) {
			d[i] = src[i];
		} else {
			/* a last 4-byte word: never write past dst */
			if ((__u32)i * 8 + 4 <= len)
				((__u32 *)dst)[2 * i] =
					((const volatile __u32 *)r->st->param)[2 * i];
			break;
		}
	}
}

/* Go on with the next stage (or end the chains), carrying the context. */
static __always_inline int emptcp_next(emptcp_ctx *ctx, struct emptcp_run *r)
{
#ifdef EMPTCP_XDP
	__u32 slot = r->st->next;

	if (slot == 0 || slot >= EMPTCP_MAX_SLOTS)
		return EMPTCP_PASS;
	r->p.slot = slot;
	emptcp_scratch_store(r->scratch, &r->p);
	bpf_tail_call(ctx, &emptcp_progs, slot);
	emptcp_count(slot, EMPTCP_CNT_TAIL_MISS);
	return EMPTCP_PASS;
#else
	return emptcp_goto(ctx, &r->p, r->st->next);
#endif
}

/*
 * Selector short cut: true when the result of this selector cannot change
 * the chain's result (AND after a miss, OR after a hit).
 */
static __always_inline int emptcp_select_decided(const struct emptcp_run *r)
{
	if (r->p.match & EMPTCP_PM_FRESH)
		return 0;
	if (r->st->flags & EMPTCP_SF_OR)
		return r->p.match & EMPTCP_PM_TRUE;
	return !(r->p.match & EMPTCP_PM_TRUE);
}

/*
 * Combine a selector's result into the chain's (and count a hit); the
 * stage then goes on with emptcp_next(), from its one exit.
 */
static __always_inline void emptcp_select_combine(struct emptcp_run *r, int hit)
{
	__u8 m = r->p.match;

	hit = !!hit;
	if (r->st->flags & EMPTCP_SF_NOT)
		hit = !hit;
	if (hit)
		emptcp_run_count(r, EMPTCP_CNT_HIT);
	if (m & EMPTCP_PM_FRESH)
		m = hit ? EMPTCP_PM_TRUE : 0;
	else if (r->st->flags & EMPTCP_SF_OR)
		m = (m & EMPTCP_PM_TRUE) | (hit ? EMPTCP_PM_TRUE : 0);
	else
		m = (m & EMPTCP_PM_TRUE) & (hit ? EMPTCP_PM_TRUE : 0);
	r->p.match = m;
}

/* Combine a selector's result into the chain's and go to the next stage. */
static __always_inline int emptcp_select(emptcp_ctx *ctx, struct emptcp_run *r, int hit)
{
	emptcp_select_combine(r, hit);
	return emptcp_next(ctx, r);
}

/*
 * A stage's work is a function of (ctx, run) that returns EMPTCP_CONTINUE
 * (go on with the next stage) or a verdict that ends the walk. Reached by
 * a tail call it runs in its own program (emptcp_stage_exit() takes the
 * step); inside a walk program (EMPTCP_WALK, walk.bpf.c) the walk calls it
 * for each of its stages. Heavy stages are separate BPF functions in a
 * walk, so that the verifier checks each call once per walk position
 * without inlining its body into the loop (docs/design.md, the walk).
 */
#define EMPTCP_CONTINUE		0x7ffe
#ifdef EMPTCP_WALK
#define EMPTCP_STAGE		static __noinline
#define EMPTCP_HEAVY_STAGE	static __noinline
#else
#define EMPTCP_STAGE		static __always_inline
#define EMPTCP_HEAVY_STAGE	static __always_inline
#endif

/*
 * Combine a selector's result into the chain's; the stage function's
 * return: go on with the next stage.
 */
static __always_inline int emptcp_selected(struct emptcp_run *r, int hit)
{
	emptcp_select_combine(r, hit);
	return EMPTCP_CONTINUE;
}

/* The exit of a stage program: a verdict, or the step to the next stage. */
static __always_inline int emptcp_stage_exit(emptcp_ctx *ctx, struct emptcp_run *r, int ret)
{
	if (ret != EMPTCP_CONTINUE)
		return ret;
	return emptcp_next(ctx, r);
}

/* Actor: did the selectors before it pick this packet? */
static __always_inline int emptcp_matched(const struct emptcp_run *r)
{
	return r->p.match & EMPTCP_PM_TRUE;
}

#endif /* __EMPTCP_STEP_H */
