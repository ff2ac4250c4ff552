/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/chain.h - the per-packet policy context and the step from one
 * stage of a chain to the next.
 *
 * Needs:      vmlinux.h, <bpf/bpf_helpers.h>, <bpf/bpf_endian.h>,
 *             emptcp/abi.h, emptcp/csum.h, emptcp/ctx.h, emptcp/tcpopt.h,
 *             emptcp/mptcp.h.
 * Guarantees: the chain maps below, which every stage object declares
 *             identically so that emptcp can share them (reuse_fd) between
 *             objects built separately; this header is the one public
 *             header that defines maps, because those maps ARE the chain's
 *             ABI. A stage is written as:
 *
 *		struct emptcp_run r;
 *		if (emptcp_stage_begin(ctx, &r) < 0)
 *			return EMPTCP_PASS;
 *		selector: if (!emptcp_select_decided(&r))
 *				emptcp_select_combine(&r, hit);
 *			  return emptcp_next(ctx, &r);
 *		actor:    if (emptcp_matched(&r))
 *				... act, emptcp_count() the outcome ...
 *			  return emptcp_next(ctx, &r);
 *
 *             emptcp_select(ctx, &r, hit) (combine, then next) still works,
 *             but every emptcp_next()/emptcp_select() call site is a full
 *             copy of the step to the next stage (context store, tail call,
 *             miss count): a stage with one exit is about half the size
 *             and measurably faster (docs/design.md, Cost). Compute the
 *             result in a helper, then take the one exit.
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
 *
 *             Options: emptcp_opts() fills the context's option summary
 *             once per packet (the first stage that asks pays; later ones
 *             test r->p.subtypes / r->p.mptcp); emptcp_dss() and
 *             emptcp_ts() read the DSS and the timestamps in place.
 *             emptcp_opts_load() still copies and walks the options for
 *             stages that parse or rewrite option contents; call it only
 *             when the summary says the option is there. A stage that
 *             changes the options clears EMPTCP_PF_OPTS.
 * Limits:     EMPTCP_MAX_SLOTS stages per hook type (abi.h).
 */
#ifndef __EMPTCP_CHAIN_H
#define __EMPTCP_CHAIN_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "grow.h"

/* Stage programs, by slot. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, EMPTCP_MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} emptcp_progs SEC(".maps");

/* Stage descriptions by slot, as written into each stage's .rodata (for show). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMPTCP_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct emptcp_stage);
} emptcp_stages SEC(".maps");

/* First slot per attach point; one update swaps a whole chain list. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMPTCP_MAX_ATTACH);
	__type(key, __u32);
	__type(value, struct emptcp_attach);
} emptcp_attach SEC(".maps");

/* Counters by slot (all reasons of a slot in one element), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct emptcp_counters);
} emptcp_stats SEC(".maps");

/* XDP: the per-packet context of the packet this CPU is running. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emptcp_pctx);
} emptcp_scratch SEC(".maps");

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
	/* cb[0..3], word by word (see EMPTCP_CTX_LD32 in ctx.h) */
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
	if (r->cnt && reason < EMPTCP_CNT__MAX)
		r->cnt->c[reason] += 1;
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

/*
 * Declaring a stage. A stage's work is its stage function (above); these
 * macros add what makes it a stage program: outside a walk, the program
 * `name` (SEC(EMPTCP_SEC): its counters looked up, the function run, then
 * the verdict or the step to the next stage) and its record
 * `emptcp_info_<name>` (abi.h struct emptcp_stage_info: role, ABI version,
 * parameter bytes), which emptcp checks when it loads a third-party
 * object. Inside a walk (EMPTCP_WALK) only the function is kept.
 *
 *	EMPTCP_SELECTOR(name, hit, psize)	hit(ctx, r): 1 when the packet
 *						matches; defines name##_stage
 *	EMPTCP_SELECTOR_FN(name, fn, psize)	a selector with its own stage
 *						function fn
 *	EMPTCP_ACTOR(name, fn, psize)		fn(ctx, r): EMPTCP_CONTINUE or
 *						a verdict
 *
 * psize: the bytes of parameters the stage reads (0 .. EMPTCP_PARAM_SIZE).
 * The object still needs its license: char LICENSE[] SEC("license").
 */
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

/* Actor: did the selectors before it pick this packet? */
static __always_inline int emptcp_matched(const struct emptcp_run *r)
{
	return r->p.match & EMPTCP_PM_TRUE;
}

