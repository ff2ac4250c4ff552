//! Golden packet tests of the stages that do not rewrite TCP: `redirect`
//! and `set_mark` (verdicts, the skb mark, the packet untouched) and the
//! observers `get_connect`, `get_subflow` (the events they send, read from
//! the ring buffer as `emptcp events` does) and `record` (the per-subflow
//! record, read as `emptcp stats` does), through BPF_PROG_TEST_RUN on XDP
//! and TC, IPv4 and IPv6. Expected values come from the packets the test
//! built, not from the C code.
//!
//! Needs root (BPF_PROG_TEST_RUN, bpffs); otherwise prints "SKIPPED".

#[allow(dead_code)]
mod pktlib;

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::Duration;

use emptcp::chain::types::emptcp_event;
use emptcp::policy::Policy;
use emptcp::testrun::Harness;
use emptcp::Hook;
use libbpf_rs::{MapCore, MapFlags, MapHandle, RingBufferBuilder};

use pktlib::build::*;
use pktlib::opts::*;

const HOOKS: [Hook; 2] = [Hook::Xdp, Hook::TcEgress];
const XDP_PASS: i32 = 2;
const XDP_REDIRECT: i32 = 4;
const TC_ACT_UNSPEC: i32 = -1;
const TC_ACT_REDIRECT: i32 = 7;

fn root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root ({test})");
        return false;
    }
    true
}

fn families() -> [(IpAddr, IpAddr); 2] {
    [
        ("10.1.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap()),
        ("fd00:1::1".parse().unwrap(), "fd00:1::2".parse().unwrap()),
    ]
}

/// One chain: `sel` selectors (TOML bodies) then `act` actors.
fn rig(hook: Hook, sel: &[String], act: &[&str]) -> Harness {
    let mut t = format!("[[chain]]\nname = \"c\"\ndev = \"lo\"\nhook = \"{hook}\"\n");
    for s in sel {
        t += &format!("[[chain.select]]\n{s}\n");
    }
    for a in act {
        t += &format!("[[chain.act]]\n{a}\n");
    }
    let p = Policy::parse(&t, "fixture.toml").unwrap_or_else(|e| panic!("{e}\n{t}"));
    Harness::new(hook, &p.chains).unwrap_or_else(|e| panic!("Harness::new({hook}): {e:#}\n{t}"))
}

fn src_sel(a: IpAddr) -> String {
    format!("kind = \"ip_pair\"\nsrc = \"{a}\"")
}

#[test]
fn redirect_returns_the_redirect_verdict_and_leaves_the_packet() {
    if !root("redirect_returns_the_redirect_verdict_and_leaves_the_packet") {
        return;
    }
    for hook in HOOKS {
        for (c, s) in families() {
            let h = rig(hook, &[src_sel(c)], &["kind = \"redirect\"\ndev = \"lo\""]);
            let (redirect, pass) = if hook == Hook::Xdp {
                (XDP_REDIRECT, XDP_PASS)
            } else {
                (TC_ACT_REDIRECT, TC_ACT_UNSPEC)
            };
            let pkt = Pkt::ip(c, s)
                .flags(ACK)
                .opts(dss_ack(7))
                .payload(100)
                .build();
            let o = h.run(&pkt).expect("test_run");
            assert_eq!(o.ret, redirect, "{hook} {c}: selected packet redirected");
            assert_eq!(o.data, pkt, "{hook} {c}: redirect leaves the bytes");
            assert_eq!(h.counter(Some((0, 1)), "hit"), 1, "{hook} {c}: hit counted");
            let back = Pkt::ip(s, c).flags(ACK).opts(dss_ack(7)).build();
            let o = h.run(&back).expect("test_run");
            assert_eq!(o.ret, pass, "{hook} {c}: unselected packet passes");
            assert_eq!(o.data, back);
        }
    }
}

#[test]
fn set_mark_sets_the_skb_mark_on_tc_only() {
    if !root("set_mark_sets_the_skb_mark_on_tc_only") {
        return;
    }
    for (c, s) in families() {
        let h = rig(
            Hook::TcEgress,
            &[src_sel(c)],
            &["kind = \"set_mark\"\nmark = 0x20\nmask = 0xf0"],
        );
        let pkt = Pkt::ip(c, s).flags(ACK).opts(dss_ack(1)).build();
        for (before, after) in [(0u32, 0x20u32), (0x1234_5605, 0x1234_5625), (0xff, 0x2f)] {
            let (o, mark) = h.run_mark(&pkt, before).expect("test_run");
            assert_eq!(o.ret, TC_ACT_UNSPEC, "set_mark is not terminal");
            assert_eq!(o.data, pkt, "set_mark leaves the bytes");
            assert_eq!(mark, after, "mark {before:#x} -> {after:#x} (mask 0xf0)");
        }
        let other = Pkt::ip(s, c).flags(ACK).build();
        let (_, mark) = h.run_mark(&other, 5).expect("test_run");
        assert_eq!(mark, 5, "unselected packet keeps its mark");

        // XDP packets have no mark: refused when the policy is read
        let t = "[[chain]]\nname = \"c\"\ndev = \"lo\"\nhook = \"xdp\"\n\
                 [[chain.act]]\nkind = \"set_mark\"\nmark = 1\n";
        let e = Policy::parse(t, "x.toml").expect_err("set_mark on XDP refused");
        assert!(e.to_string().contains("needs a tc hook"), "{e}");
    }
}

/// Registers as event reader 0 of a harness and collects what arrives.
struct Reader {
    rb: libbpf_rs::RingBuffer<'static>,
    got: &'static RefCell<Vec<emptcp_event>>,
}

impl Reader {
    fn new(h: &Harness) -> Reader {
        let readers = MapHandle::from_pinned_path(h.dir().join("emptcp_g_readers"))
            .expect("readers map pinned");
        readers
            .update(
                &0u32.to_ne_bytes(),
                &std::process::id().to_ne_bytes(),
                MapFlags::ANY,
            )
            .expect("register reader");
        let ring = MapHandle::from_pinned_path(h.dir().join("emptcp_g_events")).expect("ring");
        let got: &'static RefCell<Vec<emptcp_event>> =
            Box::leak(Box::new(RefCell::new(Vec::new())));
        let mut b = RingBufferBuilder::new();
        b.add(&ring, move |d: &[u8]| {
            got.borrow_mut()
                .push(emptcp::events::decode(d).expect("an emptcp_event"));
            0
        })
        .expect("ring buffer");
        Reader {
            rb: b.build().expect("ring buffer"),
            got,
        }
    }
    fn take(&self) -> Vec<emptcp_event> {
        self.rb.poll(Duration::from_millis(50)).expect("poll");
        self.got.borrow_mut().drain(..).collect()
    }
}

fn addr16(a: IpAddr) -> [u8; 16] {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v) => b[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => b = v.octets(),
    }
    b
}

