/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/tables.h - named sets and maps: one lookup of the packet's key in
 * a table that emptcp fills and changes at run time (`emptcp set add`,
 * `emptcp map add`), whatever the table's size.
 *
 * Needs:      vmlinux.h; -DEMPTCP_XDP or -DEMPTCP_TC.
 * Guarantees: the five outer maps (ARRAY_OF_MAPS, one per key layout of
 *             abi.h) that hold the tables; like maps.h's maps they are
 *             the ABI, declared identically by every object that looks
 *             tables up, created and pinned by emptcp before any stage is
 *             loaded. emptcp_tab_lookup() builds the key a struct
 *             emptcp_tab_ref names from the packet and returns the
 *             table's value for it, or NULL. A table reference in .rodata
 *             makes the layout a constant: the verifier keeps one branch
 *             of the switch and inlines the outer lookup (an array), so a
 *             lookup costs one hash or trie lookup.
 * Limits:     EMPTCP_MAX_TABLES - 1 tables per layout; keys are built from
 *             the IPv4/IPv6 and TCP headers the entry program found.
 */
#ifndef __EMPTCP_TABLES_H
#define __EMPTCP_TABLES_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "abi.h"
#include "step.h"
#include "pkt.h"

struct emptcp_tab_addr_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	/* sizes, not types: clang leaves a key type met only here as a
	 * forward declaration, whose size libbpf cannot tell */
	__uint(key_size, sizeof(struct emptcp_key_addr));
	__uint(value_size, sizeof(__u64));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, EMPTCP_MAX_TABLES);
	__type(key, __u32);
	__array(values, struct emptcp_tab_addr_inner);
} emptcp_g_tab_addr SEC(".maps");

struct emptcp_tab_pair_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	/* sizes, not types: clang leaves a key type met only here as a
	 * forward declaration, whose size libbpf cannot tell */
	__uint(key_size, sizeof(struct emptcp_key_pair));
	__uint(value_size, sizeof(__u64));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, EMPTCP_MAX_TABLES);
	__type(key, __u32);
	__array(values, struct emptcp_tab_pair_inner);
} emptcp_g_tab_pair SEC(".maps");

struct emptcp_tab_subflow_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	/* sizes, not types: clang leaves a key type met only here as a
	 * forward declaration, whose size libbpf cannot tell */
	__uint(key_size, sizeof(struct emptcp_key_subflow));
	__uint(value_size, sizeof(__u64));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, EMPTCP_MAX_TABLES);
	__type(key, __u32);
	__array(values, struct emptcp_tab_subflow_inner);
} emptcp_g_tab_subflow SEC(".maps");

struct emptcp_tab_port_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	/* sizes, not types: clang leaves a key type met only here as a
	 * forward declaration, whose size libbpf cannot tell */
	__uint(key_size, sizeof(struct emptcp_key_port));
	__uint(value_size, sizeof(__u64));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, EMPTCP_MAX_TABLES);
	__type(key, __u32);
	__array(values, struct emptcp_tab_port_inner);
} emptcp_g_tab_port SEC(".maps");

struct emptcp_tab_prefix_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	/* sizes, not types: clang leaves a key type met only here as a
	 * forward declaration, whose size libbpf cannot tell */
	__uint(key_size, sizeof(struct emptcp_key_prefix));
	__uint(value_size, sizeof(__u64));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, EMPTCP_MAX_TABLES);
	__type(key, __u32);
	__array(values, struct emptcp_tab_prefix_inner);
} emptcp_g_tab_prefix SEC(".maps");

/* Every key layout fits here; unused bytes stay zero. */
union emptcp_tab_key {
	struct emptcp_key_addr addr;
	struct emptcp_key_pair pair;
	struct emptcp_key_subflow subflow;
	struct emptcp_key_port port;
	struct emptcp_key_prefix prefix;
	__u64 words[5];
};

/* An IPv4 address (network order) as IPv4-mapped IPv6. */
static __always_inline void emptcp_tab_mapped(__u8 out[16], __u32 v4)
{
	__u32 *w = (__u32 *)out;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0xffff);
	w[3] = v4;
}

/*
 * The packet's source address (@which 0) or destination (1) as 16 bytes in
 * @out, an IPv4 address mapped. Returns 0, or -1 when the network header
 * cannot be read.
 */
static __always_inline int emptcp_tab_addr(emptcp_ctx *ctx, const struct emptcp_run *r,
					   int which, __u8 out[16])
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	__u32 off = r->p.l3_off;

	if (off > EMPTCP_MAX_L4_OFF)
		return -1;
	/* variable offset, bounded for the verifier (see emptcp_tcp) */
	EMPTCP_OFF_BOUND(off);
	if (r->p.flags & EMPTCP_PF_V6) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		__builtin_memcpy(out, which ? &ip6->daddr : &ip6->saddr, 16);
	} else {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end)
			return -1;
		emptcp_tab_mapped(out, which ? ip->daddr : ip->saddr);
	}
	return 0;
}

/*
 * The packet's source and destination as 16 bytes each, straight into
 * the key: @s and @d point into it. Returns 0, or -1 when the network
 * header cannot be read.
 */
static __always_inline int emptcp_tab_addrs(emptcp_ctx *ctx, const struct emptcp_run *r,
					    __u8 s[16], __u8 d[16])
{
	if (emptcp_tab_addr(ctx, r, 0, s) < 0)
		return -1;
	return emptcp_tab_addr(ctx, r, 1, d);
}