/*
 * Re-bound a packet offset, already checked against EMPTCP_MAX_L4_OFF, in
 * the register used for the pointer arithmetic that follows: clang may have
 * compared another copy of it (e.g. l3_off and l4_off loaded as one 32-bit
 * word), which leaves this one unbounded for the verifier ("offset is
 * outside of the packet": port and subflow on TC; on Linux 6.1 also a
 * check made on a spilled copy, which its verifier does not link to the
 * register). The mask is a no-op on checked values.
 */
_Static_assert(EMPTCP_MAX_L4_OFF <= 0x1ff, "EMPTCP_OFF_BOUND masks with 0x1ff");
#define EMPTCP_OFF_BOUND(v) asm volatile("%0 &= 0x1ff" : "+r"(v))

/* The TCP header of the packet, bounds-checked (NULL if not readable). */
static __always_inline struct tcphdr *emptcp_tcp(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	__u32 off = r->p.l4_off;
	struct tcphdr *th;

	/* bound the variable offset for the verifier */
	if (off > EMPTCP_MAX_L4_OFF)
		return NULL;
	EMPTCP_OFF_BOUND(off);
	th = data + off;
	if ((void *)(th + 1) > data_end)
		return NULL;
	return th;
}

/*
 * Load the TCP options of the packet into @w and walk them.
 * Returns 0, or -1 when the header cannot be read or an option is
 * malformed.
 */
static __always_inline int emptcp_opts_load(emptcp_ctx *ctx, const struct emptcp_run *r,
					    struct emptcp_tcpopt_walk *w, __u32 tcp_hlen)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	__u32 len = tcp_hlen - 20, off = r->p.l4_off;
	__u64 *o;

	w->len = 0;
	if (tcp_hlen < 20 || tcp_hlen > EMPTCP_TCP_MAX_HDR_LEN || off > EMPTCP_MAX_L4_OFF)
		return -1;
	/* Linux 6.1 loses the check above when clang made it on a spilled copy */
	EMPTCP_OFF_BOUND(off);
	/* the walk reads the buffer at variable offsets: all of it initialised */
	__builtin_memset(w->b, 0, sizeof(w->b));
	EMPTCP_OFF_BOUND(off);
	o = data + off + 20;
	if ((void *)(o + 5) <= data_end) {
		/*
		 * Fast path: copy the whole 40-byte option area with direct
		 * loads (a helper call costs more than the walk); bytes past
		 * the header are ignored (w->len).
		 */
		__u64 *b = (__u64 *)w->b;

		b[0] = o[0];
		b[1] = o[1];
		b[2] = o[2];
		b[3] = o[3];
		b[4] = o[4];
	} else if (len) {
		/*
		 * Short packet: exactly the option bytes (non-zero, <= 40).
		 * Verifier: clang knows len <= 40 and drops the check; hide the
		 * value so the bound is checked where the verifier sees it.
		 */
		EMPTCP_TCPOPT_OPAQUE(len);
		len &= EMPTCP_TCPOPT_BUF_MASK;	/* zero-extends: a bounded 64-bit size */
		if (len == 0 || len > EMPTCP_TCP_MAX_OPT_LEN)
			return -1;
		EMPTCP_TCPOPT_CLAMP(len, 1, EMPTCP_TCP_MAX_OPT_LEN);
		if (emptcp_ctx_load_bytes(ctx, off + 20, w->b, len) < 0)
			return -1;
	}
	w->len = len;
	return emptcp_tcpopt_walk_buf(w);
}

/*
 * The packet's addresses (IPv4: first 4 bytes, rest zero) and TCP ports
 * (network order), read directly from the packet. Returns the address
 * length (4 or 16), or -1 when the headers are not readable.
 */
static __always_inline int emptcp_tuple(emptcp_ctx *ctx, const struct emptcp_run *r,
					__u8 saddr[16], __u8 daddr[16], __u16 *sport, __u16 *dport)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	__u32 l3 = r->p.l3_off, l4 = r->p.l4_off;
	__u16 *ports;
	__u8 *a;

	if (l3 > EMPTCP_MAX_L4_OFF || l4 > EMPTCP_MAX_L4_OFF)
		return -1;
	EMPTCP_OFF_BOUND(l3);
	EMPTCP_OFF_BOUND(l4);
	ports = data + l4;
	if ((void *)(ports + 2) > data_end)
		return -1;
	*sport = ports[0];
	*dport = ports[1];
	__builtin_memset(saddr, 0, 16);
	__builtin_memset(daddr, 0, 16);
	if (r->p.flags & EMPTCP_PF_V6) {
		a = data + l3 + 8;	/* saddr, daddr */
		if ((void *)(a + 32) > data_end)
			return -1;
		__builtin_memcpy(saddr, a, 16);
		__builtin_memcpy(daddr, a + 16, 16);
		return 16;
	}
	a = data + l3 + 12;
	if ((void *)(a + 8) > data_end)
		return -1;
	__builtin_memcpy(saddr, a, 4);
	__builtin_memcpy(daddr, a + 4, 4);
	return 4;
}

