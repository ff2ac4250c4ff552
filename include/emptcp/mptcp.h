/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/mptcp.h - RFC 8684 (MPTCP v1) option layouts and parsers.
 *
 * Needs:      vmlinux.h, <bpf/bpf_helpers.h>, <bpf/bpf_endian.h>,
 *             emptcp/abi.h, emptcp/tcpopt.h.
 * Guarantees: lengths and flag bits as in RFC 8684 and Linux
 *             net/mptcp/protocol.h; parsers read only from an emptcp_tcpopt_walk
 *             buffer through masked indexes and check the option length
 *             before every field. v0 (RFC 6824) layouts are recognised only
 *             where they differ in length (MP_CAPABLE v0 ACK = 20, same as v1).
 * Limits:     the first option of each subtype is parsed (Linux sends at
 *             most one of each per segment).
 */
#ifndef __EMPTCP_MPTCP_H
#define __EMPTCP_MPTCP_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "abi.h"
#include "tcpopt.h"

/* Subtypes: EMPTCP_MPTCPOPT_* in tcpopt.h. */

/* Option lengths (kind and length bytes included). */
#define EMPTCP_TCPOLEN_MPTCP_MPC_SYN		4
#define EMPTCP_TCPOLEN_MPTCP_MPC_SYNACK		12
#define EMPTCP_TCPOLEN_MPTCP_MPC_ACK		20
#define EMPTCP_TCPOLEN_MPTCP_MPC_ACK_DATA	22
#define EMPTCP_TCPOLEN_MPTCP_MPC_ACK_DATA_CSUM	24
#define EMPTCP_TCPOLEN_MPTCP_MPJ_SYN		12
#define EMPTCP_TCPOLEN_MPTCP_MPJ_SYNACK		16
#define EMPTCP_TCPOLEN_MPTCP_MPJ_ACK		24
#define EMPTCP_TCPOLEN_MPTCP_DSS_BASE		4
#define EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4_ECHO	8
#define EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4_ECHO_PORT 10
#define EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4		16
#define EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4_PORT	18
#define EMPTCP_TCPOLEN_MPTCP_ADD_ADDR6_ECHO	20
#define EMPTCP_TCPOLEN_MPTCP_ADD_ADDR6_ECHO_PORT 22
#define EMPTCP_TCPOLEN_MPTCP_ADD_ADDR6		28
#define EMPTCP_TCPOLEN_MPTCP_ADD_ADDR6_PORT	30
#define EMPTCP_TCPOLEN_MPTCP_RM_ADDR_BASE	3
#define EMPTCP_TCPOLEN_MPTCP_PRIO		3
#define EMPTCP_TCPOLEN_MPTCP_PRIO_ALIGN		4	/* MP_PRIO + NOP */
#define EMPTCP_TCPOLEN_MPTCP_FAIL		12
#define EMPTCP_TCPOLEN_MPTCP_FASTCLOSE		12
#define EMPTCP_TCPOLEN_MPTCP_RST		4

/* MP_CAPABLE flags (byte 3) */
#define EMPTCP_MPTCP_CAP_CHECKSUM_REQD		0x80
#define EMPTCP_MPTCP_CAP_EXTENSIBILITY		0x40
#define EMPTCP_MPTCP_CAP_DENY_JOIN_ID0		0x20
#define EMPTCP_MPTCP_CAP_HMAC_SHA256		0x01
/* MP_JOIN, MP_PRIO: backup bit in byte 2 */
#define EMPTCP_MPTCP_BACKUP			0x01
/* DSS flags (byte 3) */
#define EMPTCP_MPTCP_DSS_DATA_FIN		0x10
#define EMPTCP_MPTCP_DSS_DSN64			0x08
#define EMPTCP_MPTCP_DSS_HAS_MAP		0x04
#define EMPTCP_MPTCP_DSS_ACK64			0x02
#define EMPTCP_MPTCP_DSS_HAS_ACK		0x01
/* ADD_ADDR: echo bit in byte 2 */
#define EMPTCP_MPTCP_ADDR_ECHO			0x01

/* TCP flags in byte 13 of the TCP header */
#define EMPTCP_TCP_FIN	0x01
#define EMPTCP_TCP_SYN	0x02
#define EMPTCP_TCP_RST	0x04
#define EMPTCP_TCP_PSH	0x08
#define EMPTCP_TCP_ACK	0x10

/* Parsed MP_CAPABLE. */
struct emptcp_mptcp_mpc {
	__u8 version;
	__u8 flags;
	__u8 len;
	__u8 has_skey;
	__u8 has_rkey;
	__u64 skey;	/* sender's key, as on the wire (big endian bytes) */
	__u64 rkey;
};

