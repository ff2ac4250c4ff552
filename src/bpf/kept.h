/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kept.h - the map blk_subflow and add_subflow share: ADD_ADDR options
 * taken out, per connection, for both hooks. One definition, so that both
 * stages (and a walk program holding both) declare it once.
 */
#ifndef __EMPTCP_KEPT_H
#define __EMPTCP_KEPT_H

/* Kept ADD_ADDR options per connection, shared by both hooks. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct emptcp_flow_key);
	__type(value, struct emptcp_kept);
} emptcp_g_kept SEC(".maps");

#endif /* __EMPTCP_KEPT_H */
