/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/tables.h - named sets and maps: one lookup of the packet's key in
 * a table that emptcp fills and changes at run time (`emptcp set add`,
 * `emptcp map add`), whatever the table's size.
 *
 * Needs:      vmlinux.h; -DEMPTCP_XDP or -DEMPTCP_TC.
 * Guarantees: the outer maps (ARRAY_OF_MAPS) that hold the tables: one
 *             for ports, two for prefixes (IPv4, IPv6), and the four
 *             bindings (tab_bind0..3) through which a program reaches
 *             the slot tables' outer maps, one per layout and size;
 *             like maps.h's maps they are the ABI, declared
 *             identically by every object that looks tables up, created
 *             and pinned by emptcp before any stage is loaded.
 *             emptcp_tab_lookup() builds the key a struct emptcp_tab_ref
 *             names from the packet and returns the
 *             table's value for it, or NULL. A table reference in .rodata
 *             makes the layout a constant: the verifier keeps one branch
 *             of the switch and inlines the outer lookup (an array); a
 *             lookup is then a probe of a few slots of an array (addr,
 *             pair, subflow), one array load (port) or a trie lookup
 *             (prefix), never a kernel hash (abi.h, "Tables").
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

/*
 * The slot tables: arrays of 2^bits + 1 slots, mmapable so that emptcp
 * writes elements with plain 8-byte stores. Value sizes: 8 * (key words
 * + 2). A table sits in the outer map of its layout and size,
 * emptcp_g_tab_<layout>_<bits>, whose inner maps all have that length:
 * the verifier then inlines the slot's lookup (an array of a known
 * length), where one outer map for every size (BPF_F_INNER_MAP) made it a
 * call of array_map_lookup_elem, and on a CPU whose returns go through a
 * thunk that call was most of a lookup's cost (docs/design.md "Tables").
 * A program reaches those outer maps through EMPTCP_TAB_BINDS bindings,
 * tab_bind0..3: at load emptcp points each at the outer map of one size
 * its stages use, leaves the others out (libbpf's autocreate off) and
 * writes each table reference's binding into its flags. A map definition
 * per size would do without bindings, but libbpf holds a descriptor per
 * definition of every object it opens: 69 a stage, past the 1,024 a
 * process gets when a walk falls back to a program per stage.
 * The inner definition is a placeholder: the outer maps emptcp binds
 * have their own.
 */
struct emptcp_tab_slots_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 8 * (2 + 2));
};

#define EMPTCP_TAB_BIND(j)							\
	struct {								\
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);			\
		__uint(max_entries, EMPTCP_MAX_TABLES);				\
		__type(key, __u32);						\
		__array(values, struct emptcp_tab_slots_inner);			\
	} tab_bind##j SEC(".maps");

EMPTCP_TAB_BIND(0)
EMPTCP_TAB_BIND(1)
EMPTCP_TAB_BIND(2)
EMPTCP_TAB_BIND(3)
_Static_assert(EMPTCP_TAB_BINDS == 4, "tab_bind0..3");

/*
 * The empty asm keeps each map's address in its own case: clang would load
 * it ahead of the compare that picks it, and a binding the program does
 * not use is left out of its object, a map reference that the verifier
 * refuses wherever it reaches it.
 */
#define EMPTCP_TAB_PICK(j)							\
	case j:									\
		o = &tab_bind##j;						\
		asm volatile("" : "+r"(o));					\
		return o;

/* The outer map of a slot table's reference @flags (a constant). */
static __always_inline void *emptcp_tab_outer(__u8 flags)
{
	void *o;

	switch ((flags >> EMPTCP_TAB_BIND_SHIFT) & EMPTCP_TAB_BIND_MASK) {
	EMPTCP_TAB_PICK(0)
	EMPTCP_TAB_PICK(1)
	EMPTCP_TAB_PICK(2)
	EMPTCP_TAB_PICK(3)
	}
	return NULL;
}