#[test]
fn get_connect_and_get_subflow_report_what_the_options_carry() {
    if !root("get_connect_and_get_subflow_report_what_the_options_carry") {
        return;
    }
    let (skey, rkey) = (0x0102_0304_0506_0708u64, 0x8877_6655_4433_2211u64);
    for hook in HOOKS {
        for (c, s) in families() {
            let h = rig(
                hook,
                &[],
                &["kind = \"get_connect\"", "kind = \"get_subflow\""],
            );
            let r = Reader::new(&h);
            let p = |f: u8, o: Vec<u8>| Pkt::ip(c, s).ports(40000, 5201).flags(f).opts(o).build();
            // SYN: no key yet; SYN-ACK: one key; ACK: both; data: none
            for (pkt, want) in [
                (p(SYN, mpc_syn()), 0usize),
                (p(SYN | ACK, mpc_synack(skey)), 1),
                (p(ACK, mpc_ack(skey, rkey)), 1),
                (p(ACK, dss_ack(5)), 0),
            ] {
                let o = h.run(&pkt).expect("test_run");
                assert_eq!(o.data, pkt, "{hook} {c}: observers never change a packet");
                assert_eq!(r.take().len(), want, "{hook} {c}: events of {pkt:02x?}");
            }
            // the ACK once more, checked field by field
            h.run(&p(ACK, mpc_ack(skey, rkey))).expect("test_run");
            let ev = r.take();
            let e = ev.first().expect("an event for the MP_CAPABLE ACK");
            assert_eq!(
                (e.kind, e.skey, e.rkey, e.version),
                (1, skey, rkey, 1),
                "{hook} {c}"
            );
            assert_eq!(e.saddr, addr16(c), "{hook} {c}: source");
            assert_eq!(e.daddr, addr16(s), "{hook} {c}: destination");
            assert_eq!(u16::from_be(e.sport), 40000);
            assert_eq!(u16::from_be(e.dport), 5201);
            // MP_JOIN SYN: token, nonce, address id, backup
            h.run(&p(SYN, mpj_syn(true, 3, 0xdead_beef, 0x1234_5678)))
                .expect("test_run");
            let ev = r.take();
            let j = ev.first().expect("an event for the MP_JOIN SYN");
            assert_eq!(
                (j.kind, j.token, j.nonce, j.addr_id, j.backup),
                (2, 0xdead_beef, 0x1234_5678, 3, 1),
                "{hook} {c}: MP_JOIN SYN fields"
            );
            // MP_CAPABLE ACK overrunning the option area (length 20, 12 there)
            let mut bad = mpc_ack(skey, rkey);
            bad.truncate(12); // the option area ends 8 bytes short
            let bad = p(ACK, bad);
            let o = h.run(&bad).expect("test_run");
            assert_eq!(o.data, bad);
            assert!(
                r.take().is_empty(),
                "{hook} {c}: no event from a malformed option"
            );
        }
    }
}

