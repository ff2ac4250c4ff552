//! Golden packet tests of the path-management stages (`sequence`,
//! `blk_subflow`, `add_subflow`) through BPF_PROG_TEST_RUN on XDP and TC,
//! IPv4 and IPv6. Each case is {description, input, expected verdict,
//! expected output, counter deltas}; expected outputs are rebuilt by the
//! packet builder (etherparse checksums), compared byte for byte, and
//! every changed output is re-checked by the independent decoder
//! (lengths, data offset, option walk, IPv4 and TCP checksums).
//! Stateful cases (a base taken, an ADD_ADDR kept then put back) run in
//! order on one loaded chain list.
//!
//! Needs root (BPF_PROG_TEST_RUN, bpffs); otherwise prints "SKIPPED".

#[allow(dead_code)]
mod pktlib;

use std::net::IpAddr;

use emptcp::policy::Policy;
use emptcp::testrun::Harness;
use emptcp::Hook;

use pktlib::build::*;
use pktlib::opts::*;

const FAMILIES: [Hook; 2] = [Hook::Xdp, Hook::TcEgress];

fn pass_verdict(h: Hook) -> i32 {
    if h == Hook::Xdp {
        2
    } else {
        -1
    }
}

fn drop_verdict(h: Hook) -> i32 {
    if h == Hook::Xdp {
        1
    } else {
        2
    }
}

fn root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIPPED: needs root ({test})");
        return false;
    }
    true
}

/// Chains as (selectors, actors) of TOML bodies.
fn rig(hook: Hook, chains: &[(&[&str], &[&str])]) -> (Harness, String) {
    let mut t = String::new();
    for (i, (sel, act)) in chains.iter().enumerate() {
        t += &format!("[[chain]]\nname = \"c{i}\"\ndev = \"test0\"\nhook = \"{hook}\"\n");
        for s in *sel {
            t += &format!("[[chain.select]]\n{s}\n");
        }
        for a in *act {
            t += &format!("[[chain.act]]\n{a}\n");
        }
    }
    let p = Policy::parse(&t, "fixture.toml")
        .unwrap_or_else(|e| panic!("fixture policy does not parse: {e}\n{t}"));
    let h = Harness::new(hook, &p.chains)
        .unwrap_or_else(|e| panic!("Harness::new({hook}) failed: {e:#}\n{t}"));
    (h, t)
}

/// What a case expects.
enum Want {
    Pass,
    Drop,
    /// Passed, changed into this packet.
    Out(Pkt),
}

/// An extra check of an output frame, on the raw bytes.
type Check = Box<dyn Fn(&[u8]) -> Result<(), String>>;