/* Port tables: one length, so the verifier inlines the lookup. */
struct emptcp_tab_port_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMPTCP_TAB_PORTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(key_size, sizeof(__u32));
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

struct emptcp_tab_prefix4_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct emptcp_key_prefix4));
	__uint(value_size, sizeof(__u64));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, EMPTCP_MAX_TABLES);
	__type(key, __u32);
	__array(values, struct emptcp_tab_prefix4_inner);
} emptcp_g_tab_prefix4 SEC(".maps");

/* Every key layout fits here; unused bytes stay zero. */
union emptcp_tab_key {
	struct emptcp_key_addr addr;
	struct emptcp_key_pair pair;
	struct emptcp_key_subflow subflow;
	struct emptcp_key_port port;
	struct emptcp_key_prefix prefix;
	struct emptcp_key_prefix4 prefix4;
	__u64 words[5];
};

/*
 * The packet's source address (@which 0) or destination (1) as the two
 * 8-byte words of its 16 bytes (native order, as emptcp_tab_probe()
 * compares them), an IPv4 address mapped (::ffff:a.b.c.d). Returns 0, or
 * -1 when the network header cannot be read. Built in registers and
 * stored as two 8-byte words: four 4-byte stores read back as 8-byte
 * words defeat the CPU's store forwarding (measured +6..+8 ns a lookup).
 */
static __always_inline int emptcp_tab_addr(emptcp_ctx *ctx, const struct emptcp_run *r,
					   int which, __u64 out[2])
{
	void *data = emptcp_ctx_data(ctx), *data_end = emptcp_ctx_data_end(ctx);
	__u32 off = r->p.l3_off;

	if (off > EMPTCP_MAX_L4_OFF)
		return -1;
	/* variable offset, bounded for the verifier (see emptcp_tcp) */
	EMPTCP_OFF_BOUND(off);
	if (r->p.flags & EMPTCP_PF_V6) {
		struct ipv6hdr *ip6 = data + off;
		const __u32 *a;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		a = which ? ip6->daddr.in6_u.u6_addr32 : ip6->saddr.in6_u.u6_addr32;
		out[0] = (__u64)a[1] << 32 | a[0];
		out[1] = (__u64)a[3] << 32 | a[2];
	} else {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end)
			return -1;
		out[0] = 0;
		out[1] = (__u64)(which ? ip->daddr : ip->saddr) << 32 | bpf_htonl(0xffff);
	}
	return 0;
}

/*
 * The packet's source and destination, straight into the key: @s and @d
 * are two words each. Returns 0, or -1 when the network header cannot be
 * read.
 */
static __always_inline int emptcp_tab_addrs(emptcp_ctx *ctx, const struct emptcp_run *r,
					    __u64 s[2], __u64 d[2])
{
	if (emptcp_tab_addr(ctx, r, 0, s) < 0)
		return -1;
	return emptcp_tab_addr(ctx, r, 1, d);
}

/* One key word's share of the hash: halves swapped, times @k, folded. */
static __always_inline __u64 emptcp_tab_mix(__u64 x, __u64 k)
{
	__u64 p = (x << 32 | x >> 32) * k;

	return p ^ p >> 32;
}

/*
 * The slot a key hashes to in a table of 2^@bits slots: each key word,
 * halves swapped, times its own odd constant and folded (independent
 * products, no dependency chain), the words xor-ed, and a last multiply
 * whose top bits are the slot (Fibonacci hashing). The swap puts the bytes
 * that vary most (an address's last ones, the high half of a
 * little-endian word) where a multiply spreads them over all bits; the
 * fold before the xor keeps two related words (a pair of neighbouring
 * addresses, x . x+1) from cancelling out: without the two, such pairs
 * piled up in runs longer than EMPTCP_TAB_PROBES. emptcp computes the same
 * (tables/slots.rs slot_of; its tests check the probe length of
 * structured keys).
 */
