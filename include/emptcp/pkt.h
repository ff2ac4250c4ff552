/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/pkt.h - packet access for a running stage: the TCP header the
 * entry program found, the addresses and ports, the lengths, the option
 * summary, and the DSS and timestamps read in place.
 *
 * Needs:      vmlinux.h; -DEMPTCP_XDP or -DEMPTCP_TC.
 * Guarantees: every function takes (ctx, run), finds the headers through
 *             the context's offsets (struct emptcp_pctx l3_off/l4_off),
 *             bounds-checks before every read and returns -1 (or NULL)
 *             when the packet is too short; offsets are re-bounded for the
 *             verifier where clang may have checked another copy
 *             (EMPTCP_OFF_BOUND).
 *
 *             Options: emptcp_opts() fills the context's option summary
 *             once per packet (the first stage that asks pays; later ones
 *             test r->p.subtypes / r->p.mptcp); emptcp_dss() and
 *             emptcp_ts() read the DSS and the timestamps in place.
 *             emptcp_opts_load() still copies and walks the options for
 *             stages that parse or rewrite option contents; call it only
 *             when the summary says the option is there. A stage that
 *             changes the options clears EMPTCP_PF_OPTS.
 * Limits:     headers within EMPTCP_MAX_L4_OFF bytes of the packet start
 *             (parse.h); the first DSS of a segment.
 */
#ifndef __EMPTCP_PKT_H
#define __EMPTCP_PKT_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "abi.h"
#include "ctx.h"
#include "parse.h"
#include "tcpopt.h"
#include "mptcp.h"
#include "step.h"

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
 * A stack buffer read or written a word at a time (emptcp_tuple(), a
 * struct emptcp_flow_key): the verifier refuses unaligned stack access.
 */
#define EMPTCP_ALIGN8 __attribute__((aligned(8)))

/* The 8-byte word whose first 4 bytes in memory are @a, the rest zero. */
static __always_inline __u64 emptcp_addr4_word(__u32 a)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return a;
#else
	return (__u64)a << 32;
#endif
}

/*
 * The packet's addresses (IPv4: first 4 bytes, rest zero) and TCP ports
 * (network order), read directly from the packet a word at a time: @saddr
 * and @daddr must be 8-byte aligned (EMPTCP_ALIGN8). Returns the address
 * length (4 or 16), or -1 when the headers are not readable.
 */
static __always_inline int emptcp_tuple(emptcp_ctx *ctx, const struct emptcp_run *r,
					__u8 saddr[16], __u8 daddr[16], __u16 *sport, __u16 *dport)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	__u32 l3 = r->p.l3_off, l4 = r->p.l4_off;
	__u64 *s = (__u64 *)saddr, *d = (__u64 *)daddr;
	const __u64 *a6;
	const __u32 *a4;
	__u16 *ports;

	if (l3 > EMPTCP_MAX_L4_OFF || l4 > EMPTCP_MAX_L4_OFF)
		return -1;
	EMPTCP_OFF_BOUND(l3);
	EMPTCP_OFF_BOUND(l4);
	ports = data + l4;
	if ((void *)(ports + 2) > data_end)
		return -1;
	*sport = ports[0];
	*dport = ports[1];
	if (r->p.flags & EMPTCP_PF_V6) {
		a6 = data + l3 + 8;	/* saddr, daddr */
		if ((void *)(a6 + 4) > data_end)
			return -1;
		s[0] = a6[0];
		s[1] = a6[1];
		d[0] = a6[2];
		d[1] = a6[3];
		return 16;
	}
	a4 = data + l3 + 12;
	if ((void *)(a4 + 2) > data_end)
		return -1;
	/*
	 * Whole words, built in registers: the flow table reads the key
	 * back as 8-byte words, and two 4-byte stores read as one word
	 * defeat the CPU's store forwarding (see tables.h emptcp_tab_addr).
	 */
	s[0] = emptcp_addr4_word(a4[0]);
	s[1] = 0;
	d[0] = emptcp_addr4_word(a4[1]);
	d[1] = 0;
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
	__u8 s[16] EMPTCP_ALIGN8, d[16] EMPTCP_ALIGN8;
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
 * The DSS at @doff bytes into the TCP header, parsed in place
 * (emptcp_mptcp_parse_dss_at()). Returns 0, or -1 when it is malformed or
 * cannot be read. A DSS too close to the end of the linear data for the
 * one bounds check is parsed from a copy instead.
 */
static __always_inline int emptcp_dss_at(emptcp_ctx *ctx, const struct emptcp_run *r, __u32 doff,
					 struct emptcp_mptcp_dss *d)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	struct emptcp_tcpopt_walk w;
	struct tcphdr *th;
	__u32 off = r->p.l4_off;
	__u8 *o;

	if (doff < 20 || doff >= EMPTCP_TCP_MAX_HDR_LEN || off > EMPTCP_MAX_L4_OFF)
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

/* The packet's first DSS, after emptcp_opts() found one (r->p.dss_off). */
static __always_inline int emptcp_dss(emptcp_ctx *ctx, const struct emptcp_run *r,
				      struct emptcp_mptcp_dss *d)
{
	if (!(r->p.flags & EMPTCP_PF_OPTS))
		return -1;
	return emptcp_dss_at(ctx, r, r->p.dss_off, d);
}

/*
 * The packet's first DSS in @d, for a stage that keeps no option summary
 * (a selector that leaves the context as it found it: a walk reloads
 * nothing after it). It uses the summary when an earlier stage made one,
 * else reads the options in place when they have the shape of data and
 * ACK segments (emptcp_tcpopt_sum_fast()), else walks a copy. Unlike
 * emptcp_opts(), the IP length is not checked: only the options decide.
 * Returns 1, 0 when there is no DSS, or -1 when the options are malformed
 * or cannot be read. (Its first lines repeat emptcp_opts()'s: one helper
 * for both, its results through pointers, took get_subflow's walk on TC
 * past the verifier's million instructions.)
 */
static __always_inline int emptcp_dss_peek(emptcp_ctx *ctx, const struct emptcp_run *r,
					   struct emptcp_mptcp_dss *d)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	struct emptcp_tcpopt_sum s;
	struct emptcp_tcpopt_walk w;
	struct tcphdr *th;
	__u32 hlen, off = r->p.l4_off;

	if (r->p.flags & EMPTCP_PF_OPTS) {
		if (!(r->p.subtypes & (1U << EMPTCP_MPTCPOPT_DSS)))
			return 0;
		return emptcp_dss_at(ctx, r, r->p.dss_off, d) < 0 ? -1 : 1;
	}
	th = emptcp_tcp(ctx, r);
	if (!th || off > EMPTCP_MAX_L4_OFF)
		return -1;
	hlen = th->doff * 4;
	if (hlen < 20 || hlen > EMPTCP_TCP_MAX_HDR_LEN)
		return -1;
	EMPTCP_OFF_BOUND(off);
	if (emptcp_tcpopt_sum_fast(data + off + 20, data_end, hlen - 20, &s) == 0) {
		if (!(s.mptcp & (1U << EMPTCP_MPTCPOPT_DSS)))
			return 0;
		return emptcp_dss_at(ctx, r, s.dss_off - 1 + 20, d) < 0 ? -1 : 1;
	}
	if (emptcp_opts_load(ctx, r, &w, hlen) < 0)
		return -1;
	if (!(w.mptcp & (1U << EMPTCP_MPTCPOPT_DSS)))
		return 0;
	return emptcp_mptcp_parse_dss(&w, d) < 0 ? -1 : 1;
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

#endif /* __EMPTCP_PKT_H */
