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