/* Parsed MP_JOIN (whichever form the length says). */
struct emptcp_mptcp_mpj {
	__u8 len;
	__u8 backup;
	__u8 addr_id;
	__u8 pad;
	__u32 token;	/* SYN: receiver's token (wire order) */
	__u32 nonce;	/* SYN, SYN-ACK: sender's random number (wire order) */
};

/* Parsed DSS header. */
struct emptcp_mptcp_dss {
	__u8 flags;
	__u8 len;
	__u8 has_csum;
	__u8 pad;
	__u64 data_ack;
	__u64 dsn;
	__u32 ssn;
	__u16 dll;
	__u16 csum;
};

/* Parsed ADD_ADDR. */
struct emptcp_mptcp_add_addr {
	__u8 len;
	__u8 echo;
	__u8 addr_id;
	__u8 v6;
	__u8 has_port;
	__u8 has_hmac;
	__u16 port;	/* wire order */
	__u8 addr[16];
};

static __always_inline __u64 emptcp_mptcp_read_be64(const struct emptcp_tcpopt_walk *w, __u32 off)
{
	__u64 v = 0;

#pragma unroll
	for (int i = 0; i < 8; i++)
		v = (v << 8) | emptcp_tcpopt_byte(w, off + i);
	return v;
}

static __always_inline __u32 emptcp_mptcp_read_be32(const struct emptcp_tcpopt_walk *w, __u32 off)
{
	__u32 v = 0;

#pragma unroll
	for (int i = 0; i < 4; i++)
		v = (v << 8) | emptcp_tcpopt_byte(w, off + i);
	return v;
}

/* Returns 0 on success, -1 if absent or malformed. Keys in host order. */
static __always_inline int emptcp_mptcp_parse_mpc(const struct emptcp_tcpopt_walk *w,
						  struct emptcp_mptcp_mpc *m)
{
	int off = emptcp_tcpopt_mptcp_off(w, EMPTCP_MPTCPOPT_MP_CAPABLE);
	__u8 len;

	if (off < 0)
		return -1;
	len = emptcp_tcpopt_byte(w, off + 1);
	m->len = len;
	m->version = emptcp_tcpopt_byte(w, off + 2) & 0x0f;
	m->flags = len >= 4 ? emptcp_tcpopt_byte(w, off + 3) : 0;
	m->has_skey = len >= EMPTCP_TCPOLEN_MPTCP_MPC_SYNACK;
	m->has_rkey = len >= EMPTCP_TCPOLEN_MPTCP_MPC_ACK;
	m->skey = m->has_skey ? emptcp_mptcp_read_be64(w, off + 4) : 0;
	m->rkey = m->has_rkey ? emptcp_mptcp_read_be64(w, off + 12) : 0;
	if (len != EMPTCP_TCPOLEN_MPTCP_MPC_SYN && len != EMPTCP_TCPOLEN_MPTCP_MPC_SYNACK &&
	    len != EMPTCP_TCPOLEN_MPTCP_MPC_ACK && len != EMPTCP_TCPOLEN_MPTCP_MPC_ACK_DATA &&
	    len != EMPTCP_TCPOLEN_MPTCP_MPC_ACK_DATA_CSUM)
		return -1;
	return 0;
}

static __always_inline int emptcp_mptcp_parse_mpj(const struct emptcp_tcpopt_walk *w,
						  struct emptcp_mptcp_mpj *j)
{
	int off = emptcp_tcpopt_mptcp_off(w, EMPTCP_MPTCPOPT_MP_JOIN);
	__u8 len;

	if (off < 0)
		return -1;
	len = emptcp_tcpopt_byte(w, off + 1);
	j->len = len;
	j->backup = emptcp_tcpopt_byte(w, off + 2) & EMPTCP_MPTCP_BACKUP;
	j->addr_id = emptcp_tcpopt_byte(w, off + 3);
	j->token = 0;
	j->nonce = 0;
	if (len == EMPTCP_TCPOLEN_MPTCP_MPJ_SYN) {
		j->token = emptcp_mptcp_read_be32(w, off + 4);
		j->nonce = emptcp_mptcp_read_be32(w, off + 8);
	} else if (len == EMPTCP_TCPOLEN_MPTCP_MPJ_SYNACK) {
		j->nonce = emptcp_mptcp_read_be32(w, off + 12);
	} else if (len == EMPTCP_TCPOLEN_MPTCP_MPJ_ACK) {
		j->backup = 0;
		j->addr_id = 0;
	} else {
		return -1;
	}
	return 0;
}

