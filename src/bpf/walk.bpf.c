// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * walk - every chain of one attach point as one program, attached to the
 * point's device and hook in place of the entry program: it parses the
 * packet (begin.h) and runs the point's stages in order, each the function of its built-in stage
 * (compiled in with EMPTCP_WALK), with its description and counter slot
 * read from .rodata. emptcp writes the whole layout there before loading:
 * the verifier sees each stage's kind and parameters as constants, keeps
 * one arm of the switch per position and prunes the rest, so a walk costs
 * one program whatever its length, and nothing limits it but
 * EMPTCP_MAX_WALK and the verifier's budget (checked when it loads).
 * A point with a third-party stage keeps the tail-call walk (step.h).
 */
#define EMPTCP_WALK
#include "vmlinux.h"
#include <emptcp/emptcp.h>
#include <emptcp/tables.h>

#include "begin.h"

#include "ip_pair.bpf.c"
#include "packet_type.bpf.c"
#include "subflow.bpf.c"
#include "prefix.bpf.c"
#include "port.bpf.c"
#include "sequence.bpf.c"
#include "lookup.bpf.c"
#include "set_backup.bpf.c"
#include "set_mark.bpf.c"
#include "redirect.bpf.c"
#include "observe.bpf.c"
#include "record.bpf.c"
#include "blk_subflow.bpf.c"
#include "add_subflow.bpf.c"
#include "rate_limit.bpf.c"
#include "verdict.bpf.c"

/* The layout, written by emptcp before load (abi.h EMPTCP_MAX_WALK). */
const volatile __u32 emptcp_walk_len = 0;
const volatile struct emptcp_stage emptcp_walk[EMPTCP_MAX_WALK] = {};
/* Counter slot of each stage (emptcp_stats, show). */
const volatile __u16 emptcp_walk_slot[EMPTCP_MAX_WALK] = {};
/* 1: a stage compares the packet's addresses inline (ip_pair, src, dst). */
const volatile __u32 emptcp_walk_addrs = 0;
/* 1: a stage compares the packet's TCP ports inline (port). */
const volatile __u32 emptcp_walk_ports = 0;

/*
 * The walk positions at which a table lookup runs inline (a set's:
 * lookup_walk(), a mark's map: set_mark_walk()); later ones call their
 * stage. Each inline lookup is ~330 instructions (every layout's probe:
 * clang does not know the position's), and the unrolled walk must stay
 * within the 32,767 instructions a BPF jump reaches.
 */
#define WALK_INLINE_LOOKUPS 8

/*
 * The walk's counter block: the packets it saw and, for each position, the
 * walks that ended there and its hits, side by side in one per-CPU element
 * looked up once per packet. A position's run is the walks that ended at
 * it or later (walkcount.rs), so a packet counts one end, not a run per
 * position; a hit is one add at a constant offset. The rare reasons
 * (skip, parse_err, no_room, ...) stay in the slots' emptcp_stats
 * elements. The map is this walk program's own (no emptcp_ prefix: not
 * shared, not pinned); emptcp reads it through the program
 * (src/runtime/walkcount.rs) and adds it into the slots when the walk
 * is replaced, so that show and stats count per stage across walks.
 */
_Static_assert(sizeof(struct emptcp_tab_scratch) == 48, "walkcount.rs TAB_WORDS; 32 for addresses");
struct walk_counts {
	__u64 seen;
	__u64 pad;
	__u64 pos[EMPTCP_MAX_WALK][2];	/* ended here, hit */
	/* then the walk's scratch (walk_scratch()) */
};

/*
 * Sized by emptcp to the walk's length before load (walkcount.rs
 * value_size): 16 bytes, 16 a position and 48 for the lookups, not 8 KiB
 * per CPU for every walk. No BTF value type, so that the size can change.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct walk_counts));
} walk_counts SEC(".maps");

/*
 * After a stage that parses options or keeps state (@ret its result): it
 * leaves the packet's context in many shapes (which options it found,
 * which it cached), and the verifier would verify every later stage once
 * per shape, a product that passes its million instructions with three or
 * four such stages. Through the per-packet context and back, the shapes
 * become one, as between two tail-called stages. The other stages (ip_pair,
 * subflow, prefix, port, sequence, lookup, set_mark, redirect, verdict)
 * leave it in one shape and go on directly: each arm of walk_stage() knows
 * which it is, so a position reads its kind once.
 */
