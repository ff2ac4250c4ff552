// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * set_backup - actor: add an MP_PRIO option (length 3 + NOP; Linux ignores
 * the 4-byte RFC 6824 form) to the selected subflow's segments, so that the
 * peer sets or clears the subflow's backup flag. The TCP header grows by 4
 * bytes: IP length, data offset and both checksums are fixed. XDP grows
 * every segment; TC only segments without payload. No room, SYNs, RSTs,
 * non-MPTCP segments and (TC) option lists ended by an EOL pass untouched
 * (counted).
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

#ifndef EMPTCP_ONCE_BITS
#define EMPTCP_ONCE_BITS 12
#endif

/*
 * Subflows (with slot) that already got their MP_PRIO, for "once": a
 * direct-mapped table indexed by a hash of the key. A lookup is an inlined
 * array access and a 40-byte compare (an LRU hash lookup costs several
 * times more per packet). Two subflows sharing an entry only means one of
 * them gets its MP_PRIO once more, which the peer takes as a no-op.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << EMPTCP_ONCE_BITS);
	__type(key, __u32);
	__type(value, struct emptcp_flow_key);
} emptcp_once SEC(".maps");

static __always_inline __u32 flow_hash(const struct emptcp_flow_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 h = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*k) / 4); i++)
		h = (h ^ w[i]) * 0x9e3779b1;
	return h >> (32 - EMPTCP_ONCE_BITS);
}

static __always_inline int flow_eq(const struct emptcp_flow_key *a, const struct emptcp_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	__u64 d = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*a) / 8); i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

static __always_inline int flow_key(emptcp_ctx *ctx, const struct emptcp_run *r,
				    struct emptcp_flow_key *k)
{
	void *data = ctx_data(ctx), *data_end = ctx_data_end(ctx);
	__u32 l3 = r->p.l3_off, l4 = r->p.l4_off;
	__u32 *a, *ports;

	/* direct reads: bounded offsets, then one bounds check each */
	if (l3 > EMPTCP_MAX_L4_OFF || l4 > EMPTCP_MAX_L4_OFF)
		return -1;
	__builtin_memset(k, 0, sizeof(*k));
	ports = data + l4;
	if ((void *)(ports + 1) > data_end)
		return -1;
	if (r->p.flags & EMPTCP_PF_V6) {
		a = data + l3 + 8;	/* saddr, daddr: 32 bytes */
		if ((void *)(a + 8) > data_end)
			return -1;
		__builtin_memcpy(k->saddr, a, 16);
		__builtin_memcpy(k->daddr, a + 4, 16);
	} else {
		a = data + l3 + 12;	/* saddr, daddr: 8 bytes */
		if ((void *)(a + 2) > data_end)
			return -1;
		__builtin_memcpy(k->saddr, a, 4);
		__builtin_memcpy(k->daddr, a + 1, 4);
	}
	__builtin_memcpy(&k->sport, ports, 4);
	k->slot = r->slot;
	return 0;
}

/*
 * The work of set_backup on a selected packet.
 * Returns the counter to bump (EMPTCP_CNT_*), or -1: the packet is
 * inconsistent and must be dropped.
 */