/* 1 if the 16-byte address @a sorts before @b (network order). */
static __always_inline int emptcp_addr_lt(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	__u64 a0 = bpf_be64_to_cpu(x[0]), b0 = bpf_be64_to_cpu(y[0]);

	if (a0 != b0)
		return a0 < b0;
	return bpf_be64_to_cpu(x[1]) < bpf_be64_to_cpu(y[1]);
}

/*
 * The subflow's key in @k, the same for both directions: the lower
 * (address, port) end first, slot 0. Returns the packet's direction (0:
 * sent from the lower end, 1: from the other), or -1 when the addresses or
 * ports cannot be read.
 */
static __always_inline int emptcp_flow_canon(emptcp_ctx *ctx, const struct emptcp_run *r,
					     struct emptcp_flow_key *k)
{
	__u8 s[16], d[16];
	__u16 sp, dp;
	int dir;

	if (emptcp_tuple(ctx, r, s, d, &sp, &dp) < 0)
		return -1;
	__builtin_memset(k, 0, sizeof(*k));
	dir = emptcp_addr_lt(d, s) || (!emptcp_addr_lt(s, d) && bpf_ntohs(dp) < bpf_ntohs(sp));
	if (dir) {
		__builtin_memcpy(k->saddr, d, 16);
		__builtin_memcpy(k->daddr, s, 16);
		k->sport = dp;
		k->dport = sp;
	} else {
		__builtin_memcpy(k->saddr, s, 16);
		__builtin_memcpy(k->daddr, d, 16);
		k->sport = sp;
		k->dport = dp;
	}
	return dir;
}

/*
 * Network-layer payload length (TCP header + data) of the packet, or -1
 * when the IP length field claims more bytes than the packet has (a
 * truncated or forged length: a stage that grew such a packet would wrap
 * or misplace its lengths and checksums).
 */
static __always_inline int emptcp_l4_len(emptcp_ctx *ctx, const struct emptcp_run *r)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	__u32 off = r->p.l3_off, ip_len;
	__u16 *len;

	if (off > EMPTCP_MAX_L4_OFF)
		return -1;
	EMPTCP_OFF_BOUND(off);
	if (r->p.flags & EMPTCP_PF_V6) {
		len = data + off + 4;
		if ((void *)(len + 1) > data_end)
			return -1;
		ip_len = 40 + (__u32)bpf_ntohs(*len);
		if (off + ip_len > emptcp_ctx_len(ctx))
			return -1;
		return (int)bpf_ntohs(*len) - (int)(r->p.l4_off - r->p.l3_off - 40);
	}
	len = data + off + 2;
	if ((void *)(len + 1) > data_end)
		return -1;
	ip_len = bpf_ntohs(*len);
	if (off + ip_len > emptcp_ctx_len(ctx))
		return -1;
	return (int)bpf_ntohs(*len) - (int)(r->p.l4_off - r->p.l3_off);
}

/*
 * The option summary of the packet, in r->p (abi.h struct emptcp_pctx:
 * packet-type bits in .mptcp, MPTCP subtypes in .subtypes, where the DSS
 * and the timestamp option are, EMPTCP_PF_EOL), with EMPTCP_PF_OPTS set.
 * The first stage that calls it reads the options: in place for the
 * shapes of data and ACK segments (emptcp_tcpopt_sum_fast()), else through a
 * copy and the general walk; later stages of the walk find the summary in
 * the context and pay a flag test. Returns 0, or -1 when the TCP header is not
 * readable, shorter than its IP length says, or an option is malformed
 * (nothing is cached then: the caller counts a parse error).
 */
