// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * set_backup - actor: add an MP_PRIO option (length 3 + NOP; Linux ignores
 * the 4-byte RFC 6824 form) to the selected subflow's segments, so that the
 * peer sets or clears the subflow's backup flag. The TCP header grows by 4
 * bytes: IP length, data offset and both checksums are fixed. XDP grows
 * every segment; TC grows segments without payload. No room, SYNs, RSTs,
 * non-MPTCP segments and (TC) option lists ended by an EOL pass untouched
 * (counted).
 *
 * TC egress, data segments: a data segment cannot grow in place at TC
 * (bpf_skb_adjust_room leaves csum_start on the old TCP header), so the
 * segment is cloned back into the same device's egress with
 * bpf_clone_redirect. That runs synchronously on this CPU, through the
 * same chain, while a per-CPU note says "the next packet of this subflow
 * here is our clone"; the clone is then trimmed into a pure ACK (same
 * seq/ack, ACK flag only, no payload) whose DSS keeps only its data ACK:
 * the mapping bytes become MP_PRIO + NOPs (or, with no mapping, MP_PRIO is
 * appended when the header has room). The original passes untouched after
 * its clone, so the peer sees a pure ACK just before the data, as Linux
 * itself would send it. Data segments at TC ingress and on loopback are
 * skipped. "once" is recorded only when the clone went out with MP_PRIO.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>
#include <emptcp/tables.h>
#include "flowtab.h"	/* flowtab_eq */

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

/* set_backup_act's result for the clone's own run: nothing to count */
#define BK_NO_COUNT		EMPTCP_CNT__MAX

#ifdef EMPTCP_TC
#include <bpf/bpf_core_read.h>

/*
 * Linux >= 6.2. Weak: on older kernels libbpf resolves it to NULL and the
 * stage still loads; bk_data_segment() then leaves data segments alone
 * (counted skip) and set_backup at TC marks segments without payload only
 * (emptcp apply says so, see src/features.rs).
 */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

#define BK_CHECKSUM_PARTIAL	3	/* skb->ip_summed */
#define BK_TCP_ECE		0x40
#define BK_LOOPBACK_IFINDEX	1

/*
 * The clone on its way through this CPU's egress path: written just
 * before bpf_clone_redirect(), read by the same stage when the clone comes
 * through, cleared when the helper returns (the clone is transmitted
 * inside the helper call, on this CPU, with bottom halves off).
 */
struct bk_clone {
	struct emptcp_flow_key key;
	__u32 active;	/* 1 while the clone is in flight */
	__s32 result;	/* set by the clone's run: 1 done, < 0 failed */
	/* the clone's run: its options, walked (the stack is full) */
	struct emptcp_tcpopt_walk w;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bk_clone);
} emptcp_bk_clone SEC(".maps");
#endif

static __always_inline __u32 flow_hash(const struct emptcp_flow_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 h = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*k) / 4); i++)
		h = (h ^ w[i]) * 0x9e3779b1;
	return h >> (32 - EMPTCP_ONCE_BITS);
}

static __always_inline int flow_key(emptcp_ctx *ctx, const struct emptcp_run *r,
				    struct emptcp_flow_key *k)
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	__u32 l3 = r->p.l3_off, l4 = r->p.l4_off;
	__u32 *a, *ports;

	/* direct reads: bounded offsets, then one bounds check each */
	if (l3 > EMPTCP_MAX_L4_OFF || l4 > EMPTCP_MAX_L4_OFF)
		return -1;
	EMPTCP_OFF_BOUND(l3);
	EMPTCP_OFF_BOUND(l4);
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

#ifdef EMPTCP_TC
/*
 * The clone: turn a data segment into a pure ACK carrying MP_PRIO @opt.
 * Returns 0, EMPTCP_E2BIG (no mapping to reuse and no room to append) or
 * another negative EMPTCP_E* (helper failure: the clone must be dropped).
 */