/* Expected DSS length for a flags byte. */
static __always_inline __u32 emptcp_mptcp_dss_len(__u8 flags, int csum)
{
	__u32 len = EMPTCP_TCPOLEN_MPTCP_DSS_BASE;

	if (flags & EMPTCP_MPTCP_DSS_HAS_ACK)
		len += (flags & EMPTCP_MPTCP_DSS_ACK64) ? 8 : 4;
	if (flags & EMPTCP_MPTCP_DSS_HAS_MAP)
		len += ((flags & EMPTCP_MPTCP_DSS_DSN64) ? 8 : 4) + 4 + 2 + (csum ? 2 : 0);
	return len;
}

/*
 * The checks both DSS parsers share, on the option's length byte @len and
 * flags byte @fl (read whatever @len says: a flags byte past a short option
 * is never used): fills d->flags, d->len, d->has_csum and clears
 * d->data_ack. Returns 0, or -1 when the length does not match the flags.
 */
static __always_inline int emptcp_mptcp_dss_head(__u8 len, __u8 fl, struct emptcp_mptcp_dss *d)
{
	if (len < EMPTCP_TCPOLEN_MPTCP_DSS_BASE)
		return -1;
	d->flags = fl;
	d->len = len;
	if (len == emptcp_mptcp_dss_len(fl, 0))
		d->has_csum = 0;
	else if ((fl & EMPTCP_MPTCP_DSS_HAS_MAP) && len == emptcp_mptcp_dss_len(fl, 1))
		d->has_csum = 1;
	else
		return -1;
	d->data_ack = 0;
	return 0;
}

static __always_inline int emptcp_mptcp_parse_dss(const struct emptcp_tcpopt_walk *w,
						  struct emptcp_mptcp_dss *d)
{
	int off = emptcp_tcpopt_mptcp_off(w, EMPTCP_MPTCPOPT_DSS);
	__u32 p;
	__u8 len, fl;

	if (off < 0)
		return -1;
	len = emptcp_tcpopt_byte(w, off + 1);
	fl = emptcp_tcpopt_byte(w, off + 3);
	if (emptcp_mptcp_dss_head(len, fl, d) < 0)
		return -1;
	p = off + 4;
	if (fl & EMPTCP_MPTCP_DSS_HAS_ACK) {
		if (fl & EMPTCP_MPTCP_DSS_ACK64) {
			d->data_ack = emptcp_mptcp_read_be64(w, p);
			p += 8;
		} else {
			d->data_ack = emptcp_mptcp_read_be32(w, p);
			p += 4;
		}
	}
	d->dsn = 0;
	d->ssn = 0;
	d->dll = 0;
	d->csum = 0;
	if (fl & EMPTCP_MPTCP_DSS_HAS_MAP) {
		if (fl & EMPTCP_MPTCP_DSS_DSN64) {
			d->dsn = emptcp_mptcp_read_be64(w, p);
			p += 8;
		} else {
			d->dsn = emptcp_mptcp_read_be32(w, p);
			p += 4;
		}
		d->ssn = emptcp_mptcp_read_be32(w, p);
		d->dll = (emptcp_tcpopt_byte(w, p + 4) << 8) | emptcp_tcpopt_byte(w, p + 5);
		if (d->has_csum)
			d->csum = (emptcp_tcpopt_byte(w, p + 6) << 8) |
				  emptcp_tcpopt_byte(w, p + 7);
	}
	return 0;
}

static __always_inline int emptcp_mptcp_parse_add_addr(const struct emptcp_tcpopt_walk *w,
						struct emptcp_mptcp_add_addr *a)
{
	int off = emptcp_tcpopt_mptcp_off(w, EMPTCP_MPTCPOPT_ADD_ADDR);
	__u32 alen;
	__u8 len;