#[test]
fn record_counts_packets_bytes_retransmissions_and_rtt() {
    if !root("record_counts_packets_bytes_retransmissions_and_rtt") {
        return;
    }
    for hook in HOOKS {
        for (c, s) in families() {
            let h = rig(hook, &[], &["kind = \"record\""]);
            let data = |seq: u32, n: usize, tsval: u32| {
                Pkt::ip(c, s)
                    .ports(40000, 5201)
                    .flags(ACK)
                    .seq(seq)
                    .opts(nop_nop_ts(tsval, 0))
                    .payload(n)
                    .build()
            };
            let ack = |tsecr: u32| {
                Pkt::ip(s, c)
                    .ports(5201, 40000)
                    .flags(ACK)
                    .window(500)
                    .opts(nop_nop_ts(9, tsecr))
                    .build()
            };
            for pkt in [
                data(1000, 100, 11),
                data(1100, 200, 12),
                // a delayed ACK echoes the TSval of the first segment it
                // covers (RFC 7323 3.4)
                ack(11),
                data(1100, 200, 13), // sent again: a retransmission
            ] {
                let o = h.run(&pkt).expect("test_run");
                assert_eq!(o.data, pkt, "{hook} {c}: record never changes a packet");
            }
            let flows = emptcp::stats::read_flows(h.dir()).expect("flows");
            assert_eq!(flows.len(), 1, "{hook} {c}: one subflow record: {flows:?}");
            let f = &flows[0];
            let client = if c.is_ipv6() {
                format!("[{c}]:40000")
            } else {
                format!("{c}:40000")
            };
            let (up, down) = if f.a == client {
                (&f.a_to_b, &f.b_to_a)
            } else {
                (&f.b_to_a, &f.a_to_b)
            };
            assert_eq!(
                (up.packets, up.bytes, up.retrans),
                (3, 500, 1),
                "{hook} {c}: {f:?}"
            );
            assert_eq!((down.packets, down.bytes), (1, 0), "{hook} {c}: {f:?}");
            assert_eq!(down.window, 500, "{hook} {c}: no SYN seen, window unscaled");
            assert_eq!(f.rtt_samples, 1, "{hook} {c}: TSecr 11 echoes TSval 11");
        }
    }
}

/// The per-subflow table's set of a subflow, computed here from the
/// layout src/bpf/flowtab.h documents (not from its code): the key is
/// emptcp_flow_key with the lower (address, port) end first, slot 0 and
/// pad 1; the set is the top 14 bits of the sum of its five little-endian
/// 64-bit words times five odd constants.
fn flowtab_set(a: IpAddr, ap: u16, b: IpAddr, bp: u16) -> u64 {
    let (a16, b16) = (addr16(a), addr16(b));
    let ((lo, lop), (hi, hip)) = if (b16, bp) < (a16, ap) {
        ((b16, bp), (a16, ap))
    } else {
        ((a16, ap), (b16, bp))
    };
    let mut k = [0u8; 40];
    k[..16].copy_from_slice(&lo);
    k[16..32].copy_from_slice(&hi);
    k[32..34].copy_from_slice(&lop.to_be_bytes());
    k[34..36].copy_from_slice(&hip.to_be_bytes());
    k[38..40].copy_from_slice(&1u16.to_le_bytes());
    const K: [u64; 5] = [
        0x9e3779b97f4a7c15,
        0xc2b2ae3d27d4eb4f,
        0x165667b19e3779f9,
        0xd6e8feb86659fd93,
        0xff51afd7ed558ccd,
    ];
    let h = k.chunks(8).zip(K).fold(0u64, |h, (w, c)| {
        h.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()).wrapping_mul(c))
    });
    h >> 50
}

/// Client ports of `a` that share one set of the per-subflow table
/// (towards `b`:5201): `n` of them, from the first set that has `n`.
fn ports_in_one_set(a: IpAddr, b: IpAddr, n: usize) -> Vec<u16> {
    let mut sets: std::collections::HashMap<u64, Vec<u16>> = Default::default();
    for p in 1024..=u16::MAX {
        let v = sets.entry(flowtab_set(a, p, b, 5201)).or_default();
        v.push(p);
        if v.len() == n {
            return v.clone();
        }
    }
    panic!("no {n} ports share a set");
}