static __always_inline int bk_trim_clone(struct __sk_buff *skb, const struct emptcp_run *r,
					 struct emptcp_tcpopt_walk *w, __u32 hlen, __u8 fl,
					 const __u8 *opt)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 l3 = r->p.l3_off, l4 = r->p.l4_off, area = w->len, grow = 0;
	__u32 o = 0, dl = 0, nl = 0, tcp_len, i;
	__u8 *nb = w->b, hdr[64];
	__u16 w_old, w_new, old_len, new_len, check, zero = 0;
	__u8 addrs[32], df = 0, ips;
	int dss, v6 = r->p.flags & EMPTCP_PF_V6;
	__u64 sum;

	if (area > EMPTCP_TCP_MAX_OPT_LEN || (area & 3) || l4 > EMPTCP_MAX_L4_OFF || l3 > l4)
		return EMPTCP_EINVAL;
	dss = emptcp_tcpopt_mptcp_off(w, EMPTCP_MPTCPOPT_DSS);
	if (dss >= 0) {
		o = dss;
		dl = emptcp_tcpopt_byte(w, o + 1);
		df = emptcp_tcpopt_byte(w, o + 3);
	}
	if (dss >= 0 && (df & EMPTCP_MPTCP_DSS_HAS_MAP)) {
		/* keep kind, subtype and the data ACK; the mapping makes room */
		nl = EMPTCP_TCPOLEN_MPTCP_DSS_BASE;
		if (df & EMPTCP_MPTCP_DSS_HAS_ACK)
			nl += (df & EMPTCP_MPTCP_DSS_ACK64) ? 8 : 4;
		if (dl < nl + EMPTCP_TCPOLEN_MPTCP_PRIO)
			return EMPTCP_EINVAL;
	} else {
		/* no mapping: append after the last option */
		if (hlen + EMPTCP_TCPOLEN_MPTCP_PRIO_ALIGN > EMPTCP_TCP_MAX_HDR_LEN)
			return EMPTCP_E2BIG;
		if (w->off < w->len)
			return EMPTCP_E2BIG;	/* behind an EOL nobody reads it */
		grow = EMPTCP_TCPOLEN_MPTCP_PRIO_ALIGN;
	}
	/*
	 * New option area, in place in @w's buffer (scratch: per CPU, not on
	 * the stack, which is full). Verifier: straight-line stores at masked
	 * indexes into a 64-byte buffer and one bounded loop without other
	 * branches (an unrolled per-byte decision explodes the number of paths).
	 */
	if (nl) {
		nb[(o + 1) & EMPTCP_TCPOPT_BUF_MASK] = nl;
		nb[(o + 3) & EMPTCP_TCPOPT_BUF_MASK] =
			df & (EMPTCP_MPTCP_DSS_HAS_ACK | EMPTCP_MPTCP_DSS_ACK64);
		for (i = 0; i < EMPTCP_TCP_MAX_OPT_LEN; i++) {
			if (i >= dl - nl)
				break;
			nb[(o + nl + i) & EMPTCP_TCPOPT_BUF_MASK] = EMPTCP_TCPOPT_NOP_KIND;
		}
		i = o + nl;
	} else {
		i = area;
	}
	nb[i & EMPTCP_TCPOPT_BUF_MASK] = opt[0];
	nb[(i + 1) & EMPTCP_TCPOPT_BUF_MASK] = opt[1];
	nb[(i + 2) & EMPTCP_TCPOPT_BUF_MASK] = opt[2];
	nb[(i + 3) & EMPTCP_TCPOPT_BUF_MASK] =
		nl ? nb[(i + 3) & EMPTCP_TCPOPT_BUF_MASK] : EMPTCP_TCPOPT_NOP_KIND;

	/* cut the payload (and make room to append); GSO state is reset */
	if (bpf_skb_change_tail(skb, l4 + hlen + grow, 0) < 0)
		return EMPTCP_ENOMEM;
	tcp_len = hlen + grow;
	if (area + grow) {
		__u32 n = area + grow;

		if (n > EMPTCP_TCP_MAX_OPT_LEN)
			return EMPTCP_EINVAL;
		/* Verifier: a size it can see is in [1, 64] (the buffer) (a no-op here) */
		n = ((n - 1) & EMPTCP_TCPOPT_BUF_MASK) + 1;
		if (bpf_skb_store_bytes(skb, l4 + 20, nb, n, 0) < 0)
			return EMPTCP_EINVAL;
	}
	/* data offset and flags: ACK (and ECE) only, no PSH/FIN */
	if (bpf_skb_load_bytes(skb, l4 + 12, &w_old, 2) < 0)
		return EMPTCP_EINVAL;
	((__u8 *)&w_new)[0] = (tcp_len / 4) << 4;
	((__u8 *)&w_new)[1] = EMPTCP_TCP_ACK | (fl & BK_TCP_ECE);
	if (bpf_skb_store_bytes(skb, l4 + 12, &w_new, 2, 0) < 0)
		return EMPTCP_EINVAL;
	/* IP length */
	if (v6) {
		new_len = bpf_htons(l4 - l3 - 40 + tcp_len);
		if (bpf_skb_store_bytes(skb, l3 + 4, &new_len, 2, 0) < 0)
			return EMPTCP_EINVAL;
		if (bpf_skb_load_bytes(skb, l3 + 8, addrs, 32) < 0)
			return EMPTCP_EINVAL;
	} else {
		if (bpf_skb_load_bytes(skb, l3 + 2, &old_len, 2) < 0)
			return EMPTCP_EINVAL;
		new_len = bpf_htons(l4 - l3 + tcp_len);
		if (bpf_skb_store_bytes(skb, l3 + 2, &new_len, 2, 0) < 0)
			return EMPTCP_EINVAL;
		if (bpf_l3_csum_replace(skb, l3 + 10, old_len, new_len, 2) < 0)
			return EMPTCP_EINVAL;
		__builtin_memset(addrs, 0, sizeof(addrs));
		if (bpf_skb_load_bytes(skb, l3 + 12, addrs, 8) < 0)
			return EMPTCP_EINVAL;
	}
	/*
	 * TCP checksum from scratch (the segment is now at most 60 bytes).
	 * CHECKSUM_PARTIAL (every TCP skb at egress): the field holds the
	 * pseudo-header sum the device completes; otherwise the full sum.
	 */
	sum = v6 ? emptcp_csum_words((const __u16 *)addrs, 16) :
		   emptcp_csum_words((const __u16 *)addrs, 4);
	sum += bpf_htons(IPPROTO_TCP);
	sum += bpf_htons(tcp_len);
	ips = BPF_CORE_READ_BITFIELD(kskb, ip_summed);
	if (ips == BK_CHECKSUM_PARTIAL) {
		check = emptcp_csum_fold64(sum);
	} else {
		if (bpf_skb_store_bytes(skb, l4 + 16, &zero, 2, 0) < 0)
			return EMPTCP_EINVAL;
		__builtin_memset(hdr, 0, sizeof(hdr));
		if (tcp_len < 20 || tcp_len > EMPTCP_TCP_MAX_HDR_LEN)
			return EMPTCP_EINVAL;
		i = ((tcp_len - 1) & 63) + 1;	/* Verifier: as above */
		if (bpf_skb_load_bytes(skb, l4, hdr, i) < 0)
			return EMPTCP_EINVAL;
		sum += emptcp_csum_words((const __u16 *)hdr, tcp_len / 2);
		check = (__u16)~emptcp_csum_fold64(sum);
	}
	if (bpf_skb_store_bytes(skb, l4 + 16, &check, 2, 0) < 0)
		return EMPTCP_EINVAL;
	return 0;
}