static __always_inline int emptcp_opts(emptcp_ctx *ctx, struct emptcp_run *r)
{
	void *data, *data_end;
	struct emptcp_tcpopt_sum s;
	struct tcphdr *th;
	__u32 hlen, len, off;
	int l4len;
	__u8 fl, *opt;

	if (r->p.flags & EMPTCP_PF_OPTS)
		return 0;
	th = emptcp_tcp(ctx, r);
	if (!th)
		return -1;
	hlen = th->doff * 4;
	fl = ((__u8 *)th)[13];
	if (hlen < 20 || hlen > EMPTCP_TCP_MAX_HDR_LEN)
		return -1;
	l4len = emptcp_l4_len(ctx, r);
	if (l4len < (int)hlen)
		return -1;
	len = hlen - 20;
	/* emptcp_tcp() checked the offset; bound this copy for the verifier */
	off = r->p.l4_off;
	if (off > EMPTCP_MAX_L4_OFF)
		return -1;
	EMPTCP_OFF_BOUND(off);
	data = emptcp_ctx_data(ctx);
	data_end = emptcp_ctx_data_end(ctx);
	opt = data + off + 20;
	if (emptcp_tcpopt_sum_fast(opt, data_end, len, &s) != 0) {
		/* another shape (SYN, SACK, ADD_ADDR...), or not linear: walk a copy */
		struct emptcp_tcpopt_walk w;

		if (emptcp_opts_load(ctx, r, &w, hlen) < 0)
			return -1;
		emptcp_tcpopt_sum_of_walk(&w, &s);
	}
	r->p.mptcp = emptcp_mptcp_classify_sum(&s, fl, l4len - hlen);
	r->p.subtypes = s.mptcp;
	r->p.dss_off = s.dss_off ? s.dss_off - 1 + 20 : 0;
	r->p.ts_off = s.ts_off ? s.ts_off - 1 + 20 : 0;
	r->p.flags |= EMPTCP_PF_OPTS;
	if (s.end < len)
		r->p.flags |= EMPTCP_PF_EOL;
	else
		r->p.flags &= ~EMPTCP_PF_EOL;
	return 0;
}

/*
 * The packet-type summary (abi.h enum emptcp_ptype bits), computed by the
 * first stage that needs it and kept in the context for the rest.
 * Returns 0 or -1 (unparseable: counted by the caller as a parse error).
 */
static __always_inline int emptcp_ptypes(emptcp_ctx *ctx, struct emptcp_run *r, __u32 *types)
{
	if (emptcp_opts(ctx, r) < 0)
		return -1;
	*types = r->p.mptcp;
	return 0;
}

/*
 * The packet's first DSS, parsed in place (emptcp_mptcp_parse_dss_at()), after
 * emptcp_opts() found one (r->p.dss_off). Returns 0, or -1 when it is
 * malformed or cannot be read. A DSS too close to the end of the linear
 * data for the one bounds check is parsed from a copy instead.
 */
static __always_inline int emptcp_dss(emptcp_ctx *ctx, const struct emptcp_run *r,
				      struct emptcp_mptcp_dss *d)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	struct emptcp_tcpopt_walk w;
	struct tcphdr *th;
	__u32 off = r->p.l4_off, doff = r->p.dss_off;
	__u8 *o;

	if (!(r->p.flags & EMPTCP_PF_OPTS) || doff < 20 || doff >= EMPTCP_TCP_MAX_HDR_LEN ||
	    off > EMPTCP_MAX_L4_OFF)
		return -1;
	EMPTCP_OFF_BOUND(off);
	o = data + off + (doff & 63);
	if ((void *)(o + EMPTCP_TCPOLEN_MPTCP_DSS_MAX) <= data_end)
		return emptcp_mptcp_parse_dss_at(o, d);
	th = emptcp_tcp(ctx, r);
	if (!th)
		return -1;
	if (emptcp_opts_load(ctx, r, &w, th->doff * 4) < 0)
		return -1;
	return emptcp_mptcp_parse_dss(&w, d);
}

/*
 * The timestamp option's TSval and TSecr (host order), read in place after
 * emptcp_opts() found one (r->p.ts_off). Returns 0 or -1.
 */
static __always_inline int emptcp_ts(emptcp_ctx *ctx, const struct emptcp_run *r, __u32 *tsval,
				     __u32 *tsecr)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	__u32 off = r->p.l4_off, toff = r->p.ts_off;
	__u8 *o;

	if (!(r->p.flags & EMPTCP_PF_OPTS) || toff < 20 || toff >= EMPTCP_TCP_MAX_HDR_LEN ||
	    off > EMPTCP_MAX_L4_OFF)
		return -1;
	EMPTCP_OFF_BOUND(off);
	o = data + off + (toff & 63);
	if ((void *)(o + 10) > data_end)
		return -1;
	*tsval = emptcp_mptcp_pkt_be32(o + 2);
	*tsecr = emptcp_mptcp_pkt_be32(o + 6);
	return 0;
}

#endif /* __EMPTCP_CHAIN_H */