static __always_inline __u32 emptcp_tab_hash(const __u64 *w, int words, __u32 bits)
{
	__u64 h = emptcp_tab_mix(w[0], 0x9e3779b97f4a7c15ULL) ^
		  emptcp_tab_mix(w[1], 0xc2b2ae3d27d4eb4fULL);

	if (words > 2)
		h ^= emptcp_tab_mix(w[2], 0x165667b19e3779f9ULL) ^
		     emptcp_tab_mix(w[3], 0xd6e8feb86659fd93ULL);
	if (words > 4)
		h ^= emptcp_tab_mix(w[4], 0xff51afd7ed558ccdULL);
	h *= 0x9e3779b97f4a7c15ULL;
	return h >> (64 - bits);
}

/* What a lookup found: emptcp_tab_get(), emptcp_tab_lookup_inline(). */
enum emptcp_tab_found {
	EMPTCP_TAB_NOT = 0,	/* the key is not in the table */
	EMPTCP_TAB_HIT = 1,	/* it is: its value was read */
	EMPTCP_TAB_MORE = 2,	/* only more probes can tell */
};

/*
 * The value of key @w (@words 8-byte words) in slot table @id of outer map
 * @outer (2^@bits slots), or NULL. Linear probing from the key's slot, at
 * most EMPTCP_TAB_PROBES slots (emptcp places no element further away),
 * or with @first the key's own slot only (*@more is set when that slot
 * does not tell): an
 * empty slot ends the probe, a gone one is stepped over. The tag is read
 * before the key words (emptcp stores it after them, a barrier keeps
 * clang from reordering the loads; x86 keeps loads in order); a slot's key
 * words never change once written, until the table is rebuilt whole.
 * Each probe looks the table up in the outer map again (inlined: an array
 * of a constant id): holding the table's pointer across the slot lookup,
 * clang spilled it to a stack slot that a big stage (set_backup) reused for
 * a scalar on another path, which the verifier refuses ("pointer
 * arithmetic on map_ptr prohibited"). Measured as fast as holding it, and
 * 0..3 ns faster than a BPF-to-BPF call of a probe function.
 */
/* Slot @i of emptcp_tab_probe()'s table: key @w's value (*@v), or not. */
static __always_inline int emptcp_tab_slot(void *outer, __u32 id, const __u64 *w, int words,
					   __u32 i, __u64 **v)
{
	__u64 *s, tag;
	void *t;

	t = bpf_map_lookup_elem(outer, &id);
	if (!t)
		return EMPTCP_TAB_NOT;
	s = bpf_map_lookup_elem(t, &i);
	if (!s)
		return EMPTCP_TAB_NOT;
	tag = *(volatile __u64 *)s;
	asm volatile("" ::: "memory");
	if (tag == EMPTCP_TAB_EMPTY)
		return EMPTCP_TAB_NOT;
	if (tag != EMPTCP_TAB_VALID || s[1] != w[0] || s[2] != w[1])
		return EMPTCP_TAB_MORE;
	if (words > 2 && (s[3] != w[2] || s[4] != w[3]))
		return EMPTCP_TAB_MORE;
	if (words > 4 && s[5] != w[4])
		return EMPTCP_TAB_MORE;
	*v = &s[1 + words];
	return EMPTCP_TAB_HIT;
}

static __always_inline __u64 *emptcp_tab_probe(void *outer, __u32 id, const __u64 *w, int words,
					       __u32 bits, int first, int *more)
{
	__u32 mask = (1U << bits) - 1;
	__u32 x = emptcp_tab_hash(w, words, bits);
	__u64 *v = NULL;
	__u32 j;
	int st;

	/* not reached: every binding has its map (emptcp_tab_outer()) */
	if (!outer)
		return NULL;
	if (first) {
		st = emptcp_tab_slot(outer, id, w, words, x & mask, &v);
		*more = st == EMPTCP_TAB_MORE;
		return st == EMPTCP_TAB_HIT ? v : NULL;
	}
#pragma clang loop unroll(full)
	for (j = 0; j < EMPTCP_TAB_PROBES; j++) {
		st = emptcp_tab_slot(outer, id, w, words, (x + j) & mask, &v);
		if (st == EMPTCP_TAB_HIT)
			return v;
		if (st == EMPTCP_TAB_NOT)
			return NULL;
	}
	return NULL;
}

