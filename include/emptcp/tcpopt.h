/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/tcpopt.h - bounded walk over TCP options.
 *
 * Needs:      vmlinux.h, <bpf/bpf_helpers.h>; bpf_loop() (Linux >= 5.17).
 * Guarantees: options are copied out of the packet into a stack buffer
 *             (tcpopt_buf) and walked there, so no packet pointer crosses
 *             a loop. A walk stops at EOL, at the end of the option area,
 *             or at the first malformed option (length 0/1, or running past
 *             the area), reporting it in .err. Every TCP and MPTCP option
 *             seen is summarised; the first MPTCP option of each subtype is
 *             remembered by offset.
 * Limits:     40 option bytes (a 60-byte header), EMPTCP_TCPOPT_MAX options.
 *             The walk callback is a real (non-inline) function because
 *             bpf_loop needs one; the verifier checks it once, which keeps
 *             the state count of option walks small.
 */
#ifndef __EMPTCP_TCPOPT_H
#define __EMPTCP_TCPOPT_H

#ifndef EMPTCP_TCPOPT_MAX
#define EMPTCP_TCPOPT_MAX 40
#endif

#define TCPOPT_EOL_KIND		0
#define TCPOPT_NOP_KIND		1
#define TCPOPT_MSS_KIND		2
#define TCPOPT_WSCALE_KIND	3
#define TCPOPT_SACKOK_KIND	4
#define TCPOPT_SACK_KIND	5
#define TCPOPT_TS_KIND		8
#define TCPOPT_MPTCP_KIND	30

#define TCP_MAX_OPT_LEN		40
#define TCP_MAX_HDR_LEN		60

/* Buffer mask: indexes are masked with it before every stack access. */
#define TCPOPT_BUF_MASK		63

struct tcpopt_walk {
	__u8 b[TCPOPT_BUF_MASK + 1];	/* option bytes, b[0..len) valid */
	__u32 len;			/* option area length (0..40) */
	__u32 off;			/* walk position */
	__s32 err;			/* 0, or -1 when an option is malformed */
	__u32 mptcp;			/* bit (1 << subtype) per MPTCP subtype seen */
	__u32 kinds;			/* bit (1 << kind) per TCP option kind < 32 */
	__u8 mp_off[16];		/* offset+1 of the first MPTCP option of a subtype */
	__u8 mp_count;			/* MPTCP options seen */
	__u8 ts_off;			/* offset+1 of the timestamp option */
	__u8 ws_off;			/* offset+1 of window scale */
	__u8 pad;
};

static long tcpopt_walk_cb(__u64 i, void *arg)
{
	struct tcpopt_walk *w = arg;
	__u32 off = w->off;
	__u8 kind, len, sub;

	if (off >= w->len)
		return 1;
	kind = w->b[off & TCPOPT_BUF_MASK];
	if (kind == TCPOPT_EOL_KIND)
		return 1;
	if (kind == TCPOPT_NOP_KIND) {
		w->off = off + 1;
		return 0;
	}
	if (off + 1 >= w->len) {
		w->err = -1;
		return 1;
	}
	len = w->b[(off + 1) & TCPOPT_BUF_MASK];
	if (len < 2 || off + len > w->len) {
		w->err = -1;
		return 1;
	}
	if (kind < 32)
		w->kinds |= 1U << kind;
	if (kind == TCPOPT_MPTCP_KIND) {
		if (len < 3) {
			w->err = -1;
			return 1;
		}
		sub = w->b[(off + 2) & TCPOPT_BUF_MASK] >> 4;
		if (!(w->mptcp & (1U << sub)))
			w->mp_off[sub & 15] = off + 1;
		w->mptcp |= 1U << sub;
		w->mp_count++;
	} else if (kind == TCPOPT_TS_KIND && len == 10) {
		w->ts_off = off + 1;
	} else if (kind == TCPOPT_WSCALE_KIND && len == 3) {
		w->ws_off = off + 1;
	}
	w->off = off + len;
	return 0;
}

/* Walk the @w->len option bytes already in @w->b. Returns @w->err. */
static __always_inline int tcpopt_walk_buf(struct tcpopt_walk *w)
{
	w->off = 0;
	w->err = 0;
	w->mptcp = 0;
	w->kinds = 0;
	w->mp_count = 0;
	w->ts_off = 0;
	w->ws_off = 0;
	__builtin_memset(w->mp_off, 0, sizeof(w->mp_off));
	bpf_loop(EMPTCP_TCPOPT_MAX, tcpopt_walk_cb, w, 0);
	return w->err;
}

/*
 * The byte at @off of the buffer, masked so the verifier sees a bounded
 * stack index.
 */
static __always_inline __u8 tcpopt_byte(const struct tcpopt_walk *w, __u32 off)
{
	return w->b[off & TCPOPT_BUF_MASK];
}

/* Offset of the first MPTCP option of @sub, or -1. */
static __always_inline int tcpopt_mptcp_off(const struct tcpopt_walk *w, __u8 sub)
{
	__u8 o = w->mp_off[sub & 15];

	return o ? (int)o - 1 : -1;
}

#endif /* __EMPTCP_TCPOPT_H */
