// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * add_subflow - actor: put an ADD_ADDR kept by blk_subflow back, byte for
 * byte (its HMAC stays valid), on the next selected packet of that
 * connection, so that the peer learns the address and opens its subflow.
 *
 * The kept option belongs to the direction it travelled in (announcing end
 * -> peer): it is looked up by the packet's own 4-tuple, so only packets
 * from the announcing end carry it back (put on a packet of the other
 * direction it would announce the address to its owner). Put on the hook
 * that sees those packets: e.g. blk_subflow and add_subflow both on the
 * peer's XDP ingress, or both on the announcer's TC egress.
 *
 * Only established MPTCP segments (with a DSS, no MP_CAPABLE/MP_JOIN, no
 * ADD_ADDR already) get it, in one of two ways:
 *  - beside the options: the option (padded with NOPs to a multiple of 4)
 *    goes right after the fixed TCP header on XDP (any segment) and after
 *    the last option on TC (segments without payload only; see grow.h);
 *  - instead of the DSS, when that does not fit in a 60-byte TCP header
 *    (an IPv6 ADD_ADDR, 28 or 30 bytes, beside Linux's NOP NOP TS and
 *    64-bit data ACK DSS: 20 + 12 + 12 + 28 = 72), as Linux itself sends
 *    ADD_ADDR (net/mptcp/options.c, drop_other_suboptions): on a pure ACK
 *    (no payload, no FIN) whose only MPTCP option is a DSS with a data ACK
 *    and nothing else (no mapping, no DATA_FIN), the option area becomes
 *    the other options, in order, then the ADD_ADDR and NOPs up to a
 *    multiple of 4; the header grows by the difference, on both hooks.
 *    The data ACK dropped is cumulative: the next ACK carries it.
 * Anything else that would pass a 60-byte TCP header, and TC data
 * segments, are counted as no_room and the entry waits for the next one.
 * Once placed, the entry is removed.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

#include "kept.h"

/*
 * Per-CPU scratch for the DSS replacement: the option area as walked and
 * the one written (the stack is short: XDP's grow copies the headers there).
 */
struct as_scratch {
	struct emptcp_tcpopt_walk w;
	__u8 nb[EMPTCP_TCPOPT_BUF_MASK + 1];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct as_scratch);
} as_scratch SEC(".maps");

/* The DSS flags a droppable DSS may have: a data ACK (4 or 8 bytes), nothing else. */
#define AS_DSS_ACK_ONLY	(EMPTCP_MPTCP_DSS_HAS_ACK | EMPTCP_MPTCP_DSS_ACK64)

/* the kept bytes are indexed with a mask */
_Static_assert((EMPTCP_KEPT_MAX & (EMPTCP_KEPT_MAX - 1)) == 0, "EMPTCP_KEPT_MAX is a power of 2");

/* add_subflow_act()'s result for a packet it has nothing to do with: no count */
#define AS_NO_COUNT	EMPTCP_CNT__MAX

/*
 * Put the @len-byte option @kept in the room made after the fixed header
 * (XDP) or after the last option (TC), @n bytes (NOP-padded) in all.
 * Returns the counter to bump, or -1: the packet grew and is inconsistent.
 */
static __always_inline int as_append(emptcp_ctx *ctx, struct emptcp_run *r,
				     const struct emptcp_kept *kept, __u32 hlen, __u32 payload,
				     __u32 n)
{
	__u32 room, word;
	int ret;

	/* TC appends after the last option: behind an EOL nobody reads it */
	if (!EMPTCP_IS_XDP && (r->p.flags & EMPTCP_PF_EOL))
		return EMPTCP_CNT_SKIP;
	ret = emptcp_ctx_grow_tcp_header(ctx, r->p.l4_off, hlen, payload, n, &room);
	if (ret == EMPTCP_E2BIG || ret == EMPTCP_ENOTSUP)
		return EMPTCP_CNT_NO_ROOM;
	if (ret < 0)
		return EMPTCP_CNT_ERROR;
	/*
	 * Grown: a failure from here would leave the packet inconsistent, so
	 * it is dropped (TCP retransmits) rather than passed corrupt.
	 */
#pragma unroll
	for (int i = 0; i < EMPTCP_KEPT_MAX / 4; i++) {
		if ((__u32)i * 4 >= n)
			break;
		/* the map value outlives packet changes (stack is short here) */
		__builtin_memcpy(&word, &kept->opt[i * 4], 4);
		if (emptcp_ctx_store_bytes(ctx, room + i * 4, &word, 4) < 0 ||
		    emptcp_ctx_l4_csum_replace(ctx, r->p.l4_off + 16, 0, word, 4) < 0)
			return -1;
	}
	if (emptcp_update_tcphlen_csum(ctx, r->p.l3_off, r->p.l4_off, r->p.flags & EMPTCP_PF_V6,
				       n) < 0)
		return -1;
	return EMPTCP_CNT_HIT;
}

/*
 * Put the @len-byte option @kept in place of the packet's ack-only DSS (a
 * pure ACK with a @hlen-byte TCP header). Returns the counter to bump, or
 * -1: the packet changed and is inconsistent.
 */