/*
 * TC, a data segment of an eligible subflow: the clone's run trims itself;
 * the original's run (egress only) sends the clone and notes the result.
 */
static __always_inline int bk_data_segment(struct __sk_buff *skb, struct emptcp_run *r,
					   const struct emptcp_flow_key *key,
					   __u32 hlen, __u8 fl, const __u8 *opt,
					   struct emptcp_flow_key *done, int once)
{
	struct sk_buff *kskb;
	struct bk_clone *c;
	__u32 zero = 0, ifindex;
	int ret;

	/* Verifier: a constant; on kernels without the kfunc the rest is dead code */
	if (!bpf_ksym_exists(bpf_cast_to_kern_ctx))
		return EMPTCP_CNT_SKIP;
	kskb = bpf_cast_to_kern_ctx(skb);
	c = bpf_map_lookup_elem(&emptcp_bk_clone, &zero);
	if (!c)
		return EMPTCP_CNT_ERROR;
	if (c->active && flowtab_eq(&c->key, key)) {
		/* this is the clone: its options are rewritten from a copy */
		c->active = 0;
		if (emptcp_opts_load(skb, r, &c->w, hlen) < 0)
			ret = EMPTCP_EINVAL;
		else
			ret = bk_trim_clone(skb, r, &c->w, hlen, fl, opt);
		c->result = ret < 0 ? ret : 1;
		if (ret < 0)
			return -1;	/* never let a half-made clone out */
		r->p.flags &= ~EMPTCP_PF_OPTS;
		return BK_NO_COUNT;	/* counted by the original's run */
	}
	/*
	 * Egress only (at ingress the clone would leave the way the segment
	 * came in), and not on loopback (ifindex 1 in every namespace, also
	 * BPF_PROG_TEST_RUN's device): its xmit feeds the local stack.
	 */
	ifindex = EMPTCP_CTX_LD32(skb, EMPTCP_OFF_IFINDEX);
	if (BPF_CORE_READ_BITFIELD(kskb, tc_at_ingress) || ifindex == BK_LOOPBACK_IFINDEX)
		return EMPTCP_CNT_SKIP;
	c->key = *key;
	c->active = 1;
	c->result = 0;
	ret = bpf_clone_redirect(skb, ifindex, 0);
	c->active = 0;
	if (ret < 0 || c->result < 0 || c->result == 0)
		return c->result == EMPTCP_E2BIG ? EMPTCP_CNT_NO_ROOM : EMPTCP_CNT_ERROR;
	if (once && done)
		*done = *key;
	/* the original goes on untouched */
	return EMPTCP_CNT_HIT;
}
#endif

