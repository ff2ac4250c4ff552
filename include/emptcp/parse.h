/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp/parse.h - bounds-checked header parsing with a cursor.
 *
 * Needs:      vmlinux.h, <bpf/bpf_helpers.h>, <bpf/bpf_endian.h>.
 * Guarantees: every function takes a cursor and data_end, checks bounds
 *             before each dereference and returns a negative value on a
 *             short or malformed header, leaving the cursor where it was
 *             (callers then pass the packet untouched).
 * Limits:     up to EMPTCP_VLAN_MAX VLAN tags (802.1Q/802.1ad), IPv4 with
 *             options (IHL 5..15), IPv6 with up to EMPTCP_IPV6_EXT_MAX
 *             extension headers (hop-by-hop, routing, destination). IP
 *             fragments are reported as EMPTCP_EFRAG: emptcp never touches
 *             them. No tunnels.
 */
#ifndef __EMPTCP_PARSE_H
#define __EMPTCP_PARSE_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef EMPTCP_VLAN_MAX
#define EMPTCP_VLAN_MAX 2
#endif
#ifndef EMPTCP_IPV6_EXT_MAX
#define EMPTCP_IPV6_EXT_MAX 4
#endif
/* Largest TCP header offset emptcp handles (Ethernet, VLANs, IP, extensions). */
#ifndef EMPTCP_MAX_L4_OFF
#define EMPTCP_MAX_L4_OFF 160
#endif

#define EMPTCP_ETH_P_IP		0x0800
#define EMPTCP_ETH_P_IPV6	0x86DD
#define EMPTCP_ETH_P_8021Q	0x8100
#define EMPTCP_ETH_P_8021AD	0x88A8

#define EMPTCP_IPPROTO_TCP	6
#define EMPTCP_NEXTHDR_HOP	0
#define EMPTCP_NEXTHDR_ROUTING	43
#define EMPTCP_NEXTHDR_FRAGMENT	44
#define EMPTCP_NEXTHDR_DEST	60

#define EMPTCP_IP_MF		0x2000
#define EMPTCP_IP_OFFSET	0x1fff

/* Error codes of the parsers (negative). */
#define EMPTCP_ESHORT	(-1)	/* header runs past data_end */
#define EMPTCP_EBAD	(-2)	/* malformed header */
#define EMPTCP_EFRAG	(-3)	/* IP fragment */

struct emptcp_cursor {
	void *pos;
};

struct emptcp_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* Ethernet plus up to EMPTCP_VLAN_MAX tags. Returns the inner EtherType (host order). */
static __always_inline int emptcp_parse_eth(struct emptcp_cursor *nh, void *data_end,
					struct ethhdr **ethhdr)
{
	struct ethhdr *eth = nh->pos;
	struct emptcp_vlan_hdr *vh;
	__u16 proto;
	void *pos;

	if ((void *)(eth + 1) > data_end)
		return EMPTCP_ESHORT;
	pos = eth + 1;
	proto = bpf_ntohs(eth->h_proto);
#pragma unroll
	for (int i = 0; i < EMPTCP_VLAN_MAX; i++) {
		if (proto != EMPTCP_ETH_P_8021Q && proto != EMPTCP_ETH_P_8021AD)
			break;
		vh = pos;
		if ((void *)(vh + 1) > data_end)
			return EMPTCP_ESHORT;
		proto = bpf_ntohs(vh->proto);
		pos = vh + 1;
	}
	if (proto == EMPTCP_ETH_P_8021Q || proto == EMPTCP_ETH_P_8021AD)
		return EMPTCP_EBAD;	/* more tags than we walk */
	*ethhdr = eth;
	nh->pos = pos;
	return proto;
}

/* IPv4 with options. Returns the protocol number. */
static __always_inline int emptcp_parse_ipv4(struct emptcp_cursor *nh, void *data_end,
				       struct iphdr **iphdr)
{
	struct iphdr *iph = nh->pos;
	__u32 hdrsize;

	if ((void *)(iph + 1) > data_end)
		return EMPTCP_ESHORT;
	if (iph->version != 4 || iph->ihl < 5)
		return EMPTCP_EBAD;
	hdrsize = iph->ihl * 4;
	if (nh->pos + hdrsize > data_end)
		return EMPTCP_ESHORT;
	if (bpf_ntohs(iph->tot_len) < hdrsize)
		return EMPTCP_EBAD;
	if (iph->frag_off & bpf_htons(EMPTCP_IP_MF | EMPTCP_IP_OFFSET))
		return EMPTCP_EFRAG;
	*iphdr = iph;
	nh->pos += hdrsize;
	return iph->protocol;
}

