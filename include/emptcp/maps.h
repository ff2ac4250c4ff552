/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/maps.h - the chain's maps: the stage programs by slot (the
 * tail-call table), stage descriptions, attach points, counters and the
 * XDP per-packet context slot.
 *
 * Needs:      vmlinux.h.
 * Guarantees: every stage object declares these maps identically, so that
 *             emptcp can share them (reuse_fd, after comparing type, key
 *             size, value size and max entries) between objects built
 *             separately. Public headers define no maps except these and
 *             tables.h's outer maps: those maps ARE the chain's ABI.
 * Limits:     EMPTCP_MAX_SLOTS slots and EMPTCP_MAX_ATTACH attach points
 *             per hook type (abi.h).
 */
#ifndef __EMPTCP_MAPS_H
#define __EMPTCP_MAPS_H

#include <bpf/bpf_helpers.h>
#include "abi.h"

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

#endif /* __EMPTCP_MAPS_H */