/// `record` keeps one record per subflow for a thousand subflows (a set
/// holds four: none of these 1,000 shares a set with four others), and
/// `stats` finds every one with its own packet count.
#[test]
fn record_keeps_a_thousand_subflows_apart() {
    if !root("record_keeps_a_thousand_subflows_apart") {
        return;
    }
    for hook in HOOKS {
        for (c, s) in families() {
            let h = rig(hook, &[], &["kind = \"record\"\nmetrics = [\"packets\"]"]);
            let ports: Vec<u16> = (20000..21000).collect();
            let mut per_set: std::collections::HashMap<u64, usize> = Default::default();
            for p in &ports {
                *per_set.entry(flowtab_set(c, *p, s, 5201)).or_default() += 1;
            }
            assert!(
                per_set.values().all(|n| *n <= 4),
                "the test's ports fit the sets"
            );
            for (i, p) in ports.iter().enumerate() {
                // subflow i sends i % 3 + 1 segments
                for _ in 0..i % 3 + 1 {
                    let pkt = Pkt::ip(c, s).ports(*p, 5201).flags(ACK).payload(10).build();
                    h.run(&pkt).expect("test_run");
                }
            }
            let flows = emptcp::stats::read_flows(h.dir()).expect("flows");
            assert_eq!(flows.len(), 1000, "{hook} {c}: a record per subflow");
            for (i, p) in ports.iter().enumerate() {
                let end = if c.is_ipv6() {
                    format!("[{c}]:{p}")
                } else {
                    format!("{c}:{p}")
                };
                let f = flows
                    .iter()
                    .find(|f| f.a == end || f.b == end)
                    .unwrap_or_else(|| panic!("{hook} {c}: no record of port {p}"));
                let up = if f.a == end { &f.a_to_b } else { &f.b_to_a };
                assert_eq!(
                    up.packets,
                    (i % 3 + 1) as u64,
                    "{hook} {c}: port {p}: {f:?}"
                );
            }
        }
    }
}

/// Five subflows in one set of four: the fifth takes one of the four
/// slots over (the table is a cache, flowtab.h), the others keep their
/// records; the subflow that lost its slot starts over on its next packet.
#[test]
fn record_a_fifth_subflow_in_a_set_takes_one_slot_over() {
    if !root("record_a_fifth_subflow_in_a_set_takes_one_slot_over") {
        return;
    }
    for hook in HOOKS {
        for (c, s) in families() {
            let h = rig(hook, &[], &["kind = \"record\"\nmetrics = [\"packets\"]"]);
            let ports = ports_in_one_set(c, s, 5);
            let send = |p: u16, n: usize| {
                for _ in 0..n {
                    let pkt = Pkt::ip(c, s).ports(p, 5201).flags(ACK).payload(10).build();
                    h.run(&pkt).expect("test_run");
                }
            };
            let end = |p: u16| {
                if c.is_ipv6() {
                    format!("[{c}]:{p}")
                } else {
                    format!("{c}:{p}")
                }
            };
            let counts = || -> Vec<Option<u64>> {
                let flows = emptcp::stats::read_flows(h.dir()).expect("flows");
                ports
                    .iter()
                    .map(|p| {
                        let e = end(*p);
                        flows.iter().find(|f| f.a == e || f.b == e).map(|f| {
                            if f.a == e {
                                f.a_to_b.packets
                            } else {
                                f.b_to_a.packets
                            }
                        })
                    })
                    .collect()
            };
            for (i, p) in ports[..4].iter().enumerate() {
                send(*p, i + 2);
            }
            assert_eq!(
                counts(),
                vec![Some(2), Some(3), Some(4), Some(5), None],
                "{hook} {c}"
            );
            send(ports[4], 1);
            let after = counts();
            assert_eq!(
                after[4],
                Some(1),
                "{hook} {c}: the fifth has a slot: {after:?}"
            );
            let lost: Vec<usize> = (0..4).filter(|i| after[*i].is_none()).collect();
            assert_eq!(
                lost.len(),
                1,
                "{hook} {c}: one of four lost its slot: {after:?}"
            );
            for i in 0..4 {
                if i != lost[0] {
                    assert_eq!(after[i], Some(i as u64 + 2), "{hook} {c}: kept: {after:?}");
                }
            }
            send(ports[lost[0]], 1);
            let again = counts();
            assert_eq!(
                again[lost[0]],
                Some(1),
                "{hook} {c}: starts over: {again:?}"
            );
            assert_eq!(
                again.iter().filter(|n| n.is_some()).count(),
                4,
                "{hook} {c}: {again:?}"
            );
        }
    }
}