/* The value of @key in table @id of @layout, or NULL. */
static __always_inline __u64 *emptcp_tab_get(__u8 layout, __u32 id, const void *key)
{
	void *t;

	switch (layout) {
	case EMPTCP_LAYOUT_ADDR:
		t = bpf_map_lookup_elem(&emptcp_g_tab_addr, &id);
		break;
	case EMPTCP_LAYOUT_PAIR:
		t = bpf_map_lookup_elem(&emptcp_g_tab_pair, &id);
		break;
	case EMPTCP_LAYOUT_SUBFLOW:
		t = bpf_map_lookup_elem(&emptcp_g_tab_subflow, &id);
		break;
	case EMPTCP_LAYOUT_PORT:
		t = bpf_map_lookup_elem(&emptcp_g_tab_port, &id);
		break;
	case EMPTCP_LAYOUT_PREFIX:
		t = bpf_map_lookup_elem(&emptcp_g_tab_prefix, &id);
		break;
	default:
		return NULL;
	}
	if (!t)
		return NULL;
	return bpf_map_lookup_elem(t, key);
}

/*
 * Builds @k for @ref from the packet, the reverse direction with @rev
 * (pair, subflow). Returns 0, or -1 when a header cannot be read.
 */
static __always_inline int emptcp_tab_key_of(emptcp_ctx *ctx, const struct emptcp_run *r,
					     struct emptcp_tab_ref ref, int rev,
					     union emptcp_tab_key *k)
{
	struct tcphdr *th;

	/* each layout writes every byte of its key: no zeroing first */
	switch (ref.layout) {
	case EMPTCP_LAYOUT_ADDR:
		return emptcp_tab_addr(ctx, r, ref.keyof == EMPTCP_KEYOF_DST, k->addr.a);
	case EMPTCP_LAYOUT_PREFIX:
		k->prefix.prefixlen = 128;
		return emptcp_tab_addr(ctx, r, ref.keyof == EMPTCP_KEYOF_DST, k->prefix.a);
	case EMPTCP_LAYOUT_PAIR:
		return emptcp_tab_addrs(ctx, r, rev ? k->pair.dst : k->pair.src,
					rev ? k->pair.src : k->pair.dst);
	case EMPTCP_LAYOUT_SUBFLOW:
		th = emptcp_tcp(ctx, r);
		if (!th)
			return -1;
		k->subflow.sport = rev ? th->dest : th->source;
		k->subflow.dport = rev ? th->source : th->dest;
		return emptcp_tab_addrs(ctx, r, rev ? k->subflow.daddr : k->subflow.saddr,
					rev ? k->subflow.saddr : k->subflow.daddr);
	case EMPTCP_LAYOUT_PORT:
		th = emptcp_tcp(ctx, r);
		if (!th)
			return -1;
		k->port.port = ref.keyof == EMPTCP_KEYOF_SPORT ? th->source : th->dest;
		k->port.pad = 0;
		return 0;
	}
	return -1;
}

/*
 * The value the table @ref names holds for this packet's key (with
 * EMPTCP_TAB_BIDIR, for the reverse direction when the forward one is not
 * there), or NULL: not there, or headers not readable (then *@err is set).
 */
static __always_inline __u64 *emptcp_tab_lookup(emptcp_ctx *ctx, const struct emptcp_run *r,
						struct emptcp_tab_ref ref, int *err)
{
	union emptcp_tab_key k;
	__u64 *v;

	*err = 0;
	if (emptcp_tab_key_of(ctx, r, ref, 0, &k) < 0) {
		*err = 1;
		return NULL;
	}
	v = emptcp_tab_get(ref.layout, ref.id, &k);
	if (v || !(ref.flags & EMPTCP_TAB_BIDIR))
		return v;
	if (emptcp_tab_key_of(ctx, r, ref, 1, &k) < 0) {
		*err = 1;
		return NULL;
	}
	return emptcp_tab_get(ref.layout, ref.id, &k);
}

/*
 * An actor's table reference: the last 4 bytes of its parameters (id 0:
 * the parameter is the literal one).
 */
static __always_inline struct emptcp_tab_ref emptcp_param_tab(const struct emptcp_run *r)
{
	struct emptcp_tab_ref ref;

	ref.id = r->st->param[EMPTCP_PARAM_TAB_OFF];
	ref.layout = r->st->param[EMPTCP_PARAM_TAB_OFF + 1];
	ref.keyof = r->st->param[EMPTCP_PARAM_TAB_OFF + 2];
	ref.flags = r->st->param[EMPTCP_PARAM_TAB_OFF + 3];
	return ref;
}

/*
 * For an actor whose parameter may come from a map: the value for this
 * packet in *@out. Returns 1 when the parameter is the literal one (*@out
 * untouched), 0 when it came from the map, -1 when the packet's key is not
 * in the map (counted: the actor does nothing).
 */
static __always_inline int emptcp_param_from_tab(emptcp_ctx *ctx, const struct emptcp_run *r,
						 __u64 *out)
{
	struct emptcp_tab_ref ref = emptcp_param_tab(r);
	__u64 *v;
	int err;

	if (ref.id == 0)
		return 1;
	v = emptcp_tab_lookup(ctx, r, ref, &err);
	if (!v) {
		emptcp_run_count(r, err ? EMPTCP_CNT_PARSE_ERR : EMPTCP_CNT_NO_KEY);
		return -1;
	}
	*out = *v;
	return 0;
}

#endif /* __EMPTCP_TABLES_H */