struct emptcp_ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;	/* 8-octet units, not counting the first 8 */
};

/* IPv6 and its extension headers. Returns the upper-layer protocol. */
static __always_inline int emptcp_parse_ipv6(struct emptcp_cursor *nh, void *data_end,
					struct ipv6hdr **ip6hdr)
{
	struct ipv6hdr *ip6h = nh->pos;
	struct emptcp_ipv6_opt_hdr *oh;
	void *pos;
	__u8 next;

	if ((void *)(ip6h + 1) > data_end)
		return EMPTCP_ESHORT;
	if (ip6h->version != 6)
		return EMPTCP_EBAD;
	pos = ip6h + 1;
	next = ip6h->nexthdr;
#pragma unroll
	for (int i = 0; i < EMPTCP_IPV6_EXT_MAX; i++) {
		if (next == EMPTCP_NEXTHDR_FRAGMENT)
			return EMPTCP_EFRAG;
		if (next != EMPTCP_NEXTHDR_HOP && next != EMPTCP_NEXTHDR_ROUTING &&
		    next != EMPTCP_NEXTHDR_DEST)
			break;
		oh = pos;
		if ((void *)(oh + 1) > data_end)
			return EMPTCP_ESHORT;
		next = oh->nexthdr;
		pos += (oh->hdrlen + 1) * 8;
	}
	if (next == EMPTCP_NEXTHDR_HOP || next == EMPTCP_NEXTHDR_ROUTING ||
	    next == EMPTCP_NEXTHDR_DEST || next == EMPTCP_NEXTHDR_FRAGMENT)
		return EMPTCP_EBAD;	/* more extension headers than we walk */
	if (pos > data_end)
		return EMPTCP_ESHORT;
	*ip6hdr = ip6h;
	nh->pos = pos;
	return next;
}

/* TCP with options. Returns the header length in bytes (20..60). */
static __always_inline int emptcp_parse_tcp(struct emptcp_cursor *nh, void *data_end,
					struct tcphdr **tcphdr)
{
	struct tcphdr *th = nh->pos;
	__u32 len;

	if ((void *)(th + 1) > data_end)
		return EMPTCP_ESHORT;
	len = th->doff * 4;
	if (len < sizeof(*th))
		return EMPTCP_EBAD;
	if (nh->pos + len > data_end)
		return EMPTCP_ESHORT;
	*tcphdr = th;
	nh->pos += len;
	return len;
}

/* Where the layers of a TCP packet start, as offsets from data. */
struct emptcp_l34 {
	__u16 l3_off;
	__u16 l4_off;
	__u8 v6;
	__u8 pad[3];
};

/*
 * Parse Ethernet [VLAN] IPv4|IPv6 TCP from the start of the packet.
 * Returns 0 and fills @out for TCP, a negative EMPTCP_E* otherwise
 * (1 for a well-formed packet that is not TCP).
 */
static __always_inline int emptcp_parse_l34(void *data, void *data_end,
					    struct emptcp_l34 *out)
{
	struct emptcp_cursor nh = { .pos = data };
	struct ethhdr *eth;
	struct iphdr *iph;
	struct ipv6hdr *ip6h;
	struct tcphdr *th;
	int proto, l4;

	proto = emptcp_parse_eth(&nh, data_end, &eth);
	if (proto < 0)
		return proto;
	out->l3_off = nh.pos - data;
	if (proto == EMPTCP_ETH_P_IP) {
		l4 = emptcp_parse_ipv4(&nh, data_end, &iph);
		out->v6 = 0;
	} else if (proto == EMPTCP_ETH_P_IPV6) {
		l4 = emptcp_parse_ipv6(&nh, data_end, &ip6h);
		out->v6 = 1;
	} else {
		return 1;
	}
	if (l4 < 0)
		return l4;
	if (l4 != EMPTCP_IPPROTO_TCP)
		return 1;
	out->l4_off = nh.pos - data;
	if (out->l4_off > EMPTCP_MAX_L4_OFF)
		return EMPTCP_EBAD;
	l4 = emptcp_parse_tcp(&nh, data_end, &th);
	if (l4 < 0)
		return l4;
	return 0;
}

#endif /* __EMPTCP_PARSE_H */