/*
 * The IPv4 index's key (abi.h struct emptcp_tab_pfx_head) of address @k0
 * (an IPv4 trie key's word: the address in its high half) at the length
 * the first byte of @lens names (+ 1), into @w: the length, and the
 * IPv4-mapped address's second word with the bits past it cleared.
 */
static __always_inline void emptcp_tab_pfx_key(__u64 w[2], __u64 k0, __u64 lens)
{
	__u32 len = ((lens & 0xff) - 1) & 63;
	/* the top @len bits of 32, in network order */
	__u32 mask = 0xffffffff00000000ULL >> len;

	w[0] = len;
	w[1] = (k0 & (__u64)bpf_htonl(mask) << 32) | bpf_htonl(0xffff);
}

/*
 * IPv4 address @k0 (an IPv4 trie key's word: the address in the high
 * half) in prefix table @ref's IPv4 index (abi.h struct
 * emptcp_tab_pfx_head): the own slot of the address's key at each length
 * the head lists, longest first (emptcp_tab_probe() with first), a few
 * instructions each, for a walk's inline lookup. A slot that does not
 * tell, at a length longer than the first hit, leaves it to the trie (a
 * map's value is the longest match's), as every other lookup
 * (emptcp_tab_get()): full probes of several lengths, each ending at any
 * of its 32 slots, multiplied the verifier's paths (16 lookups in one
 * walk went past its 8,192 pending branches), where a trie lookup is one
 * call. The value in *@v. Returns an enum emptcp_tab_found, or -1 when
 * the head sends the lookup to the trie.
 */
static __always_inline int emptcp_tab_prefix4(struct emptcp_tab_ref ref, __u64 k0, __u64 **v)
{
	void *outer = emptcp_tab_outer(ref.flags);
	__u32 id = ref.id, bits = ref.flags >> EMPTCP_TAB_BITS_SHIFT;
	__u32 head = 1U << bits;
	__u64 *h, lens, w[2];
	int i, more = 0;
	void *t;

	if (!outer)
		return EMPTCP_TAB_NOT;
	t = bpf_map_lookup_elem(outer, &id);
	if (!t)
		return EMPTCP_TAB_NOT;
	h = bpf_map_lookup_elem(t, &head);
	if (!h)
		return EMPTCP_TAB_NOT;
	lens = *(volatile __u64 *)&h[3];
	if ((lens & 0xff) == EMPTCP_TAB_PFX_TRIE)
		return -1;
#pragma clang loop unroll(full)
	for (i = 0; i < EMPTCP_TAB_PFX_LENS; i++) {
		int m = 0;

		if (!(lens >> (8 * i) & 0xff))
			break;
		emptcp_tab_pfx_key(w, k0, lens >> (8 * i));
		*v = emptcp_tab_probe(outer, id, w, 2, bits, 1, &m);
		if (*v)
			return more ? EMPTCP_TAB_MORE : EMPTCP_TAB_HIT;
		more |= m;
	}
	return more ? EMPTCP_TAB_MORE : EMPTCP_TAB_NOT;
}

/*
 * The value of @key in table @ref names (id and layout; a slot table's
 * size in its flags) in *@out; with @first a slot table's key's own slot
 * only (emptcp_tab_probe()). Returns an enum emptcp_tab_found.
 */