static __always_inline int walk_heavy(emptcp_ctx *ctx, struct emptcp_run *r, int ret)
{
	if (ret != EMPTCP_CONTINUE)
		return ret;
	if (emptcp_pctx_store(ctx, &r->p) < 0 || emptcp_pctx_load(ctx, &r->p) < 0)
		return EMPTCP_PASS;
	return EMPTCP_CONTINUE;
}

/*
 * The walk's scratch, 48 bytes after its positions' counters (so that a
 * short walk's counters share the cache line of `seen`), not counters:
 * the inline lookups' key and value (emptcp_walk_tab), or the packet's
 * addresses (the loop walk). Off the stack: the lookups' spills there
 * pushed a walk with set_backup (a 400-byte frame) past the 512 bytes; and
 * the loop verifies its positions in 44k instructions with the addresses
 * here, 77k with them on its stack (100 chains of ip_pair + set_mark, tc).
 * Computed where it is used: pointers that clang hoisted into the walk's
 * prologue took stack slots every walk touches.
 */
static __always_inline void *walk_scratch(struct walk_counts *wc)
{
	asm volatile("" : "+r"(wc));
	return &wc->pos[emptcp_walk_len];
}

/*
 * The table lookup of the stage at this position, inline: a set's
 * selector or a mark's map (emptcp_tab_lookup_inline(): the key into @s,
 * one probe of its own slot). One copy for both kinds, so that a
 * position holds its code (every layout's probe) once. Returns what it
 * found, or EMPTCP_TAB_MORE when the stage looks up nothing here, or need
 * not (the selectors before decided, the chain did not match, XDP has no
 * mark): the stage function then does what is left.
 */
static __always_inline int walk_tab_inline(emptcp_ctx *ctx, struct emptcp_run *r,
					   struct emptcp_tab_scratch *s)
{
	struct emptcp_tab_ref ref;

	switch (r->st->kind) {
	case EMPTCP_KIND_LOOKUP:
		if (emptcp_select_decided(r))
			return EMPTCP_TAB_MORE;
		ref = lookup_ref(r);
		break;
	case EMPTCP_KIND_SET_MARK:
		ref = emptcp_param_tab(r);
		if (EMPTCP_IS_XDP || ref.id == 0 || !emptcp_matched(r))
			return EMPTCP_TAB_MORE;
		break;
	default:
		return EMPTCP_TAB_MORE;
	}
	return emptcp_tab_lookup_inline(ctx, r, ref, s);
}

/* One stage of the walk: its kind is a constant to the verifier. */
static __always_inline int walk_stage(emptcp_ctx *ctx, struct emptcp_run *r, const __u32 *ad,
				      const __u16 *pw, struct walk_counts *wc, int inl)
{
	int found = inl ? walk_tab_inline(ctx, r, walk_scratch(wc)) : EMPTCP_TAB_MORE;

	switch (r->st->kind) {
	case EMPTCP_KIND_IP_PAIR:
		return ip_pair_walk(ctx, r, ad);
	case EMPTCP_KIND_PACKET_TYPE:
		return walk_heavy(ctx, r, packet_type_stage(ctx, r));
	case EMPTCP_KIND_SET_BACKUP:
		return walk_heavy(ctx, r, set_backup_stage(ctx, r));
	case EMPTCP_KIND_VERDICT:
		return verdict_stage(ctx, r);
	case EMPTCP_KIND_SUBFLOW:
		return subflow_stage(ctx, r);
	case EMPTCP_KIND_PREFIX:
		return prefix_walk(ctx, r, ad);
	case EMPTCP_KIND_PORT:
		return port_walk(ctx, r, pw);
	case EMPTCP_KIND_SET_MARK:
		return set_mark_walk(ctx, r, walk_scratch(wc), found);
	case EMPTCP_KIND_REDIRECT:
		return redirect_stage(ctx, r);
	case EMPTCP_KIND_OBSERVE:	/* get_connect and get_subflow */
		return walk_heavy(ctx, r, observe_stage(ctx, r));
	case EMPTCP_KIND_RECORD:
		return walk_heavy(ctx, r, record_stage(ctx, r));
	case EMPTCP_KIND_SEQUENCE:	/* keeps no option summary */
		return sequence_stage(ctx, r);
	case EMPTCP_KIND_BLK_SUBFLOW:
		return walk_heavy(ctx, r, blk_subflow_stage(ctx, r));
	case EMPTCP_KIND_ADD_SUBFLOW:
		return walk_heavy(ctx, r, add_subflow_stage(ctx, r));
	case EMPTCP_KIND_RATE_LIMIT:
		return walk_heavy(ctx, r, rate_limit_stage(ctx, r));
	case EMPTCP_KIND_LOOKUP:
		return lookup_walk(ctx, r, found);
	}
	/* a kind this walk does not know: emptcp never writes one */
	emptcp_run_count(r, EMPTCP_CNT_ERROR);
	return EMPTCP_CONTINUE;
}