static __always_inline int as_replace_dss(emptcp_ctx *ctx, struct emptcp_run *r,
					  const struct emptcp_kept *kept, __u32 hlen, __u32 len)
{
	struct as_scratch *sc;
	struct emptcp_tcpopt_walk *w;
	__u32 zero = 0, area, o, dl, df, keep, nl, grow, room, i;
	__u64 *nb64;
	__s64 diff;
	int dss, ret;

	sc = bpf_map_lookup_elem(&as_scratch, &zero);
	if (!sc)
		return EMPTCP_CNT_ERROR;
	w = &sc->w;
	if (emptcp_opts_load(ctx, r, w, hlen) < 0)
		return EMPTCP_CNT_PARSE_ERR;
	area = w->len;
	if (area > EMPTCP_TCP_MAX_OPT_LEN || (area & 3))
		return EMPTCP_CNT_PARSE_ERR;
	/* the whole area is rewritten: options behind an EOL are not options */
	if (w->off < area)
		return EMPTCP_CNT_SKIP;
	/* one MPTCP option, a DSS: anything else stays (MP_PRIO, RM_ADDR...) */
	if (w->mptcp != (1U << EMPTCP_MPTCPOPT_DSS) || w->mp_count != 1)
		return EMPTCP_CNT_NO_ROOM;
	dss = emptcp_tcpopt_mptcp_off(w, EMPTCP_MPTCPOPT_DSS);
	if (dss < 0 || dss >= EMPTCP_TCP_MAX_OPT_LEN)
		return EMPTCP_CNT_PARSE_ERR;
	o = dss;
	dl = emptcp_tcpopt_byte(w, o + 1);
	if (dl < EMPTCP_TCPOLEN_MPTCP_DSS_BASE)
		return EMPTCP_CNT_PARSE_ERR;
	df = emptcp_tcpopt_byte(w, o + 3);
	/* a mapping or a DATA_FIN must not be lost */
	if (df & ~AS_DSS_ACK_ONLY)
		return EMPTCP_CNT_NO_ROOM;
	if (dl != emptcp_mptcp_dss_len(df, 0))
		return EMPTCP_CNT_PARSE_ERR;
	/* the walk checked o + dl <= area */
	keep = area - dl;
	nl = (keep + len + 3) & ~3U;
	/* never shorter (no ADD_ADDR is shorter than a DSS; kept for safety) */
	if (nl < area)
		nl = area;
	if (20 + nl > EMPTCP_TCP_MAX_HDR_LEN)
		return EMPTCP_CNT_NO_ROOM;
	grow = nl - area;

	/*
	 * The new area: the bytes before the DSS, the bytes after it, the
	 * ADD_ADDR, NOPs. Verifier: bounded loops with one exit each and
	 * masked indexes into 64-byte buffers (a per-byte choice inside one
	 * loop multiplies the paths it walks).
	 */
	nb64 = (__u64 *)sc->nb;
#pragma unroll
	for (int k = 0; k < (EMPTCP_TCPOPT_BUF_MASK + 1) / 8; k++)
		nb64[k] = 0x0101010101010101ULL;	/* NOPs */
	for (i = 0; i < EMPTCP_TCP_MAX_OPT_LEN; i++) {
		if (i >= o)
			break;
		sc->nb[i & EMPTCP_TCPOPT_BUF_MASK] = w->b[i & EMPTCP_TCPOPT_BUF_MASK];
	}
	for (i = 0; i < EMPTCP_TCP_MAX_OPT_LEN; i++) {
		if (i >= keep - o)
			break;
		sc->nb[(o + i) & EMPTCP_TCPOPT_BUF_MASK] =
			w->b[(o + dl + i) & EMPTCP_TCPOPT_BUF_MASK];
	}
	for (i = 0; i < EMPTCP_KEPT_MAX; i++) {
		if (i >= len)
			break;
		sc->nb[(keep + i) & EMPTCP_TCPOPT_BUF_MASK] = kept->opt[i & (EMPTCP_KEPT_MAX - 1)];
	}
	/* Verifier: sizes it can see are in [4, 40] (no-ops here; see tcpopt.h) */
	if (area < 4 || nl < 4)
		return EMPTCP_CNT_PARSE_ERR;
	EMPTCP_TCPOPT_CLAMP(area, 4, EMPTCP_TCP_MAX_OPT_LEN);
	EMPTCP_TCPOPT_CLAMP(nl, 4, EMPTCP_TCP_MAX_OPT_LEN);
	diff = bpf_csum_diff((__be32 *)w->b, area, (__be32 *)sc->nb, nl, 0);
	if (diff < 0)
		return EMPTCP_CNT_ERROR;

	if (grow) {
		ret = emptcp_ctx_grow_tcp_header(ctx, r->p.l4_off, hlen, 0, grow, &room);
		if (ret == EMPTCP_E2BIG || ret == EMPTCP_ENOTSUP)
			return EMPTCP_CNT_NO_ROOM;
		if (ret < 0)
			return EMPTCP_CNT_ERROR;
	}
	/*
	 * From here a failure would leave the packet inconsistent: dropped.
	 * XDP made the room before the old options and TC after them; either
	 * way the option area, now nl bytes, is written whole.
	 */
	/* Verifier: spilled across the grow */
	EMPTCP_TCPOPT_CLAMP(nl, 4, EMPTCP_TCP_MAX_OPT_LEN);
	if (emptcp_ctx_store_bytes(ctx, r->p.l4_off + 20, sc->nb, nl) < 0)
		return -1;
	if (emptcp_ctx_l4_csum_replace(ctx, r->p.l4_off + 16, 0, (__u32)diff, 0) < 0)
		return -1;
	if (grow &&
	    emptcp_update_tcphlen_csum(ctx, r->p.l3_off, r->p.l4_off, r->p.flags & EMPTCP_PF_V6,
				       grow) < 0)
		return -1;
	return EMPTCP_CNT_HIT;
}