static __always_inline int set_backup_act(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct emptcp_set_backup sb;
	struct emptcp_flow_key key, *done = NULL;
	struct tcpopt_walk w;
	struct tcphdr *th;
	__u8 opt[4];
	__u32 hlen, room, idx;
	int l4len, payload, ret, once;
	__u8 fl;

	emptcp_param_copy(r, &sb, sizeof(sb));
	once = sb.flags & EMPTCP_BK_ONCE;
	opt[0] = TCPOPT_MPTCP_KIND;
	opt[1] = TCPOLEN_MPTCP_PRIO;
	opt[2] = (MPTCPOPT_MP_PRIO << 4) | ((sb.flags & EMPTCP_BK_BACKUP) ? MPTCP_BACKUP : 0);
	opt[3] = TCPOPT_NOP_KIND;

	th = emptcp_tcp(ctx, r);
	if (!th)
		return EMPTCP_CNT_PARSE_ERR;
	fl = ((__u8 *)th)[13];
	hlen = th->doff * 4;
	if ((fl & (EMPTCP_TCP_SYN | EMPTCP_TCP_RST)) || !(fl & EMPTCP_TCP_ACK))
		return EMPTCP_CNT_SKIP;
	l4len = emptcp_l4_len(ctx, r);
	if (l4len < (int)hlen || hlen < 20)
		return EMPTCP_CNT_PARSE_ERR;
	payload = l4len - hlen;
	if (hlen + TCPOLEN_MPTCP_PRIO_ALIGN > TCP_MAX_HDR_LEN)
		return EMPTCP_CNT_NO_ROOM;
	if (!EMPTCP_IS_XDP && payload) {
		/* TC grows only segments without payload (see grow.h) */
		return EMPTCP_CNT_SKIP;
	}
	/* a subflow already done costs one lookup, not an option walk */
	if (once) {
		if (flow_key(ctx, r, &key) < 0)
			return EMPTCP_CNT_PARSE_ERR;
		idx = flow_hash(&key);
		done = bpf_map_lookup_elem(&emptcp_once, &idx);
		if (done && flow_eq(done, &key))
			return EMPTCP_CNT_SKIP;
	}
	if (emptcp_opts_load(ctx, r, &w, hlen) < 0)
		return EMPTCP_CNT_PARSE_ERR;
	/*
	 * Only established MPTCP subflows: a DSS or MP_JOIN ACK says so. The
	 * MP_CAPABLE ACK and segments already carrying MP_PRIO are left alone.
	 */
	if (!(w.mptcp & ((1U << MPTCPOPT_DSS) | (1U << MPTCPOPT_MP_JOIN))) ||
	    (w.mptcp & ((1U << MPTCPOPT_MP_CAPABLE) | (1U << MPTCPOPT_MP_PRIO))))
		return EMPTCP_CNT_SKIP;

	/*
	 * TC adds the option after the last one: behind an EOL (the walk
	 * stops on it, w.off < w.len) a receiver would never read it.
	 */
	if (!EMPTCP_IS_XDP && w.off < w.len)
		return EMPTCP_CNT_SKIP;

	ret = ctx_grow_tcp_header(ctx, r->p.l4_off, hlen, payload, TCPOLEN_MPTCP_PRIO_ALIGN, &room);
	if (ret == EMPTCP_E2BIG)
		return EMPTCP_CNT_NO_ROOM;
	if (ret < 0)
		return EMPTCP_CNT_ERROR;
	/*
	 * The packet has grown: from here a failure would leave it
	 * inconsistent, so it is dropped (TCP retransmits) rather than
	 * passed corrupt. The helpers below cannot fail on the room just made.
	 */
	if (add_tcp_opts(ctx, room, opt, 4) < 0 ||
	    update_tcphlen_csum(ctx, r->p.l3_off, r->p.l4_off, r->p.flags & EMPTCP_PF_V6, 4) < 0 ||
	    add_tcpopt_csum(ctx, r->p.l4_off, opt, 4) < 0)
		return -1;
	if (once && done)
		*done = key;
	/* the option summary no longer describes the packet */
	r->p.flags &= ~EMPTCP_PF_OPTS;
	return EMPTCP_CNT_HIT;
}

SEC(EMPTCP_SEC)
int set_backup(emptcp_ctx *ctx)
{
	struct emptcp_run r;
	int ret;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	/* one exit to the next stage, whatever the outcome (chain.h) */
	if (emptcp_matched(&r)) {
		ret = set_backup_act(ctx, &r);
		if (ret < 0) {
			emptcp_count(r.slot, EMPTCP_CNT_ERROR);
			return EMPTCP_DROP;
		}
		emptcp_count(r.slot, ret);
	}
	return emptcp_next(ctx, &r);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
