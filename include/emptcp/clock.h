/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/clock.h - the time a stage reads: exact, or as of the last tick.
 *
 * Needs:      vmlinux.h (enum bpf_func_id, for the CO-RE check below).
 * Guarantees: emptcp_now_ns() is CLOCK_MONOTONIC in nanoseconds
 *             (bpf_ktime_get_ns). emptcp_now_coarse_ns() is the same clock
 *             as of the last timer tick (bpf_ktime_get_coarse_ns, Linux
 *             5.11): never ahead of emptcp_now_ns(), at most one tick
 *             (1/HZ: 4 ms at HZ=250) behind, and about 30 ns cheaper per
 *             read in a KVM guest (docs/design.md, Cost). Before 5.11 it is
 *             emptcp_now_ns(): the CO-RE relocation makes the choice a
 *             constant at load time, and an older kernel never sees the call
 *             to a helper it lacks (dead code is removed before helper calls
 *             are resolved), as ctx/xdp.h does for bpf_xdp_load_bytes.
 * Limits:     do not subtract one clock's reading from the other's: the
 *             coarse one lags by up to a tick.
 */
#ifndef __EMPTCP_CLOCK_H
#define __EMPTCP_CLOCK_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

static __always_inline __u64 emptcp_now_ns(void)
{
	return bpf_ktime_get_ns();
}

static __always_inline __u64 emptcp_now_coarse_ns(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_ktime_get_coarse_ns))
		return bpf_ktime_get_coarse_ns();
	return bpf_ktime_get_ns();
}

#endif /* __EMPTCP_CLOCK_H */
