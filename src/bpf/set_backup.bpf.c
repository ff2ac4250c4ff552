// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * set_backup - actor: add an MP_PRIO option (length 3 + NOP; Linux ignores
 * the 4-byte RFC 6824 form) to the selected subflow's segments, so that the
 * peer sets or clears the subflow's backup flag. The TCP header grows by 4
 * bytes: IP length, data offset and both checksums are fixed. XDP grows
 * every segment; TC only segments without payload. No room, SYNs, RSTs and
 * non-MPTCP segments pass untouched (counted).
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

/* Subflows (and slot) that already got their MP_PRIO, for "once". */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct emptcp_flow_key);
	__type(value, __u32);
} emptcp_once SEC(".maps");

static __always_inline int flow_key(emptcp_ctx *ctx, const struct emptcp_run *r,
				    struct emptcp_flow_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (r->p.flags & EMPTCP_PF_V6) {
		if (ctx_load_bytes(ctx, r->p.l3_off + 8, k->saddr, 16) < 0 ||
		    ctx_load_bytes(ctx, r->p.l3_off + 24, k->daddr, 16) < 0)
			return -1;
	} else {
		if (ctx_load_bytes(ctx, r->p.l3_off + 12, k->saddr, 4) < 0 ||
		    ctx_load_bytes(ctx, r->p.l3_off + 16, k->daddr, 4) < 0)
			return -1;
	}
	if (ctx_load_bytes(ctx, r->p.l4_off, &k->sport, 2) < 0 ||
	    ctx_load_bytes(ctx, r->p.l4_off + 2, &k->dport, 2) < 0)
		return -1;
	k->slot = r->p.slot;
	return 0;
}

SEC(EMPTCP_SEC)
int set_backup(emptcp_ctx *ctx)
{
	const struct emptcp_set_backup *sb;
	struct emptcp_flow_key key;
	struct tcpopt_walk w;
	struct emptcp_run r;
	struct tcphdr *th;
	__u8 opt[4];
	__u32 hlen, room, one = 1;
	int l4len, payload, ret, once;
	__u8 fl;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	if (!emptcp_matched(&r))
		return emptcp_next(ctx, &r, r.st->skip);
	sb = (const void *)r.st->param;
	once = sb->flags & EMPTCP_BK_ONCE;
	opt[0] = TCPOPT_MPTCP_KIND;
	opt[1] = TCPOLEN_MPTCP_PRIO;
	opt[2] = (MPTCPOPT_MP_PRIO << 4) | ((sb->flags & EMPTCP_BK_BACKUP) ? MPTCP_BACKUP : 0);
	opt[3] = TCPOPT_NOP_KIND;

	th = emptcp_tcp(ctx, &r);
	if (!th) {
		emptcp_count(r.p.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_next(ctx, &r, r.st->next);
	}
	fl = ((__u8 *)th)[13];
	hlen = th->doff * 4;
	if ((fl & (EMPTCP_TCP_SYN | EMPTCP_TCP_RST)) || !(fl & EMPTCP_TCP_ACK)) {
		emptcp_count(r.p.slot, EMPTCP_CNT_SKIP);
		return emptcp_next(ctx, &r, r.st->next);
	}
	l4len = emptcp_l4_len(ctx, &r);
	if (l4len < (int)hlen || hlen < 20) {
		emptcp_count(r.p.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_next(ctx, &r, r.st->next);
	}
	payload = l4len - hlen;
	if (hlen + TCPOLEN_MPTCP_PRIO_ALIGN > TCP_MAX_HDR_LEN) {
		emptcp_count(r.p.slot, EMPTCP_CNT_NO_ROOM);
		return emptcp_next(ctx, &r, r.st->next);
	}
	if (!EMPTCP_IS_XDP && payload) {
		/* TC grows only segments without payload (see grow.h) */
		emptcp_count(r.p.slot, EMPTCP_CNT_SKIP);
		return emptcp_next(ctx, &r, r.st->next);
	}
	if (emptcp_opts_load(ctx, &r, &w, hlen) < 0) {
		emptcp_count(r.p.slot, EMPTCP_CNT_PARSE_ERR);
		return emptcp_next(ctx, &r, r.st->next);
	}
	/*
	 * Only established MPTCP subflows: a DSS or MP_JOIN ACK says so. The
	 * MP_CAPABLE ACK and segments already carrying MP_PRIO are left alone.
	 */
	if (!(w.mptcp & ((1U << MPTCPOPT_DSS) | (1U << MPTCPOPT_MP_JOIN))) ||
	    (w.mptcp & ((1U << MPTCPOPT_MP_CAPABLE) | (1U << MPTCPOPT_MP_PRIO)))) {
		emptcp_count(r.p.slot, EMPTCP_CNT_SKIP);
		return emptcp_next(ctx, &r, r.st->next);
	}
	if (once) {
		if (flow_key(ctx, &r, &key) < 0) {
			emptcp_count(r.p.slot, EMPTCP_CNT_PARSE_ERR);
			return emptcp_next(ctx, &r, r.st->next);
		}
		if (bpf_map_lookup_elem(&emptcp_once, &key)) {
			emptcp_count(r.p.slot, EMPTCP_CNT_SKIP);
			return emptcp_next(ctx, &r, r.st->next);
		}
	}

	ret = ctx_grow_tcp_header(ctx, r.p.l4_off, hlen, payload, TCPOLEN_MPTCP_PRIO_ALIGN, &room);
	if (ret == EMPTCP_E2BIG) {
		emptcp_count(r.p.slot, EMPTCP_CNT_NO_ROOM);
		return emptcp_next(ctx, &r, r.st->next);
	}
	if (ret < 0) {
		emptcp_count(r.p.slot, EMPTCP_CNT_ERROR);
		return emptcp_next(ctx, &r, r.st->next);
	}
	/*
	 * The packet has grown: from here a failure would leave it
	 * inconsistent, so it is dropped (TCP retransmits) rather than
	 * passed corrupt. The helpers below cannot fail on the room just made.
	 */
	if (add_tcp_opts(ctx, room, opt, 4) < 0 ||
	    update_tcphlen_csum(ctx, r.p.l3_off, r.p.l4_off, r.p.flags & EMPTCP_PF_V6, 4) < 0 ||
	    add_tcpopt_csum(ctx, r.p.l4_off, opt, 4) < 0) {
		emptcp_count(r.p.slot, EMPTCP_CNT_ERROR);
		return EMPTCP_DROP;
	}
	if (once)
		bpf_map_update_elem(&emptcp_once, &key, &one, BPF_ANY);
	emptcp_count(r.p.slot, EMPTCP_CNT_HIT);
	/* the option summary no longer describes the packet */
	r.p.flags &= ~EMPTCP_PF_OPTS;
	return emptcp_next(ctx, &r, r.st->next);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