/*
 * The work of set_backup on a selected packet.
 * Returns the counter to bump (EMPTCP_CNT_*), or -1: the packet is
 * inconsistent and must be dropped.
 */
static __always_inline int set_backup_act(emptcp_ctx *ctx, struct emptcp_run *r)
{
	struct emptcp_set_backup sb;
	struct emptcp_flow_key key EMPTCP_ALIGN8 = {}, *done = NULL;
	struct tcphdr *th;
	__u8 opt[4];
	__u32 hlen, room, idx;
	int l4len, payload, ret, once, lit;
	__u64 v;
	__u8 fl;

	emptcp_param_copy(r, &sb, sizeof(sb));
	/* backup from a map keyed by the packet: its key not there, nothing */
	lit = emptcp_param_from_tab(ctx, r, &v);
	if (lit < 0)
		return BK_NO_COUNT;
	if (lit == 0)
		sb.flags = v ? (sb.flags | EMPTCP_BK_BACKUP) : (sb.flags & ~EMPTCP_BK_BACKUP);
	once = sb.flags & EMPTCP_BK_ONCE;
	opt[0] = EMPTCP_TCPOPT_MPTCP_KIND;
	opt[1] = EMPTCP_TCPOLEN_MPTCP_PRIO;
	opt[2] = (EMPTCP_MPTCPOPT_MP_PRIO << 4) |
		 ((sb.flags & EMPTCP_BK_BACKUP) ? EMPTCP_MPTCP_BACKUP : 0);
	opt[3] = EMPTCP_TCPOPT_NOP_KIND;

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
	/* TC data segments go through a clone, which may need no room */
	if (hlen + EMPTCP_TCPOLEN_MPTCP_PRIO_ALIGN > EMPTCP_TCP_MAX_HDR_LEN &&
	    (EMPTCP_IS_XDP || !payload))
		return EMPTCP_CNT_NO_ROOM;
	/* a subflow already done costs one lookup, not an option walk */
	if (once || (!EMPTCP_IS_XDP && payload)) {
		if (flow_key(ctx, r, &key) < 0)
			return EMPTCP_CNT_PARSE_ERR;
	}
	if (once) {
		idx = flow_hash(&key);
		done = bpf_map_lookup_elem(&emptcp_once, &idx);
		if (done && flowtab_eq(done, &key))
			return EMPTCP_CNT_SKIP;
	}
	/* the per-packet option summary (the header length was checked above) */
	if (emptcp_opts(ctx, r) < 0)
		return EMPTCP_CNT_PARSE_ERR;
	/*
	 * Only established MPTCP subflows: a DSS or MP_JOIN ACK says so. The
	 * MP_CAPABLE ACK and segments already carrying MP_PRIO are left alone.
	 */
	if (!(r->p.subtypes & ((1U << EMPTCP_MPTCPOPT_DSS) | (1U << EMPTCP_MPTCPOPT_MP_JOIN))) ||
	    (r->p.subtypes &
	     ((1U << EMPTCP_MPTCPOPT_MP_CAPABLE) | (1U << EMPTCP_MPTCPOPT_MP_PRIO))))
		return EMPTCP_CNT_SKIP;

#ifdef EMPTCP_TC
	if (payload)
		return bk_data_segment(ctx, r, &key, hlen, fl, opt, done, once);
#endif
	/*
	 * TC adds the option after the last one: behind an EOL (the walk
	 * stops on it) a receiver would never read it.
	 */
	if (!EMPTCP_IS_XDP && (r->p.flags & EMPTCP_PF_EOL))
		return EMPTCP_CNT_SKIP;

	ret = emptcp_ctx_grow_tcp_header(ctx, r->p.l4_off, hlen, payload,
					 EMPTCP_TCPOLEN_MPTCP_PRIO_ALIGN, &room);
	if (ret == EMPTCP_E2BIG)
		return EMPTCP_CNT_NO_ROOM;
	if (ret < 0)
		return EMPTCP_CNT_ERROR;
	/*
	 * The packet has grown: from here a failure would leave it
	 * inconsistent, so it is dropped (TCP retransmits) rather than
	 * passed corrupt. The helpers below cannot fail on the room just made.
	 */
	if (emptcp_add_tcp_opts(ctx, room, opt, 4) < 0 ||
	    emptcp_update_tcphlen_csum(ctx, r->p.l3_off, r->p.l4_off, r->p.flags & EMPTCP_PF_V6,
				       4) < 0 ||
	    emptcp_add_tcpopt_csum(ctx, r->p.l4_off, opt, 4) < 0)
		return -1;
	if (once && done)
		*done = key;
	/* the option summary no longer describes the packet */
	r->p.flags &= ~EMPTCP_PF_OPTS;
	return EMPTCP_CNT_HIT;
}

/* The stage's work on one packet: EMPTCP_CONTINUE or a verdict. */
EMPTCP_HEAVY_STAGE int set_backup_stage(emptcp_ctx *ctx, struct emptcp_run *r)
{
	int ret;

	/* one exit to the next stage, whatever the outcome (step.h) */
	if (emptcp_matched(r)) {
		ret = set_backup_act(ctx, r);
		if (ret < 0) {
			emptcp_run_count(r, EMPTCP_CNT_ERROR);
			return EMPTCP_DROP;
		}
		if (ret != BK_NO_COUNT)
			emptcp_run_count(r, ret);
	}
	return EMPTCP_CONTINUE;
}

EMPTCP_ACTOR(set_backup, set_backup_stage, sizeof(struct emptcp_set_backup));

EMPTCP_LICENSE("Dual BSD/GPL");