/*
 * The work of add_subflow on a selected packet: the counter to bump, or
 * -1 when the packet must be dropped. *@placed is set when the kept
 * option went out (the entry is then removed).
 */
static __always_inline int add_subflow_act(emptcp_ctx *ctx, struct emptcp_run *r, int *placed)
{
	struct emptcp_flow_key k EMPTCP_ALIGN8;
	struct emptcp_kept *kept;
	struct tcphdr *th;
	__u32 hlen, len, n;
	int l4len, payload, ret;
	__u8 fl;

	/*
	 * A stage of this walk has just written an MPTCP option here (the DSS
	 * blk_subflow put in place of the ADD_ADDR it took out): not a packet
	 * of the connection to put the ADD_ADDR back on.
	 */
	if (r->p.flags & EMPTCP_PF_PM)
		return EMPTCP_CNT_SKIP;
	th = emptcp_tcp(ctx, r);
	if (!th)
		return EMPTCP_CNT_PARSE_ERR;
	fl = ((__u8 *)th)[13];
	hlen = th->doff * 4;
	if ((fl & (EMPTCP_TCP_SYN | EMPTCP_TCP_RST)) || !(fl & EMPTCP_TCP_ACK))
		return AS_NO_COUNT;
	if (emptcp_tuple(ctx, r, k.saddr, k.daddr, &k.sport, &k.dport) < 0)
		return EMPTCP_CNT_PARSE_ERR;
	k.slot = 0;
	k.pad = 0;
	kept = bpf_map_lookup_elem(&emptcp_g_kept, &k);
	if (!kept)
		return AS_NO_COUNT;
	len = kept->len;
	if (len < EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4_ECHO || len > EMPTCP_KEPT_MAX - 2)
		return EMPTCP_CNT_ERROR;
	/* blk_subflow pads the kept bytes with NOPs up to EMPTCP_KEPT_MAX */
	n = (len + 3) & ~3U;

	l4len = emptcp_l4_len(ctx, r);
	if (l4len < (int)hlen || hlen < 20 || hlen > EMPTCP_TCP_MAX_HDR_LEN)
		return EMPTCP_CNT_PARSE_ERR;
	payload = l4len - hlen;
	if (hlen + n > EMPTCP_TCP_MAX_HDR_LEN || (!EMPTCP_IS_XDP && payload)) {
		/* only a pure ACK may lose its DSS for it */
		if (payload || (fl & EMPTCP_TCP_FIN))
			return EMPTCP_CNT_NO_ROOM;
		ret = as_replace_dss(ctx, r, kept, hlen, len);
	} else {
		/* the per-packet option summary (the header length was checked above) */
		if (emptcp_opts(ctx, r) < 0)
			return EMPTCP_CNT_PARSE_ERR;
		if (!(r->p.subtypes & (1U << EMPTCP_MPTCPOPT_DSS)) ||
		    (r->p.subtypes & ((1U << EMPTCP_MPTCPOPT_MP_CAPABLE) |
				      (1U << EMPTCP_MPTCPOPT_MP_JOIN) |
				      (1U << EMPTCP_MPTCPOPT_ADD_ADDR))))
			return EMPTCP_CNT_SKIP;
		ret = as_append(ctx, r, kept, hlen, payload, n);
	}
	if (ret == EMPTCP_CNT_HIT) {
		bpf_map_delete_elem(&emptcp_g_kept, &k);
		*placed = 1;
	}
	return ret;
}

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_HEAVY_STAGE int add_subflow_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	int ret, placed = 0;

	/* one exit to the next stage, whatever the outcome (step.h) */
	if (emptcp_matched(r)) {
		ret = add_subflow_act(ctx, r, &placed);
		if (ret < 0) {
			emptcp_run_count(r, EMPTCP_CNT_ERROR);
			return EMPTCP_DROP;
		}
		if (ret != AS_NO_COUNT)
			emptcp_run_count(r, ret);
		if (placed) {
			/* the option summary no longer describes the packet */
			r->p.flags &= ~EMPTCP_PF_OPTS;
			r->p.flags |= EMPTCP_PF_PM;
		}
	}
	return EMPTCP_CONTINUE;
}

EMPTCP_ACTOR(add_subflow, add_subflow_stage, 0);

EMPTCP_LICENSE("Dual BSD/GPL");