static __always_inline int emptcp_tab_get(struct emptcp_tab_ref ref, const union emptcp_tab_key *key,
					  __u64 *out, int first)
{
	__u32 id = ref.id, bits = ref.flags >> EMPTCP_TAB_BITS_SHIFT;
	__u64 *v = NULL;
	int more = 0;
	void *t;

	/* no table (a stage loaded without its description: `check`) */
	if (ref.id == 0)
		return EMPTCP_TAB_NOT;
	switch (ref.layout) {
	case EMPTCP_LAYOUT_ADDR:
		v = emptcp_tab_probe(emptcp_tab_outer(ref.flags), id, key->words, 2, bits,
				     first, &more);
		break;
	case EMPTCP_LAYOUT_PAIR:
		v = emptcp_tab_probe(emptcp_tab_outer(ref.flags), id, key->words, 4, bits,
				     first, &more);
		break;
	case EMPTCP_LAYOUT_SUBFLOW:
		v = emptcp_tab_probe(emptcp_tab_outer(ref.flags), id, key->words, 5, bits,
				     first, &more);
		break;
	case EMPTCP_LAYOUT_PORT: {
		/* the port in host order is the index: no hash at all */
		__u32 port = bpf_ntohs(key->port.port);
		__u64 pv;

		t = bpf_map_lookup_elem(&emptcp_g_tab_port, &id);
		if (!t)
			return 0;
		v = bpf_map_lookup_elem(t, &port);
		if (!v)
			return 0;
		/* one load: presence and value from the same store */
		pv = *(volatile __u64 *)v;
		if (!(pv & EMPTCP_TAB_PORT_SET))
			return 0;
		*out = pv & ~EMPTCP_TAB_PORT_SET;
		return 1;
	}
	case EMPTCP_LAYOUT_PREFIX: {
		/*
		 * An IPv4 key is the only one of 32 bits (emptcp_tab_key_of):
		 * inline (@first), the index first, the trie when the index
		 * does not tell (no call of the full lookup: the same trie);
		 * else the trie.
		 * Each trie has its own lookup call: a call that the verifier
		 * sees with both tries' maps becomes the generic helper, an
		 * indirect call (+30 ns where that is a retpoline). The empty
		 * asm after each keeps clang from merging the two into one.
		 */
		int st = -1;

		if (key->prefix4.prefixlen == 32 && first)
			st = emptcp_tab_prefix4(ref, key->words[0], &v);
		if (st == EMPTCP_TAB_HIT)
			break;
		if (st == EMPTCP_TAB_NOT)
			return st;
		v = NULL;
		if (key->prefix4.prefixlen == 32) {
			t = bpf_map_lookup_elem(&emptcp_g_tab_prefix4, &id);
			if (t)
				v = bpf_map_lookup_elem(t, key);
			asm volatile("");
		} else {
			t = bpf_map_lookup_elem(&emptcp_g_tab_prefix, &id);
			if (t)
				v = bpf_map_lookup_elem(t, key);
			asm volatile("");
		}
		break;
	}
	}
	if (!v)
		return more ? EMPTCP_TAB_MORE : EMPTCP_TAB_NOT;
	*out = *(volatile __u64 *)v;
	return EMPTCP_TAB_HIT;
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
		return emptcp_tab_addr(ctx, r, ref.keyof == EMPTCP_KEYOF_DST, &k->words[0]);
	case EMPTCP_LAYOUT_PREFIX: {
		__u64 a[2];

		if (emptcp_tab_addr(ctx, r, ref.keyof == EMPTCP_KEYOF_DST, a) < 0)
			return -1;
		/* an IPv4-mapped IPv6 address has its IPv4 key, as in every table */
		if (a[0] != 0 || (__u32)a[1] != bpf_htonl(0xffff)) {
			k->prefix.prefixlen = 128;
			__builtin_memcpy(k->prefix.a, a, 16);
			return 0;
		}
		/*
		 * IPv4: prefixlen 32 and the address (a[1]'s high half) in
		 * one word. The words an IPv6 key would use are zeroed: the
		 * verifier checks both tries' lookups on either path.
		 */
		k->words[0] = (a[1] & 0xffffffff00000000ULL) | 32;
		k->words[1] = 0;
		k->words[2] = 0;
		return 0;
	}
	case EMPTCP_LAYOUT_PAIR:
		return emptcp_tab_addrs(ctx, r, rev ? &k->words[2] : &k->words[0],
					rev ? &k->words[0] : &k->words[2]);
	case EMPTCP_LAYOUT_SUBFLOW:
		th = emptcp_tcp(ctx, r);
		if (!th)
			return -1;
		/* word 4: sport, dport (network order), 4 bytes of zeros */
		if (rev)
			k->words[4] = (__u64)th->source << 16 | th->dest;
		else
			k->words[4] = (__u64)th->dest << 16 | th->source;
		return emptcp_tab_addrs(ctx, r, rev ? &k->words[2] : &k->words[0],
					rev ? &k->words[0] : &k->words[2]);
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
 * there) in *@out. Returns 1 when found, 0 when not there, -1 when a
 * header cannot be read.
 */