/*
 * Position i of the walk: EMPTCP_CONTINUE or the verdict that ends it.
 * Its hits go to @wc, the walk's block, at a constant offset (its runs
 * follow from where walks end): no map lookup per position (per further
 * ip_pair hit in BPF_PROG_TEST_RUN, 5.4 ns with a lookup of the slot's
 * element, docs/design.md).
 */
static __always_inline int walk_at(emptcp_ctx *ctx, struct emptcp_run *r, const __u32 *ad,
				   const __u16 *pw, struct walk_counts *wc, __u32 i, int inl)
{
	r->st = &emptcp_walk[i];
	r->slot = emptcp_walk_slot[i];
	r->p.slot = r->slot;
	if (r->st->flags & EMPTCP_SF_FIRST)
		r->p.match = EMPTCP_PM_TRUE | EMPTCP_PM_FRESH;
	r->pos = wc->pos[i];
	return walk_stage(ctx, r, ad, pw, wc, inl && i < WALK_INLINE_LOOKUPS);
}

/*
 * The packet's addresses, as in the packet, in @ad, for the selectors
 * that compare them: IPv4 source and destination in ad[0] and ad[1], IPv6
 * (only with @v6) in ad[0..3] and ad[4..7]. Returns @ad, or NULL when
 * they cannot be read (emptcp_begin() has ruled that out) or the packet is
 * IPv6 and @v6 is 0: the selectors then call their stage function.
 */
static __always_inline const __u32 *walk_addrs(emptcp_ctx *ctx, const struct emptcp_run *r,
					       __u32 *ad, int v6)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	__u32 off = r->p.l3_off;

	if (off > EMPTCP_MAX_L4_OFF)
		return NULL;
	EMPTCP_OFF_BOUND(off);
	if (r->p.flags & EMPTCP_PF_V6) {
		__u64 *ip6 = data + off + 8, *a = (__u64 *)ad;

		if (!v6 || (void *)(ip6 + 4) > data_end)
			return NULL;
		a[0] = ip6[0];
		a[1] = ip6[1];
		a[2] = ip6[2];
		a[3] = ip6[3];
	} else {
		__u32 *ip = data + off + 12;

		if ((void *)(ip + 2) > data_end)
			return NULL;
		ad[0] = ip[0];
		ad[1] = ip[1];
	}
	return ad;
}

/*
 * The packet's TCP ports (source, destination, network order) in @pw, for
 * the port selectors; returns @pw, or NULL when they cannot be read
 * (ruled out by emptcp_begin()).
 */
static __always_inline const __u16 *walk_ports(emptcp_ctx *ctx, const struct emptcp_run *r,
					       __u16 *pw)
{
	struct tcphdr *th = emptcp_tcp(ctx, r);

	if (!th)
		return NULL;
	pw[0] = th->source;
	pw[1] = th->dest;
	return pw;
}

static __always_inline int walk_begin(emptcp_ctx *ctx, struct emptcp_run *r)
{
	if (emptcp_begin(ctx, &r->p) < 0)
		return -1;
#ifdef EMPTCP_XDP
	r->scratch = emptcp_scratch_slot();
#endif
	return 0;
}

