/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/emptcp.h - everything a selector or actor needs, in the right order.
 *
 * Needs:      vmlinux.h included first; -DEMPTCP_XDP or -DEMPTCP_TC.
 * Guarantees: includes the libbpf helper headers and every emptcp header.
 * Limits:     see each header.
 */
#ifndef __EMPTCP_EMPTCP_H
#define __EMPTCP_EMPTCP_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "abi.h"
#include "clock.h"
#include "csum.h"
#include "ctx.h"
#include "parse.h"
#include "tcpopt.h"
#include "mptcp.h"
#include "grow.h"
#include "chain.h"

#endif /* __EMPTCP_EMPTCP_H */
