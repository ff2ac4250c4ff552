// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * skb_fields - a tc probe that counts, per IPv4 source address class, the
 * skb fields that differ between a forwarded and a redirected packet: a
 * socket still attached (skb->sk), the delivery time (tstamp, its type,
 * in the future or not), mark, priority, queue_mapping, GSO segments.
 * Used to find why `redirect` starved a subflow sharing a link (README,
 * use case 1): attach at the egress of the shaped link, before its qdisc.
 *
 *   clang-19 -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu \
 *       -c skb_fields.bpf.c -o skb_fields.o
 *   ip netns exec HV tc qdisc add dev LINK clsact
 *   ip netns exec HV tc filter add dev LINK egress bpf da obj skb_fields.o sec tc
 *   bpftool map dump id $(bpftool prog show id PROG | grep -o 'map_ids [0-9]*' ...)
 *
 * Slots: 0 = 10.10.0.1 (the tenant's first address), 1 = 10.10.0.11
 * (its second), 2 = 10.31.0.1 (the background flow), 3 = other TCP.
 * Values: struct skb_stat, ten u64 in order.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct skb_stat {
	__u64 n, sk, ts_nonzero, ts_future, ts_mono, mark, priority, gso_segs, queue_mapping, future_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct skb_stat);
} skb_stats SEC(".maps");

SEC("tc")
int skb_fields(struct __sk_buff *skb)
{
	void *d = (void *)(long)skb->data, *e = (void *)(long)skb->data_end;
	struct ethhdr *eth = d;
	struct iphdr *ip = d + sizeof(*eth);
	struct skb_stat *v;
	__u32 k, s;
	__u64 now;

	if ((void *)(ip + 1) > e || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != 6)
		return TC_ACT_UNSPEC;
	s = bpf_ntohl(ip->saddr);
	k = s == 0x0a0a0001 ? 0 : s == 0x0a0a000b ? 1 : s == 0x0a1f0001 ? 2 : 3;
	v = bpf_map_lookup_elem(&skb_stats, &k);
	if (!v)
		return TC_ACT_UNSPEC;
	now = bpf_ktime_get_ns();
	v->n++;
	v->sk += skb->sk != 0;
	v->ts_nonzero += skb->tstamp != 0;
	if (skb->tstamp > now) {
		v->ts_future++;
		v->future_ns += skb->tstamp - now;
	}
	v->ts_mono += skb->tstamp_type == BPF_SKB_TSTAMP_DELIVERY_MONO;
	v->mark += skb->mark != 0;
	v->priority += skb->priority != 0;
	v->gso_segs += skb->gso_segs;
	v->queue_mapping += skb->queue_mapping != 0;
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
