/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * flowtab.h - a stage's per-subflow state: a set-associative cache in an
 * ARRAY map that the stage probes itself, as the tables do (tables.h).
 * An LRU hash costs ~20 ns per packet in the kernel's lookup (hashing the
 * 40-byte key, the bucket's list, the LRU's reference bit); an array slot
 * is an inlined bounds check and an address (docs/design.md, Cost).
 *
 * A table is FLOWTAB_SLOTS slots in sets of FLOWTAB_WAYS. A slot is the
 * key (struct emptcp_flow_key with .pad = FLOWTAB_LIVE: an all-zero slot
 * is free and never equals a key) followed by the stage's state. A key's
 * set is a hash of it. A new key takes a free way of its set, else a
 * random one, whose state starts over: with 65,536 slots in sets of 4 a
 * fifth subflow in one set is rare below ~10,000 subflows (Poisson: at
 * 10,000, ~7 of the 16,384 sets), where an LRU hash would hold 65,536
 * and then drop the least recent anywhere.
 *
 * Concurrency: as with the LRU map's values, state is updated in place by
 * every CPU that sees the subflow. Two CPUs that start two new subflows of
 * one set at the same instant may take the same way: one of the two then
 * starts over on its next packet.
 *
 * Userspace (emptcp stats) reads a table as an array and keeps the slots
 * whose key is live.
 */
#ifndef __EMPTCP_FLOWTAB_H
#define __EMPTCP_FLOWTAB_H

#define FLOWTAB_SET_BITS	14
#define FLOWTAB_SETS	(1U << FLOWTAB_SET_BITS)
#define FLOWTAB_WAYS	4
#define FLOWTAB_SLOTS	(FLOWTAB_SETS * FLOWTAB_WAYS)
/* emptcp_flow_key.pad of a slot in use */
#define FLOWTAB_LIVE	1

/*
 * An ARRAY map @name of @slot_type: struct { struct emptcp_flow_key key;
 * then the state } (the key is 40 bytes: the state starts 8-aligned).
 */
#define FLOWTAB(name, slot_type)					\
	struct {							\
		__uint(type, BPF_MAP_TYPE_ARRAY);			\
		__uint(max_entries, FLOWTAB_SLOTS);			\
		__type(key, __u32);					\
		__type(value, slot_type);				\
	} name SEC(".maps")

/*
 * The set of @k: the top bits of a multilinear hash of its five 64-bit
 * words (odd constants; the five products are independent, not a chain).
 */
static __always_inline __u32 flowtab_set(const struct emptcp_flow_key *k)
{
	const __u64 *w = (const __u64 *)k;
	__u64 h;

	h = w[0] * 0x9e3779b97f4a7c15ULL + w[1] * 0xc2b2ae3d27d4eb4fULL +
	    w[2] * 0x165667b19e3779f9ULL + w[3] * 0xd6e8feb86659fd93ULL +
	    w[4] * 0xff51afd7ed558ccdULL;
	return (__u32)(h >> (64 - FLOWTAB_SET_BITS));
}

static __always_inline int flowtab_eq(const struct emptcp_flow_key *a,
				      const struct emptcp_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	__u64 d = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*a) / 8); i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

/*
 * The slot of @k (whose .pad the caller set to FLOWTAB_LIVE) in @map, or,
 * with @create, a slot for it: free, or taken from another key at random;
 * *@fresh says which (the caller then writes the key and its first state).
 * NULL: not there and not @create.
 */
static __always_inline void *flowtab_find(void *map, const struct emptcp_flow_key *k, int create,
					  int *fresh)
{
	struct emptcp_flow_key *s, *free = NULL;
	__u32 base = flowtab_set(k) * FLOWTAB_WAYS, i;

	*fresh = 0;
#pragma unroll
	for (int w = 0; w < FLOWTAB_WAYS; w++) {
		i = base + w;
		s = bpf_map_lookup_elem(map, &i);
		if (!s)
			return NULL;
		if (flowtab_eq(s, k))
			return s;
		if (!free && s->pad != FLOWTAB_LIVE)
			free = s;
	}
	if (!create)
		return NULL;
	if (!free) {
		i = base + (bpf_get_prandom_u32() & (FLOWTAB_WAYS - 1));
		free = bpf_map_lookup_elem(map, &i);
		if (!free)
			return NULL;
	}
	*fresh = 1;
	return free;
}

/*
 * Makes the fresh slot @s (flowtab_find() said so) @k's, its @state_size
 * bytes of state after the key zeroed (a constant: the size of the state).
 */
static __always_inline void flowtab_claim(struct emptcp_flow_key *s,
					  const struct emptcp_flow_key *k, __u32 state_size)
{
	__builtin_memset(s + 1, 0, state_size);
	*s = *k;
}

/* Frees the slot whose key is @s: later lookups miss it. */
static __always_inline void flowtab_free(struct emptcp_flow_key *s)
{
	s->pad = 0;
}

#endif /* __EMPTCP_FLOWTAB_H */