struct Step {
    name: String,
    input: Pkt,
    want: Want,
    /// (chain, stage, counter, delta)
    counts: Vec<(usize, usize, &'static str, u64)>,
    check: Option<Check>,
}

fn step(name: impl Into<String>, input: Pkt, want: Want) -> Step {
    Step {
        name: name.into(),
        input,
        want,
        counts: Vec::new(),
        check: None,
    }
}

impl Step {
    fn count(mut self, c: usize, s: usize, n: &'static str, d: u64) -> Step {
        self.counts.push((c, s, n, d));
        self
    }
    fn check(mut self, f: Check) -> Step {
        self.check = Some(f);
        self
    }
}

/// Runs steps in order on one rig; returns the failures.
fn run_steps(hook: Hook, h: &Harness, policy: &str, steps: &[Step]) -> Vec<String> {
    let mut fails = Vec::new();
    for s in steps {
        let input = s.input.build();
        let before: Vec<u64> = s
            .counts
            .iter()
            .map(|(c, st, n, _)| h.counter(Some((*c, *st)), n))
            .collect();
        let errs_before: u64 = (0..h.slots.len())
            .flat_map(|c| (0..h.slots[c].len()).map(move |st| (c, st)))
            .map(|cs| h.counter(Some(cs), "error"))
            .sum();
        let o = h
            .run(&input)
            .unwrap_or_else(|e| panic!("test_run on {hook}: {e:#}"));
        let what = format!("step \"{}\" on {hook}", s.name);
        let mut errs = Vec::new();
        let (ret, out) = match &s.want {
            Want::Pass => (pass_verdict(hook), Some(input.clone())),
            Want::Drop => (drop_verdict(hook), None),
            Want::Out(p) => (pass_verdict(hook), Some(p.build())),
        };
        if o.ret != ret {
            errs.push(format!("verdict {} (want {ret})", o.ret));
        }
        if let Some(want) = out {
            if let Err(r) = pktlib::compare("output", &input, &want, &o.data) {
                errs.push(r);
            }
            if matches!(s.want, Want::Out(_)) {
                if let Err(r) = pktlib::consistent("output", &input, &o.data) {
                    errs.push(r);
                }
            }
        }
        if let Some(f) = &s.check {
            if let Err(r) = f(&o.data) {
                errs.push(format!(
                    "{r}\n{}",
                    pktlib::diff::report("output", &input, None, &o.data)
                ));
            }
        }
        for (i, (c, st, n, d)) in s.counts.iter().enumerate() {
            let got = h.counter(Some((*c, *st)), n) - before[i];
            if got != *d {
                errs.push(format!("counter chain{c}.stage{st}.{n}: +{got}, want +{d}"));
            }
        }
        let errs_after: u64 = (0..h.slots.len())
            .flat_map(|c| (0..h.slots[c].len()).map(move |st| (c, st)))
            .map(|cs| h.counter(Some(cs), "error"))
            .sum();
        if errs_after != errs_before {
            errs.push(format!("error counters +{}", errs_after - errs_before));
        }
        if !errs.is_empty() {
            fails.push(format!(
                "{what}:\n  {}\npolicy:\n{policy}",
                errs.join("\n  ")
            ));
        }
    }
    fails
}

fn report(group: &str, fails: Vec<String>, runs: usize) {
    eprintln!("{group}: {runs} runs, {} failed", fails.len());
    assert!(
        fails.is_empty(),
        "{group}: {} failed:\n\n{}",
        fails.len(),
        fails.join("\n\n")
    );
}

fn ts() -> Vec<u8> {
    nop_nop_ts(0x0102_0304, 0x0506_0708)
}

fn pairs() -> [(IpAddr, IpAddr); 2] {
    [
        (IpAddr::V4(V4_B), IpAddr::V4(V4_A)),
        (IpAddr::V6(V6_B), IpAddr::V6(V6_A)),
    ]
}

/// A segment with NOP NOP TS + the given DSS and `n` payload bytes.
fn dss_pkt(s: IpAddr, d: IpAddr, dss: Dss, seq: u32, n: usize) -> Pkt {
    let mut p = Pkt::ip(s, d)
        .opts(padded(&[&ts(), &dss.bytes()]))
        .payload(n);
    p.tcp.seq = seq;
    if n > 0 {
        p.tcp.flags |= PSH;
    }
    p
}

fn map(dsn: u64, dsn64: bool) -> Dss {
    Dss {
        ack: Some(0x0a0b_0c0d),
        map: Some((dsn, 1, 100)),
        dsn64,
        ..Default::default()
    }
}

fn ack(a: u64, ack64: bool) -> Dss {
    Dss {
        ack: Some(a),
        ack64,
        ..Default::default()
    }
}

const DROP: &str = "kind = \"drop\"";

#[test]
fn sequence_selects_ranges() {
    if !root("sequence_selects_ranges") {
        return;
    }
    let mut fails = Vec::new();
    let mut runs = 0;
    for hook in FAMILIES {
        for (s, d) in pairs() {
            let fam = if s.is_ipv4() { "v4" } else { "v6" };
            // relative DSN (8 bytes): base = first DSN seen, [1 MiB, 2 MiB)
            let sel = "kind = \"sequence\"\nfield = \"dsn\"\nfrom = \"1MiB\"\nto = \"2MiB\"";
            let (h, pol) = rig(hook, &[(&[sel], &[DROP])]);
            let b = 0xffff_ffff_ffff_f000u64; // wraps past 2^64 within the range
            let steps = vec![
                step(
                    format!("{fam} dsn64 base"),
                    dss_pkt(s, d, map(b, true), 1, 100),
                    Want::Pass,
                )
                .count(0, 0, "hit", 0),
                step(
                    format!("{fam} dsn64 +1MiB (wrapped)"),
                    dss_pkt(s, d, map(b.wrapping_add(1 << 20), true), 2, 100),
                    Want::Drop,
                )
                .count(0, 0, "hit", 1),
                step(
                    format!("{fam} dsn64 +2MiB"),
                    dss_pkt(s, d, map(b.wrapping_add(2 << 20), true), 3, 100),
                    Want::Pass,
                ),
                step(
                    format!("{fam} pure ack: no mapping"),
                    dss_pkt(s, d, ack(5, false), 4, 0),
                    Want::Pass,
                )
                .count(0, 0, "parse_err", 0),
                step(
                    format!("{fam} other direction has its own base"),
                    dss_pkt(s, d, map(b.wrapping_add(1 << 20), true), 2, 100).reversed(),
                    Want::Pass,
                ),
                step(
                    format!("{fam} malformed DSS (len 9)"),
                    Pkt::ip(s, d).opts(padded(&[&ts(), &[30, 9, 0x20, 0x01, 0, 0, 0, 5, 0]])),
                    Want::Pass,
                )
                .count(0, 0, "parse_err", 1),
            ];
            runs += steps.len();
            fails.extend(run_steps(hook, &h, &pol, &steps));

            // 4-byte DSN, relative, no upper end: wraps modulo 2^32
            let sel = "kind = \"sequence\"\nfield = \"dsn\"\nfrom = 1000";
            let (h, pol) = rig(hook, &[(&[sel], &[DROP])]);
            let steps = vec![
                step(
                    format!("{fam} dsn32 base"),
                    dss_pkt(s, d, map(0xffff_fe00, false), 1, 100),
                    Want::Pass,
                ),
                step(
                    format!("{fam} dsn32 +999"),
                    dss_pkt(s, d, map(0xffff_fe00 + 999, false), 2, 100),
                    Want::Pass,
                ),
                step(
                    format!("{fam} dsn32 +1000 (wrapped)"),
                    dss_pkt(s, d, map(0x0000_01e8, false), 3, 100),
                    Want::Drop,
                ),
            ];
            runs += steps.len();
            fails.extend(run_steps(hook, &h, &pol, &steps));

            // absolute subflow sequence, a range across 2^32
            let sel = "kind = \"sequence\"\nfield = \"ssn\"\nrelative = false\nfrom = 4294967040\nto = 4294967552";
            let (h, pol) = rig(hook, &[(&[sel], &[DROP])]);
            let at = |seq: u32| {
                let mut p = Pkt::ip(s, d).opts(ts());
                p.tcp.seq = seq;
                p
            };
            let steps = vec![
                step(format!("{fam} ssn below"), at(0xfffe_ffff), Want::Pass),
                step(format!("{fam} ssn from"), at(0xffff_ff00), Want::Drop),
                step(format!("{fam} ssn wrapped"), at(0x0000_00ff), Want::Drop),
                step(format!("{fam} ssn to"), at(0x0000_0100), Want::Pass),
            ];
            runs += steps.len();
            fails.extend(run_steps(hook, &h, &pol, &steps));

            // relative data ACK (4 and 8 bytes), from 64 KB
            let sel = "kind = \"sequence\"\nfield = \"data_ack\"\nfrom = \"64KB\"";
            let (h, pol) = rig(hook, &[(&[sel], &[DROP])]);
            let steps = vec![
                step(
                    format!("{fam} ack64 base"),
                    dss_pkt(s, d, ack(1 << 40, true), 1, 0),
                    Want::Pass,
                ),
                step(
                    format!("{fam} ack64 +63999"),
                    dss_pkt(s, d, ack((1 << 40) + 63_999, true), 1, 0),
                    Want::Pass,
                ),
                step(
                    format!("{fam} ack64 +64000"),
                    dss_pkt(s, d, ack((1 << 40) + 64_000, true), 1, 0),
                    Want::Drop,
                ),
                step(
                    format!("{fam} ack32 against a 64-bit base"),
                    dss_pkt(s, d, ack(70_000, false), 1, 0),
                    Want::Drop,
                ),
                step(
                    format!("{fam} no DSS"),
                    Pkt::ip(s, d).opts(ts()),
                    Want::Pass,
                ),
                step(
                    format!("{fam} FIN drops the base"),
                    dss_pkt(s, d, ack((1 << 40) + 64_000, true), 1, 0).flags(ACK | FIN),
                    Want::Drop,
                ),
                step(
                    format!("{fam} new base after FIN"),
                    dss_pkt(s, d, ack(5 << 40, true), 1, 0),
                    Want::Pass,
                ),
            ];
            runs += steps.len();
            fails.extend(run_steps(hook, &h, &pol, &steps));
        }
    }
    report("sequence", fails, runs);
}

/// The options of `p` with the ADD_ADDR replaced by `repl` (same length).
fn replaced(p: &Pkt, addr_opt: &[u8], repl: &[u8]) -> Pkt {
    assert_eq!(addr_opt.len(), repl.len());
    let mut q = p.clone();
    let at = q
        .tcp
        .opts
        .windows(addr_opt.len())
        .position(|w| w == addr_opt)
        .expect("ADD_ADDR in the fixture");
    q.tcp.opts[at..at + repl.len()].copy_from_slice(repl);
    q
}

/// blk_subflow's replacement of an ADD_ADDR of `len` bytes on a segment
/// without DSS: DSS (len 12) with a 64-bit data ACK of 0, then NOPs.
fn dss_dack0(len: usize) -> Vec<u8> {
    let mut v = ack(0, true).bytes();
    assert_eq!(v.len(), 12);
    v.resize(len, NOP);
    v
}

/// `p` with `opt` (NOP-padded to 4) added the way the hook adds it.
fn with_opt(p: &Pkt, hook: Hook, opt: &[u8]) -> Pkt {
    let mut word = opt.to_vec();
    while word.len() % 4 != 0 {
        word.push(NOP);
    }
    let mut q = p.clone();
    if hook == Hook::Xdp {
        word.extend_from_slice(&q.tcp.opts);
        q.tcp.opts = word;
    } else {
        q.tcp.opts.extend_from_slice(&word);
        q.trailer.clear();
    }
    q
}

/// The announced address of a family (the server's second address).
fn announced(s: IpAddr) -> IpAddr {
    if s.is_ipv4() {
        IpAddr::V4(V4_D)
    } else {
        IpAddr::V6(V6_D)
    }
}

#[test]
fn blk_subflow_takes_add_addr_out_and_keeps_the_connection_mptcp() {
    if !root("blk_subflow_takes_add_addr_out_and_keeps_the_connection_mptcp") {
        return;
    }
    let mut fails = Vec::new();
    let mut runs = 0;
    for hook in FAMILIES {
        for (s, d) in pairs() {
            let fam = if s.is_ipv4() { "v4" } else { "v6" };
            let (h, pol) = rig(hook, &[(&[], &["kind = \"blk_subflow\""])]);
            let a = add_addr(false, 1, announced(s), None);
            let ap = add_addr(false, 2, announced(s), Some(5201));
            let echo = add_addr(true, 1, announced(s), None);
            // Linux's ADD_ADDR: a pure ACK with TS and no DSS
            let bare = Pkt::ip(s, d).opts(padded(&[&ts(), &a]));
            let bare_port = Pkt::ip(s, d).opts(padded(&[&ap]));
            let with_dss = Pkt::ip(s, d).opts(padded(&[&dss_ack(7), &a]));
            let mut bad = a.clone();
            bad[1] += 1; // a length no ADD_ADDR has
            bad.push(0);
            let steps = vec![
                step(
                    format!("{fam} ADD_ADDR alone -> DSS data ACK + NOPs"),
                    bare.clone(),
                    Want::Out(replaced(&bare, &a, &dss_dack0(a.len()))),
                )
                .count(0, 0, "hit", 1),
                step(
                    format!("{fam} ADD_ADDR with port alone -> DSS data ACK + NOPs"),
                    bare_port.clone(),
                    Want::Out(replaced(&bare_port, &ap, &dss_dack0(ap.len()))),
                )
                .count(0, 0, "hit", 1),
                step(
                    format!("{fam} ADD_ADDR beside a DSS -> NOPs"),
                    with_dss.clone(),
                    Want::Out(replaced(&with_dss, &a, &vec![NOP; a.len()])),
                )
                .count(0, 0, "hit", 1),
                step(
                    format!("{fam} echo stays"),
                    Pkt::ip(s, d).opts(padded(&[&ts(), &echo])),
                    Want::Pass,
                )
                .count(0, 0, "hit", 0),
                step(
                    format!("{fam} DSS only"),
                    dss_pkt(s, d, ack(9, false), 1, 0),
                    Want::Pass,
                )
                .count(0, 0, "hit", 0),
                step(
                    format!("{fam} ADD_ADDR of a wrong length"),
                    Pkt::ip(s, d).opts(padded(&[&bad])),
                    Want::Pass,
                )
                .count(0, 0, "parse_err", 1),
                step(
                    format!("{fam} option overrunning the header"),
                    Pkt::ip(s, d).opts(vec![NOP, NOP, 30, 40, 0x30, 1]),
                    Want::Pass,
                )
                .count(0, 0, "hit", 0),
                step(
                    format!("{fam} MP_JOIN SYN passes in add_addr mode"),
                    Pkt::ip(s, d)
                        .flags(SYN)
                        .opts(padded(&[&mpj_syn(false, 1, 7, 9)])),
                    Want::Pass,
                ),
            ];
            runs += steps.len();
            fails.extend(run_steps(hook, &h, &pol, &steps));

            let (h, pol) = rig(hook, &[(&[], &["kind = \"blk_subflow\"\nmode = \"join\""])]);
            let steps = vec![
                step(
                    format!("{fam} MP_JOIN SYN dropped"),
                    Pkt::ip(s, d)
                        .flags(SYN)
                        .opts(padded(&[&mss(1460), &mpj_syn(false, 1, 7, 9)])),
                    Want::Drop,
                )
                .count(0, 0, "hit", 1),
                step(
                    format!("{fam} MP_JOIN SYN-ACK passes"),
                    Pkt::ip(s, d)
                        .flags(SYN | ACK)
                        .opts(padded(&[&mpj_synack(false, 0, 1, 2)])),
                    Want::Pass,
                )
                .count(0, 0, "hit", 0),
                step(
                    format!("{fam} MP_CAPABLE SYN passes"),
                    Pkt::ip(s, d).flags(SYN).opts(padded(&[&mpc_syn()])),
                    Want::Pass,
                ),
                step(
                    format!("{fam} ADD_ADDR passes in join mode"),
                    bare.clone(),
                    Want::Pass,
                ),
            ];
            runs += steps.len();
            fails.extend(run_steps(hook, &h, &pol, &steps));
        }
    }
    report("blk_subflow", fails, runs);
}

#[test]
fn add_subflow_puts_the_kept_add_addr_back() {
    if !root("add_subflow_puts_the_kept_add_addr_back") {
        return;
    }
    let mut fails = Vec::new();
    let mut runs = 0;
    for hook in FAMILIES {
        for (s, d) in pairs() {
            let fam = if s.is_ipv4() { "v4" } else { "v6" };
            // chain 0 keeps ADD_ADDRs, chain 1 puts them back on whatever follows
            let (h, pol) = rig(
                hook,
                &[
                    (
                        &["kind = \"packet_type\"\ntypes = [\"add_addr\"]"],
                        &["kind = \"blk_subflow\""],
                    ),
                    (
                        &["kind = \"packet_type\"\ntypes = [\"dss_ack\", \"dss_data\"]"],
                        &["kind = \"add_subflow\""],
                    ),
                ],
            );
            let a = add_addr(false, 1, announced(s), None);
            let bare = Pkt::ip(s, d).opts(padded(&[&ts(), &a]));
            // beside the options: v4 TS + DSS ack 8 + 16 = 36; v6 28 only
            // without TS (with TS it takes the DSS's place: see below)
            let next = if s.is_ipv4() {
                Pkt::ip(s, d).opts(cat(&[&ts(), &dss_ack(11)])).trailer(6)
            } else {
                Pkt::ip(s, d).opts(cat(&[&dss_ack(11)]))
            };
            let data = Pkt::ip(s, d)
                .opts(padded(&[&dss_map(11, 0x1000, 300)]))
                .payload(300)
                .flags(ACK | PSH);
            let mut steps = vec![step(
                format!("{fam} ADD_ADDR kept"),
                bare.clone(),
                Want::Out(replaced(&bare, &a, &dss_dack0(a.len()))),
            )
            .count(0, 1, "hit", 1)
            .count(1, 1, "hit", 0)];
            steps.push(step(
                format!("{fam} other direction does not get it"),
                next.clone().reversed(),
                Want::Pass,
            ));
            if hook != Hook::Xdp || !s.is_ipv4() {
                // TC grows no data segment; v6: DSS 20 + ADD_ADDR 28 > 40
                steps.push(
                    step(
                        format!("{fam} data segment: no room"),
                        data.clone(),
                        Want::Pass,
                    )
                    .count(1, 1, "no_room", 1),
                );
            } else {
                steps.push(
                    step(
                        format!("{fam} XDP: data segment gets it"),
                        data.clone(),
                        Want::Out(with_opt(&data, hook, &a)),
                    )
                    .count(1, 1, "hit", 1),
                );
                steps.push(step(
                    format!("{fam} kept ADD_ADDR was used"),
                    next.clone(),
                    Want::Pass,
                ));
                steps.push(
                    step(
                        format!("{fam} ADD_ADDR kept again"),
                        bare.clone(),
                        Want::Out(replaced(&bare, &a, &dss_dack0(a.len()))),
                    )
                    .count(0, 1, "hit", 1),
                );
            }
            steps.push(
                step(
                    format!("{fam} put back on the next pure ACK, byte for byte"),
                    next.clone(),
                    Want::Out(with_opt(&next, hook, &a)),
                )
                .count(1, 1, "hit", 1),
            );
            steps.push(
                step(format!("{fam} only once"), next.clone(), Want::Pass).count(1, 1, "hit", 0),
            );
            runs += steps.len();
            fails.extend(run_steps(hook, &h, &pol, &steps));
        }
    }
    report("add_subflow", fails, runs);
}

/// `p` as add_subflow leaves it when the option takes the DSS's place: the
/// other options in order, then `opt`, NOP-padded to 4. TC grows at the
/// tail (the link trailer goes), XDP at the head (it stays).
fn instead_of_dss(p: &Pkt, hook: Hook, opt: &[u8]) -> Pkt {
    let (opts, err) = pktlib::decode::walk_options(&p.tcp.opts);
    assert!(
        err.is_none(),
        "fixture options {:02x?}: {err:?}",
        p.tcp.opts
    );
    let mut area: Vec<u8> = opts
        .iter()
        .filter(|o| o.mptcp_subtype() != Some(DSS))
        .flat_map(|o| o.bytes.clone())
        .collect();
    area.extend_from_slice(opt);
    while area.len() % 4 != 0 {
        area.push(NOP);
    }
    assert!(area.len() <= 40, "fixture: {area:02x?} does not fit");
    let mut q = p.clone();
    q.tcp.opts = area;
    if hook != Hook::Xdp {
        q.trailer.clear();
    }
    q
}

/// Reads the output's option area from the raw frame (pktlib's own walker,
/// not etherparse, which stops at kind 30) and checks that its MPTCP
/// options are exactly `mptcp` (in order, byte for byte), that the other
/// options of `input` are all there in order, and that the header is at
/// most 60 bytes. Lengths and checksums: pktlib::consistent.
fn mptcp_opts_are(input: &Pkt, mptcp: Vec<Vec<u8>>) -> Check {
    let (opts, _) = pktlib::decode::walk_options(&input.tcp.opts);
    let others: Vec<Vec<u8>> = opts
        .iter()
        .filter(|o| o.kind != KIND_MPTCP && o.kind != NOP)
        .map(|o| o.bytes.clone())
        .collect();
    Box::new(move |b: &[u8]| {
        let d = pktlib::decode::decode(b);
        let t = d.tcp.as_ref().ok_or("output: no TCP header")?;
        if t.hlen > 60 {
            return Err(format!("output: TCP header of {} bytes", t.hlen));
        }
        let mp: Vec<Vec<u8>> = t
            .opts
            .iter()
            .filter(|o| o.kind == KIND_MPTCP)
            .map(|o| o.bytes.clone())
            .collect();
        if mp != mptcp {
            return Err(format!(
                "output: MPTCP options {mp:02x?}, want {mptcp:02x?}"
            ));
        }
        let got: Vec<Vec<u8>> = t
            .opts
            .iter()
            .filter(|o| o.kind != KIND_MPTCP && o.kind != NOP)
            .map(|o| o.bytes.clone())
            .collect();
        if got != others {
            return Err(format!(
                "output: other options {got:02x?}, want {others:02x?}"
            ));
        }
        Ok(())
    })
}

/// Where an ADD_ADDR does not fit beside a pure ACK's options (IPv6 beside
/// Linux's NOP NOP TS + 64-bit data ACK DSS, or with a port), add_subflow
/// puts it in place of an ack-only DSS, as Linux sends ADD_ADDR; data
/// segments, DSSs with a mapping or DATA_FIN, FINs, other MPTCP options
/// and EOLs keep the packet untouched (no_room / skip). IPv4 without a
/// port still goes beside the DSS.
#[test]
fn add_subflow_takes_the_place_of_an_ack_only_dss() {
    if !root("add_subflow_takes_the_place_of_an_ack_only_dss") {
        return;
    }
    let mut fails = Vec::new();
    let mut runs = 0;
    for hook in FAMILIES {
        for (s, d) in pairs() {
            let v4 = s.is_ipv4();
            let fam = if v4 { "v4" } else { "v6" };
            let (h, pol) = rig(
                hook,
                &[
                    (
                        &["kind = \"packet_type\"\ntypes = [\"add_addr\"]"],
                        &["kind = \"blk_subflow\""],
                    ),
                    (
                        &["kind = \"packet_type\"\ntypes = [\"dss_ack\", \"dss_data\", \"data_fin\"]"],
                        &["kind = \"add_subflow\""],
                    ),
                ],
            );
            let a = add_addr(false, 1, announced(s), None);
            let ap = add_addr(false, 2, announced(s), Some(5201));
            let keep = |p: Pkt, opt: &[u8]| {
                step(
                    format!("{fam} ADD_ADDR ({} bytes) kept", opt.len()),
                    p.clone(),
                    Want::Out(replaced(&p, opt, &dss_dack0(opt.len()))),
                )
                .count(0, 1, "hit", 1)
            };
            // Linux's pure ACK (bytes as captured): NOP NOP TS + DSS 64-bit data ACK
            let linux = dss_pkt(s, d, ack(0x1d2c_3b4a_5968_7786, true), 1, 0);
            assert_eq!(linux.tcp.opts.len(), 24);
            let linux32 = dss_pkt(s, d, ack(0x0102_0304, false), 1, 0).trailer(6);
            let no_ts = Pkt::ip(s, d).opts(ack(0x0102_0304_0506_0708, true).bytes());
            let data = dss_pkt(s, d, map(0x5000, true), 7, 300);
            let fin_map = Dss {
                ack: Some(9),
                ack64: true,
                map: Some((0x6000, 0, 1)),
                dsn64: true,
                data_fin: true,
                ..Default::default()
            };
            let data_fin = dss_pkt(s, d, fin_map, 1, 0);
            let with_prio =
                Pkt::ip(s, d).opts(padded(&[&ts(), &ack(9, true).bytes(), &mp_prio(true)]));
            let eol = Pkt::ip(s, d).opts(cat(&[&ts(), &ack(9, true).bytes(), &[EOL, 0, 0, 0]]));
            let untouched = |name: &str, p: &Pkt, counter: &'static str| {
                step(format!("{fam} {name}"), p.clone(), Want::Pass)
                    .count(1, 1, counter, 1)
                    .count(1, 1, "hit", 0)
            };
            let dss = |p: &Pkt| {
                let (o, _) = pktlib::decode::walk_options(&p.tcp.opts);
                o.into_iter()
                    .find(|o| o.mptcp_subtype() == Some(DSS))
                    .expect("fixture DSS")
                    .bytes
            };

            // beside the DSS: XDP puts it first, TC last
            let beside = |p: &Pkt, opt: &[u8]| {
                if hook == Hook::Xdp {
                    vec![opt.to_vec(), dss(p)]
                } else {
                    vec![dss(p), opt.to_vec()]
                }
            };
            // an option that does not fit beside Linux's TS + DSS ack64:
            // v4 with a port (18, pad 20: 64), v6 (28: 72)
            let (big, big_keep) = if v4 {
                (ap.clone(), Pkt::ip(s, d).opts(padded(&[&ts(), &ap])))
            } else {
                (a.clone(), Pkt::ip(s, d).opts(padded(&[&ts(), &a])))
            };
            let mut steps = vec![
                keep(big_keep, &big),
                untouched("data segment: untouched", &data, "no_room"),
                untouched("pure ACK with a DATA_FIN mapping", &data_fin, "no_room"),
                untouched(
                    "FIN keeps its DSS",
                    &linux.clone().flags(ACK | FIN),
                    "no_room",
                ),
                untouched("another MPTCP option beside the DSS", &with_prio, "no_room"),
                untouched("options ended by an EOL", &eol, "skip"),
                step(
                    format!("{fam} Linux pure ACK: in place of the DSS"),
                    linux.clone(),
                    Want::Out(instead_of_dss(&linux, hook, &big)),
                )
                .count(1, 1, "hit", 1)
                .check(mptcp_opts_are(&linux, vec![big.clone()])),
                step(format!("{fam} only once"), linux.clone(), Want::Pass).count(1, 1, "hit", 0),
            ];
            if v4 {
                // 20 + 24 + 16 = 60: beside the DSS, as before
                steps.push(keep(Pkt::ip(s, d).opts(padded(&[&ts(), &a])), &a));
                steps.push(
                    step(
                        format!("{fam} Linux pure ACK: beside the DSS"),
                        linux.clone(),
                        Want::Out(with_opt(&linux, hook, &a)),
                    )
                    .count(1, 1, "hit", 1)
                    .check(mptcp_opts_are(&linux, beside(&linux, &a))),
                );
            } else {
                // with a port (30, pad 32) only without TS (Linux's limit too)
                steps.push(keep(Pkt::ip(s, d).opts(padded(&[&ap])), &ap));
                steps.push(untouched("with port: no room beside TS", &linux, "no_room"));
                steps.push(
                    step(
                        format!("{fam} with port: in place of the DSS without TS"),
                        no_ts.clone(),
                        Want::Out(instead_of_dss(&no_ts, hook, &ap)),
                    )
                    .count(1, 1, "hit", 1)
                    .check(mptcp_opts_are(&no_ts, vec![ap.clone()])),
                );
            }

            // a 32-bit data ACK and a link trailer (TC cuts it, XDP keeps it)
            steps.push(keep(Pkt::ip(s, d).opts(padded(&[&ts(), &a])), &a));
            if v4 {
                steps.push(
                    step(
                        format!("{fam} DSS ack32: beside it"),
                        linux32.clone(),
                        Want::Out(with_opt(&linux32, hook, &a)),
                    )
                    .count(1, 1, "hit", 1)
                    .check(mptcp_opts_are(&linux32, beside(&linux32, &a))),
                );
            } else {
                steps.push(
                    step(
                        format!("{fam} DSS ack32: in place of it"),
                        linux32.clone(),
                        Want::Out(instead_of_dss(&linux32, hook, &a)),
                    )
                    .count(1, 1, "hit", 1)
                    .check(mptcp_opts_are(&linux32, vec![a.clone()])),
                );
            }
            runs += steps.len();
            fails.extend(run_steps(hook, &h, &pol, &steps));
        }
    }
    report("add_subflow in place of the DSS", fails, runs);
}