	if (off < 0)
		return -1;
	len = emptcp_tcpopt_byte(w, off + 1);
	a->len = len;
	a->echo = emptcp_tcpopt_byte(w, off + 2) & EMPTCP_MPTCP_ADDR_ECHO;
	a->addr_id = emptcp_tcpopt_byte(w, off + 3);
	switch (len) {
	case EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4_ECHO:
	case EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4_ECHO_PORT:
	case EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4:
	case EMPTCP_TCPOLEN_MPTCP_ADD_ADDR4_PORT:
		a->v6 = 0;
		alen = 4;
		break;
	case EMPTCP_TCPOLEN_MPTCP_ADD_ADDR6_ECHO:
	case EMPTCP_TCPOLEN_MPTCP_ADD_ADDR6_ECHO_PORT:
	case EMPTCP_TCPOLEN_MPTCP_ADD_ADDR6:
	case EMPTCP_TCPOLEN_MPTCP_ADD_ADDR6_PORT:
		a->v6 = 1;
		alen = 16;
		break;
	default:
		return -1;
	}
	a->has_port = (len - 4 - alen == 2) || (len - 4 - alen == 10);
	a->has_hmac = len - 4 - alen >= 8;
	if (a->echo && a->has_hmac)
		return -1;
	__builtin_memset(a->addr, 0, sizeof(a->addr));
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if ((__u32)i >= alen)
			break;
		a->addr[i] = emptcp_tcpopt_byte(w, off + 4 + i);
	}
	a->port = 0;
	if (a->has_port)
		a->port = bpf_htons((emptcp_tcpopt_byte(w, off + 4 + alen) << 8) |
				    emptcp_tcpopt_byte(w, off + 5 + alen));
	return 0;
}

/*
 * The emptcp_ptype bits (abi.h) of a segment: @mptcp is the subtype bitmap,
 * @dss_flags byte 3 of the first DSS (if @mptcp has one), @add_addr_b2
 * byte 2 of the first ADD_ADDR (likewise).
 */
static __always_inline __u32 emptcp_mptcp_classify_bits(__u32 mptcp, __u8 dss_flags,
							__u8 add_addr_b2, __u8 tcp_flags,
							__u32 payload_len)
{
	__u32 t = 0;
	__u8 b;

	if (tcp_flags & EMPTCP_TCP_SYN)
		t |= 1U << EMPTCP_PT_SYN;
	if (tcp_flags & EMPTCP_TCP_FIN)
		t |= 1U << EMPTCP_PT_FIN;
	if (tcp_flags & EMPTCP_TCP_RST)
		t |= 1U << EMPTCP_PT_RST;
	if (!mptcp)
		return t | (1U << EMPTCP_PT_TCP_PLAIN);

	if (mptcp & (1U << EMPTCP_MPTCPOPT_MP_CAPABLE)) {
		if ((tcp_flags & (EMPTCP_TCP_SYN | EMPTCP_TCP_ACK)) == EMPTCP_TCP_SYN)
			t |= 1U << EMPTCP_PT_MP_CAPABLE_SYN;
		else if (tcp_flags & EMPTCP_TCP_SYN)
			t |= 1U << EMPTCP_PT_MP_CAPABLE_SYNACK;
		else
			t |= 1U << EMPTCP_PT_MP_CAPABLE_ACK;
	}
	if (mptcp & (1U << EMPTCP_MPTCPOPT_MP_JOIN)) {
		if ((tcp_flags & (EMPTCP_TCP_SYN | EMPTCP_TCP_ACK)) == EMPTCP_TCP_SYN)
			t |= 1U << EMPTCP_PT_MP_JOIN_SYN;
		else if (tcp_flags & EMPTCP_TCP_SYN)
			t |= 1U << EMPTCP_PT_MP_JOIN_SYNACK;
		else
			t |= 1U << EMPTCP_PT_MP_JOIN_ACK;
	}
	if (mptcp & (1U << EMPTCP_MPTCPOPT_DSS)) {
		b = dss_flags;
		if ((b & EMPTCP_MPTCP_DSS_HAS_MAP) && payload_len)
			t |= 1U << EMPTCP_PT_DSS_DATA;
		if ((b & EMPTCP_MPTCP_DSS_HAS_ACK) && !payload_len)
			t |= 1U << EMPTCP_PT_DSS_ACK;
		if (b & EMPTCP_MPTCP_DSS_DATA_FIN)
			t |= 1U << EMPTCP_PT_DATA_FIN;
	}
	if (mptcp & (1U << EMPTCP_MPTCPOPT_ADD_ADDR)) {
		b = add_addr_b2;
		t |= 1U << ((b & EMPTCP_MPTCP_ADDR_ECHO) ? EMPTCP_PT_ADD_ADDR_ECHO :
							   EMPTCP_PT_ADD_ADDR);
	}
	if (mptcp & (1U << EMPTCP_MPTCPOPT_RM_ADDR))
		t |= 1U << EMPTCP_PT_RM_ADDR;
	if (mptcp & (1U << EMPTCP_MPTCPOPT_MP_PRIO))
		t |= 1U << EMPTCP_PT_MP_PRIO;
	if (mptcp & (1U << EMPTCP_MPTCPOPT_MP_FAIL))
		t |= 1U << EMPTCP_PT_MP_FAIL;
	if (mptcp & (1U << EMPTCP_MPTCPOPT_MP_FASTCLOSE))
		t |= 1U << EMPTCP_PT_MP_FASTCLOSE;
	if (mptcp & (1U << EMPTCP_MPTCPOPT_MP_TCPRST))
		t |= 1U << EMPTCP_PT_MP_TCPRST;
	return t;
}