/*
 * A walk program: positions 0 .. emptcp_walk_len - 1 (at most @max), with
 * the clang loop pragma @unroll; @inl: lookups run inline at the first
 * positions (in a loop, the one copy of the code would verify every
 * layout's probe at every position); @all: the selectors compare IPv6
 * addresses inline too, and a packet whose addresses or ports cannot be
 * read (which emptcp_begin() rules out) is passed, so that no position
 * has a path through a stage function (see below).
 */
#define EMPTCP_WALK_PROGRAM(name, max, unroll, inl, all)		\
	SEC(EMPTCP_SEC)							\
	int name(emptcp_ctx *ctx)					\
	{								\
		struct emptcp_run r = {};				\
		struct walk_counts *wc;					\
		const __u32 *ad;					\
		const __u16 *pw;					\
		__u32 addrs[2];						\
		__u16 ports[2];						\
		__u32 zero = 0;						\
		__u32 i;						\
		int ret;						\
									\
		/* never NULL: one element, key 0 */			\
		wc = bpf_map_lookup_elem(&walk_counts, &zero);		\
		if (!wc)						\
			return EMPTCP_PASS;				\
		wc->seen += 1;						\
		if (walk_begin(ctx, &r) < 0)				\
			return EMPTCP_PASS;				\
		ad = !emptcp_walk_addrs ? NULL :			\
		     walk_addrs(ctx, &r, (all) ? walk_scratch(wc) : addrs, all); \
		pw = emptcp_walk_ports ? walk_ports(ctx, &r, ports) : NULL; \
		if ((all) && ((emptcp_walk_addrs && !ad) || (emptcp_walk_ports && !pw))) \
			return EMPTCP_PASS;				\
		_Pragma(unroll)						\
		for (i = 0; i < (max); i++) {				\
			if (i >= emptcp_walk_len)			\
				break;					\
			ret = walk_at(ctx, &r, ad, pw, wc, i, inl);		\
			if (ret != EMPTCP_CONTINUE) {			\
				wc->pos[i][0] += 1;			\
				return ret;				\
			}						\
		}							\
		if (emptcp_walk_len > 0 && emptcp_walk_len <= (max))	\
			wc->pos[emptcp_walk_len - 1][0] += 1;		\
		return EMPTCP_PASS;					\
	}

/*
 * Any walk up to EMPTCP_MAX_WALK of the light stages: a loop, not
 * unrolled, so the verifier walks each position once. Stages that parse
 * options or keep state cost the verifier ~5x more per position than as
 * programs of their own (in a loop or unrolled alike), so they run only
 * in the short walk below, where their count is bounded. In the loop,
 * each path out of a stage function goes on as a state of its own (the
 * log shows states that differ only in a dead register walking the rest
 * of the loop again), so an IPv6 packet's call of ip_pair_stage() at each
 * ip_pair cost every later position: @all = 1 took a tc walk of 100
 * chains (ip_pair + set_mark) from 127k instructions to 44k, docs/design.md.
 * Unrolled, the calls verify cheaper than the inline IPv6 compare (16
 * positions: 11k against 30k), so the short walks keep them.
 */
EMPTCP_WALK_PROGRAM(emptcp_walk_prog, EMPTCP_MAX_WALK, "clang loop unroll(disable)", 0, 1)

/*
 * A walk of at most EMPTCP_MAX_SHORT_WALK stages, unrolled by clang: no
 * back edge; positions past emptcp_walk_len are dead code to the
 * verifier. Every built-in stage runs here.
 */
EMPTCP_WALK_PROGRAM(emptcp_walk_short, EMPTCP_MAX_SHORT_WALK, "clang loop unroll(full)", 0, 0)

/*
 * emptcp_walk_short with a set's lookup and a mark's map looked up inline
 * at the first WALK_INLINE_LOOKUPS positions (lookup_walk(),
 * set_mark_walk()), for walks of light stages only: that code's spills
 * take stack slots every walk touches, which do not fit the 512 bytes
 * beside a heavy stage's frame (set_backup's 400). emptcp picks it
 * (store.rs Walk::ShortTab).
 */
EMPTCP_WALK_PROGRAM(emptcp_walk_tab, EMPTCP_MAX_SHORT_WALK, "clang loop unroll(full)", 1, 0)

char LICENSE[] SEC("license") = "Dual BSD/GPL";