static __always_inline int emptcp_tab_lookup(emptcp_ctx *ctx, const struct emptcp_run *r,
					     struct emptcp_tab_ref ref, __u64 *out)
{
	union emptcp_tab_key k;

	if (emptcp_tab_key_of(ctx, r, ref, 0, &k) < 0)
		return -1;
	if (emptcp_tab_get(ref, &k, out, 0) == EMPTCP_TAB_HIT)
		return 1;
	if (!(ref.flags & EMPTCP_TAB_BIDIR))
		return 0;
	if (emptcp_tab_key_of(ctx, r, ref, 1, &k) < 0)
		return -1;
	return emptcp_tab_get(ref, &k, out, 0) == EMPTCP_TAB_HIT;
}

/*
 * Room for emptcp_tab_lookup_inline(): the key and the value found. A
 * caller whose callees need most of the 512-byte stack keeps it elsewhere
 * (the walk: in its per-CPU counter block, beside set_backup's 400-byte
 * frame).
 */
struct emptcp_tab_scratch {
	union emptcp_tab_key key;
	__u64 val;
};

/*
 * emptcp_tab_lookup()'s common case in a few instructions, for code that
 * runs it inline at many places (a walk's positions): the packet's
 * forward key built into @s->key, one probe of a slot table (the key's
 * own slot), the port array or the family's trie, the value into
 * @s->val. Returns 1 or 0 as emptcp_tab_lookup(), or EMPTCP_TAB_MORE when
 * only emptcp_tab_lookup() can tell: the slot holds another key, a miss
 * may hit the other way, or the key cannot be built (emptcp_tab_lookup()
 * then counts why). On EMPTCP_TAB_MORE the key is zeroed, so that the
 * verifier checks the full lookup the caller makes next in one state of
 * it, not in one per key layout and family.
 */
static __always_inline int emptcp_tab_lookup_inline(emptcp_ctx *ctx, const struct emptcp_run *r,
						    struct emptcp_tab_ref ref,
						    struct emptcp_tab_scratch *s)
{
	int found = EMPTCP_TAB_MORE;

	if (emptcp_tab_key_of(ctx, r, ref, 0, &s->key) == 0)
		found = emptcp_tab_get(ref, &s->key, &s->val, 1);
	if (found == EMPTCP_TAB_NOT && (ref.flags & EMPTCP_TAB_BIDIR))
		found = EMPTCP_TAB_MORE;
	if (found == EMPTCP_TAB_MORE)
		__builtin_memset(&s->key, 0, sizeof(s->key));
	return found;
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
	int found;

	if (ref.id == 0)
		return 1;
	found = emptcp_tab_lookup(ctx, r, ref, out);
	if (found <= 0) {
		emptcp_run_count(r, found < 0 ? EMPTCP_CNT_PARSE_ERR : EMPTCP_CNT_NO_KEY);
		return -1;
	}
	return 0;
}

#endif /* __EMPTCP_TABLES_H */