/*
 * Classify a TCP segment into the emptcp_ptype bits (abi.h) from its TCP
 * flags, option walk and payload length.
 */
static __always_inline __u32 emptcp_mptcp_classify(const struct emptcp_tcpopt_walk *w,
						   __u8 tcp_flags, __u32 payload_len)
{
	int dss = emptcp_tcpopt_mptcp_off(w, EMPTCP_MPTCPOPT_DSS);
	int aa = emptcp_tcpopt_mptcp_off(w, EMPTCP_MPTCPOPT_ADD_ADDR);
	__u8 df = 0, a2 = 0;

	/* a DSS shorter than 4 bytes has no flags byte: 0 (as emptcp_tcpopt_sum) */
	if (dss >= 0 && emptcp_tcpopt_byte(w, dss + 1) >= 4)
		df = emptcp_tcpopt_byte(w, dss + 3);
	if (aa >= 0)
		a2 = emptcp_tcpopt_byte(w, aa + 2);
	return emptcp_mptcp_classify_bits(w->mptcp, df, a2, tcp_flags, payload_len);
}

/* The same from a struct emptcp_tcpopt_sum. */
static __always_inline __u32 emptcp_mptcp_classify_sum(const struct emptcp_tcpopt_sum *s,
						       __u8 tcp_flags, __u32 payload_len)
{
	return emptcp_mptcp_classify_bits(s->mptcp, s->dss_flags, s->add_addr_b2, tcp_flags,
				   payload_len);
}

/* Longest DSS: header, 64-bit data ACK, 64-bit DSN, SSN, length, checksum. */
#define EMPTCP_TCPOLEN_MPTCP_DSS_MAX		28

/*
 * Big-endian words read in place from packet memory, one load each: the
 * verifier allows unaligned packet reads where the CPU does them well
 * (x86-64, arm64); never pass a pointer to the stack, whose accesses must
 * be aligned.
 */
static __always_inline __u64 emptcp_mptcp_pkt_be32(const __u8 *p)
{
	return bpf_ntohl(*(const __u32 *)p);
}

static __always_inline __u64 emptcp_mptcp_pkt_be64(const __u8 *p)
{
	return bpf_be64_to_cpu(*(const __u64 *)p);
}

/*
 * emptcp_mptcp_parse_dss() on a DSS read in place: @o points at its kind byte, and
 * the caller has checked that EMPTCP_TCPOLEN_MPTCP_DSS_MAX bytes from @o are
 * readable (bytes past the option's length are never used). Same checks
 * and results as emptcp_mptcp_parse_dss().
 */
static __always_inline int emptcp_mptcp_parse_dss_at(const __u8 *o, struct emptcp_mptcp_dss *d)
{
	const __u8 *p;
	__u8 fl = o[3];

	if (emptcp_mptcp_dss_head(o[1], fl, d) < 0)
		return -1;
	/* constant offsets per branch (p stays a bounded packet pointer) */
	p = o + 4;
	if (fl & EMPTCP_MPTCP_DSS_HAS_ACK) {
		if (fl & EMPTCP_MPTCP_DSS_ACK64) {
			d->data_ack = emptcp_mptcp_pkt_be64(p);
			p = o + 12;
		} else {
			d->data_ack = emptcp_mptcp_pkt_be32(p);
			p = o + 8;
		}
	}
	d->dsn = 0;
	d->ssn = 0;
	d->dll = 0;
	d->csum = 0;
	if (fl & EMPTCP_MPTCP_DSS_HAS_MAP) {
		if (fl & EMPTCP_MPTCP_DSS_DSN64) {
			d->dsn = emptcp_mptcp_pkt_be64(p);
			p += 8;
		} else {
			d->dsn = emptcp_mptcp_pkt_be32(p);
			p += 4;
		}
		d->ssn = emptcp_mptcp_pkt_be32(p);
		d->dll = (p[4] << 8) | p[5];
		if (d->has_csum)
			d->csum = (p[6] << 8) | p[7];
	}
	return 0;
}

#endif /* __EMPTCP_MPTCP_H */
