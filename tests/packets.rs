//! Packet-level tests: chains built from policy text run every fixture
//! through BPF_PROG_TEST_RUN (emptcp::testrun::Harness) on XDP and on TC,
//! and every output is checked against a golden expectation and by an
//! independent decoder (tests/pktlib: our own option walker, checksums and
//! length checks, plus etherparse).
//!
//! A fixture is {description, input packet, hook(s), policy, expected
//! verdict, expected output, expected counter deltas}. Expected outputs
//! are "unchanged" or "MP_PRIO (len 3 + NOP, B bit) added": right after the
//! fixed TCP header on XDP, after the last option on TC (which also cuts a
//! link trailer), everything else identical. The expected packet is built
//! again from the fixture's description by etherparse (full checksums) and
//! cross-checked against an RFC 1624 incremental transform of the input.
//!
//! Needs root (BPF_PROG_TEST_RUN, bpffs); otherwise every test prints
//! "SKIPPED: needs root" and returns.

#[allow(dead_code)] // a shared test library: not every test binary uses all of it
mod pktlib;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Instant;

use emptcp::policy::{Policy, PACKET_TYPES};
use emptcp::testrun::{Harness, RunOut};
use emptcp::Hook;

use pktlib::build::*;
use pktlib::decode;
use pktlib::opts::*;

// ---------------------------------------------------------------------------
// hooks, verdicts, root
// ---------------------------------------------------------------------------

/// The two program families every case runs on.
const FAMILIES: [Hook; 2] = [Hook::Xdp, Hook::TcEgress];

fn pass_verdict(h: Hook) -> i32 {
    match h {
        Hook::Xdp => 2, // XDP_PASS
        _ => -1,        // TC_ACT_UNSPEC
    }
}

fn drop_verdict(h: Hook) -> i32 {
    match h {
        Hook::Xdp => 1, // XDP_DROP
        _ => 2,         // TC_ACT_SHOT
    }
}

/// False (after a visible note) when the tests cannot load BPF programs.
fn root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // straight to fd 2: the test harness captures eprintln!
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: needs root ({test}: BPF_PROG_TEST_RUN and bpffs)"
        );
        return false;
    }
    true
}

// ---------------------------------------------------------------------------
// policies
// ---------------------------------------------------------------------------

/// A selector or actor table body (TOML keys, one per line).
type Stage = String;

fn pt(types: &[&str]) -> Stage {
    format!("kind = \"packet_type\"\ntypes = {types:?}")
}

fn ipp(src: Option<IpAddr>, dst: Option<IpAddr>, bidir: bool) -> Stage {
    let mut s = String::from("kind = \"ip_pair\"");
    if let Some(a) = src {
        let _ = write!(s, "\nsrc = \"{a}\"");
    }
    if let Some(a) = dst {
        let _ = write!(s, "\ndst = \"{a}\"");
    }
    if bidir {
        s.push_str("\nbidir = true");
    }
    s
}

fn or(s: Stage) -> Stage {
    format!("{s}\nop = \"or\"")
}

fn not(s: Stage) -> Stage {
    format!("{s}\nnot = true")
}

fn set_backup(backup: bool, once: bool) -> Stage {
    format!("kind = \"set_backup\"\nbackup = {backup}\nonce = {once}")
}

#[derive(Clone, Debug)]
struct ChainSpec {
    sel: Vec<Stage>,
    act: Vec<Stage>,
}

fn chain(sel: Vec<Stage>, act: Vec<Stage>) -> ChainSpec {
    ChainSpec { sel, act }
}

/// One chain: the selectors, then set_backup(backup, once=false).
fn one(sel: Vec<Stage>, backup: bool) -> Vec<ChainSpec> {
    vec![chain(sel, vec![set_backup(backup, false)])]
}

fn policy_text(hook: Hook, chains: &[ChainSpec]) -> String {
    let mut t = String::new();
    for (i, c) in chains.iter().enumerate() {
        let _ = write!(
            t,
            "[[chain]]\nname = \"c{i}\"\ndev = \"test0\"\nhook = \"{hook}\"\n"
        );
        for s in &c.sel {
            let _ = write!(t, "  [[chain.select]]\n{}\n", indent(s));
        }
        for a in &c.act {
            let _ = write!(t, "  [[chain.act]]\n{}\n", indent(a));
        }
    }
    t
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// a loaded chain list and its counters
// ---------------------------------------------------------------------------

/// A counter: the entry's own, or stage `s` of chain `c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ctr {
    Entry(&'static str),
    St(usize, usize, &'static str),
}

fn entry(name: &'static str) -> Ctr {
    Ctr::Entry(name)
}

fn st(c: usize, s: usize, name: &'static str) -> Ctr {
    Ctr::St(c, s, name)
}

impl std::fmt::Display for Ctr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ctr::Entry(n) => write!(f, "entry.{n}"),
            Ctr::St(c, s, n) => write!(f, "chain{c}.stage{s}.{n}"),
        }
    }
}

struct Rig {
    hook: Hook,
    h: Harness,
    text: String,
}

impl Rig {
    fn new(hook: Hook, chains: &[ChainSpec]) -> Rig {
        let text = policy_text(hook, chains);
        let p = Policy::parse(&text, "fixture.toml")
            .unwrap_or_else(|e| panic!("fixture policy does not parse: {e}\n{text}"));
        let h = Harness::new(hook, &p.chains)
            .unwrap_or_else(|e| panic!("Harness::new({hook}) failed: {e:#}\npolicy:\n{text}"));
        Rig { hook, h, text }
    }

    fn run(&self, pkt: &[u8]) -> RunOut {
        self.h.run(pkt).unwrap_or_else(|e| {
            panic!(
                "BPF_PROG_TEST_RUN failed on {}: {e:#}\n{}",
                self.hook,
                pktlib::diff::hexdump(pkt, None)
            )
        })
    }

    fn get(&self, c: Ctr) -> u64 {
        match c {
            Ctr::Entry(n) => self.h.counter(None, n),
            Ctr::St(ci, si, n) => self.h.counter(Some((ci, si)), n),
        }
    }

    /// Counters that must not move unless a case says so.
    fn quiet_counters(&self) -> Vec<Ctr> {
        let mut v = vec![entry("parse_err"), entry("not_tcp")];
        for (ci, stages) in self.h.slots.iter().enumerate() {
            for si in 0..stages.len() {
                v.push(st(ci, si, "error"));
                v.push(st(ci, si, "tail_miss"));
            }
        }
        v
    }
}

// ---------------------------------------------------------------------------
// expectations
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Out {
    /// Byte for byte the input.
    Same,
    /// MP_PRIO len 3 + NOP with this B bit added, everything else identical.
    Prio(bool),
    /// The TCP window field set to this value (rate_limit), checksum fixed.
    Window(u16),
}

#[derive(Clone, Debug)]
struct Exp {
    out: Out,
    drop: bool,
    /// Counter deltas; unlisted entry parse_err/not_tcp and stage
    /// error/tail_miss must stay, entry run must go up by one.
    counts: Vec<(Ctr, u64)>,
}

fn exp(out: Out, counts: &[(Ctr, u64)]) -> Exp {
    Exp {
        out,
        drop: false,
        counts: counts.to_vec(),
    }
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    input: Vec<u8>,
    /// The description the input was built from (rebuilds the expected
    /// output); None for hand-corrupted inputs.
    spec: Option<Pkt>,
    chains: Vec<ChainSpec>,
    xdp: Option<Exp>,
    tc: Option<Exp>,
}

impl Case {
    fn new(name: impl Into<String>, p: &Pkt, chains: Vec<ChainSpec>) -> Case {
        Case {
            name: name.into(),
            input: p.build(),
            spec: Some(p.clone()),
            chains,
            xdp: None,
            tc: None,
        }
    }
    fn raw(name: impl Into<String>, input: Vec<u8>, chains: Vec<ChainSpec>) -> Case {
        Case {
            name: name.into(),
            input,
            spec: None,
            chains,
            xdp: None,
            tc: None,
        }
    }
    /// Same expectation on both hooks.
    fn both(mut self, e: Exp) -> Case {
        self.xdp = Some(e.clone());
        self.tc = Some(e);
        self
    }
    fn xdp(mut self, e: Exp) -> Case {
        self.xdp = Some(e);
        self
    }
    fn tc(mut self, e: Exp) -> Case {
        self.tc = Some(e);
        self
    }
    fn exp_for(&self, h: Hook) -> Option<&Exp> {
        match h {
            Hook::Xdp => self.xdp.as_ref(),
            _ => self.tc.as_ref(),
        }
    }
}

/// The expected output frame of a case on a hook.
fn expected_output(case: &Case, hook: Hook, out: &Out) -> Result<Vec<u8>, String> {
    let b = match out {
        Out::Same => return Ok(case.input.clone()),
        Out::Prio(b) => *b,
        Out::Window(w) => return expected_window(case, *w),
    };
    let at_head = hook == Hook::Xdp;
    let raw = decode::grow_raw(&case.input, at_head, b)
        .ok_or_else(|| "test bug: Prio expected for an input without a TCP header".to_owned())?;
    if let Some(spec) = &case.spec {
        let rebuilt = spec.with_prio(at_head, b).build();
        pktlib::compare(
            "test library self-check: rebuilt expectation vs RFC 1624 transform of the input",
            &case.input,
            &rebuilt,
            &raw,
        )?;
        return Ok(rebuilt);
    }
    Ok(raw)
}

/// The input with its TCP window field replaced, computed on the raw bytes
/// with an RFC 1624 incremental checksum update.
fn window_raw(input: &[u8], w: u16) -> Option<Vec<u8>> {
    let t = decode::decode(input).tcp?;
    let mut out = input.to_vec();
    let (wo, co) = (t.l4_off + 14, t.l4_off + 16);
    let old = u16::from_be_bytes([out[wo], out[wo + 1]]);
    let hc = u16::from_be_bytes([out[co], out[co + 1]]);
    // HC' = ~(~HC + ~m + m')
    let sum = decode::fold(u64::from(!hc) + u64::from(!old) + u64::from(w));
    out[wo..wo + 2].copy_from_slice(&w.to_be_bytes());
    out[co..co + 2].copy_from_slice(&(!sum).to_be_bytes());
    Some(out)
}

/// Out::Window: rebuilt from the description by etherparse (full
/// checksums) and cross-checked against the incremental transform.
fn expected_window(case: &Case, w: u16) -> Result<Vec<u8>, String> {
    let raw = window_raw(&case.input, w)
        .ok_or_else(|| "test bug: Window expected for an input without a TCP header".to_owned())?;
    let Some(spec) = &case.spec else {
        return Ok(raw);
    };
    let mut s = spec.clone();
    s.tcp.win = w;
    let rebuilt = s.build();
    pktlib::compare(
        "test library self-check: rebuilt expectation vs RFC 1624 transform of the input",
        &case.input,
        &rebuilt,
        &raw,
    )?;
    Ok(rebuilt)
}

/// What a receiver sees in a grown segment: its option walk (ours) finds
/// exactly one MP_PRIO, of length 3 with the expected B bit, no malformed
/// option, and the TCP flags of the input.
fn prio_visible(input: &[u8], got: &[u8], backup: bool) -> Result<(), String> {
    let (Some(i), Some(g)) = (decode::decode(input).tcp, decode::decode(got).tcp) else {
        return Err("no TCP header in the input or the output".into());
    };
    let prios: Vec<&decode::Opt> = g
        .opts
        .iter()
        .filter(|o| o.mptcp_subtype() == Some(MP_PRIO))
        .collect();
    if prios.len() != 1 || prios[0].bytes != mp_prio(backup) {
        return Err(format!(
            "a receiver's option walk finds {} MP_PRIO option(s) {:02x?}, expected one {:02x?}",
            prios.len(),
            prios.iter().map(|o| &o.bytes).collect::<Vec<_>>(),
            mp_prio(backup)
        ));
    }
    if let Some(e) = &g.opt_err {
        return Err(format!("the output's options do not parse: {e}"));
    }
    if i.flags != g.flags {
        return Err(format!(
            "TCP flags {:#04x} became {:#04x}",
            i.flags, g.flags
        ));
    }
    Ok(())
}

/// Runs one case on a rig; returns a report on failure.
fn check_case(rig: &Rig, case: &Case, e: &Exp) -> Result<(), String> {
    let mut watch: Vec<Ctr> = e.counts.iter().map(|(c, _)| *c).collect();
    watch.push(entry("run"));
    for c in rig.quiet_counters() {
        if !watch.contains(&c) {
            watch.push(c);
        }
    }
    let before: Vec<u64> = watch.iter().map(|c| rig.get(*c)).collect();
    let o = rig.run(&case.input);
    let after: Vec<u64> = watch.iter().map(|c| rig.get(*c)).collect();

    let what = format!("case \"{}\" on {}", case.name, rig.hook);
    let mut errs = Vec::new();
    let want_ret = if e.drop {
        drop_verdict(rig.hook)
    } else {
        pass_verdict(rig.hook)
    };
    if o.ret != want_ret {
        errs.push(format!("verdict: expected {want_ret}, got {}", o.ret));
    }
    match expected_output(case, rig.hook, &e.out) {
        Err(m) => errs.push(m),
        Ok(want) => {
            if let Err(r) = pktlib::compare(
                &format!("output differs from the expectation ({:?})", e.out),
                &case.input,
                &want,
                &o.data,
            ) {
                errs.push(r);
            }
            if let Out::Window(_) = e.out {
                if let Err(p) = decode::verify_tcp(&o.data) {
                    errs.push(format!("output does not verify: {}", p.join("; ")));
                }
            }
            if let Out::Prio(b) = e.out {
                if let Err(r) = pktlib::consistent("output is not consistent", &case.input, &o.data)
                {
                    errs.push(r);
                }
                if let Err(m) = prio_visible(&case.input, &o.data, b) {
                    errs.push(m);
                }
            }
        }
    }
    for (i, c) in watch.iter().enumerate() {
        let want = match c {
            Ctr::Entry("run") => e.counts.iter().find(|x| x.0 == *c).map_or(1, |x| x.1),
            _ => e.counts.iter().find(|x| x.0 == *c).map_or(0, |x| x.1),
        };
        let got = after[i] - before[i];
        if got != want {
            errs.push(format!("counter {c}: expected +{want}, got +{got}"));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}\n{}\npolicy:\n{}",
            errs.len(),
            errs.join("\n"),
            rig.text
        ))
    }
}

/// Runs a fixture table on both families; one rig per distinct policy.
/// Panics with every failing case's report.
fn run_table(group: &str, cases: &[Case]) {
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let mut runs = 0;
    for hook in FAMILIES {
        let mut rigs: HashMap<String, Rig> = HashMap::new();
        for case in cases {
            let Some(e) = case.exp_for(hook) else {
                continue;
            };
            let key = policy_text(hook, &case.chains);
            let rig = rigs
                .entry(key)
                .or_insert_with(|| Rig::new(hook, &case.chains));
            runs += 1;
            if let Err(r) = check_case(rig, case, e) {
                failures.push(r);
            }
        }
    }
    eprintln!(
        "{group}: {} cases, {runs} runs, {} failed ({:.2?})",
        cases.len(),
        failures.len(),
        t0.elapsed()
    );
    if !failures.is_empty() {
        panic!(
            "{group}: {} of {runs} runs failed:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}

// ---------------------------------------------------------------------------
// common packets
// ---------------------------------------------------------------------------

fn ts() -> Vec<u8> {
    nop_nop_ts(0x0102_0304, 0x0506_0708)
}

/// Linux's pure ACK on an established subflow: NOP NOP TS + DSS data ACK
/// (TCP header 40 bytes).
fn dss_ack_pkt(src: IpAddr, dst: IpAddr) -> Pkt {
    Pkt::ip(src, dst).opts(cat(&[&ts(), &dss_ack(0x0a0b_0c0d)]))
}

fn v4(a: std::net::Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn v6(a: std::net::Ipv6Addr) -> IpAddr {
    IpAddr::V6(a)
}

/// A data segment: NOP NOP TS + DSS (ack + mapping) + `n` payload bytes
/// (TCP header 52 bytes).
fn data_pkt(src: IpAddr, dst: IpAddr, n: usize) -> Pkt {
    Pkt::ip(src, dst)
        .flags(ACK | PSH)
        .opts(padded(&[&ts(), &dss_map(0x0a0b_0c0d, 0x1000, n as u16)]))
        .payload(n)
}

fn sel_hit(c: usize, s: usize) -> (Ctr, u64) {
    (st(c, s, "hit"), 1)
}

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

/// abi.h and the Rust constants agree (no root needed).
#[test]
fn abi_constants_match_the_c_header() {
    let h = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/emptcp/abi.h"))
        .expect("read include/emptcp/abi.h");
    // a constant: an enum member `NAME = value,` (Rust has it from BTF)
    let define = |name: &str| -> u64 {
        let l = h
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name) && l.contains('='))
            .unwrap_or_else(|| panic!("abi.h has no enum member {name}"));
        let v = l.split_whitespace().nth(2).expect("value");
        let v = v.trim_end_matches(',');
        if let Some(x) = v.strip_prefix("0x") {
            u64::from_str_radix(x, 16).expect("hex")
        } else {
            v.parse().expect("number")
        }
    };
    // enum members in order: NAME = value,
    let enum_members = |prefix: &str| -> Vec<(String, u64)> {
        h.lines()
            .map(str::trim)
            .filter(|l| l.starts_with(prefix) && l.contains('='))
            .map(|l| {
                let (n, v) = l.split_once('=').expect("=");
                let v = v.trim().trim_end_matches(',');
                let v = v
                    .split_whitespace()
                    .next()
                    .expect("value")
                    .trim_end_matches(',');
                (n.trim().to_owned(), v.parse().expect("enum value"))
            })
            .collect()
    };
    assert_eq!(
        define("EMPTCP_MAX_SLOTS"),
        u64::from(emptcp::chain::MAX_SLOTS),
        "EMPTCP_MAX_SLOTS vs chain::MAX_SLOTS"
    );
    assert_eq!(
        define("EMPTCP_MAX_ATTACH"),
        u64::from(emptcp::chain::MAX_ATTACH),
        "EMPTCP_MAX_ATTACH vs chain::MAX_ATTACH"
    );
    assert_eq!(define("EMPTCP_SF_OR"), u64::from(emptcp::chain::SF_OR));
    assert_eq!(define("EMPTCP_SF_NOT"), u64::from(emptcp::chain::SF_NOT));
    assert_eq!(
        define("EMPTCP_SF_FIRST"),
        u64::from(emptcp::chain::SF_FIRST)
    );
    assert_eq!(
        define("EMPTCP_SF_ACTOR"),
        u64::from(emptcp::chain::SF_ACTOR)
    );
    let counters = enum_members("EMPTCP_CNT_");
    let max = counters
        .iter()
        .find(|(n, _)| n == "EMPTCP_CNT__MAX")
        .expect("EMPTCP_CNT__MAX")
        .1;
    assert_eq!(max, u64::from(emptcp::chain::CNT_MAX), "EMPTCP_CNT__MAX");
    for (n, v) in counters.iter().filter(|(n, _)| n != "EMPTCP_CNT__MAX") {
        let rust = emptcp::chain::COUNTER_NAMES[*v as usize];
        assert_eq!(
            n.trim_start_matches("EMPTCP_CNT_").to_lowercase(),
            rust,
            "counter {v}: abi.h {n} vs COUNTER_NAMES[{v}] {rust}"
        );
    }
    let types = enum_members("EMPTCP_PT_");
    for (n, v) in types.iter().filter(|(n, _)| n != "EMPTCP_PT__MAX") {
        let rust = PACKET_TYPES[*v as usize];
        assert_eq!(
            n.trim_start_matches("EMPTCP_PT_").to_lowercase(),
            rust,
            "packet type {v}: abi.h {n} vs PACKET_TYPES[{v}] {rust}"
        );
    }
    let ptmax = types
        .iter()
        .find(|(n, _)| n == "EMPTCP_PT__MAX")
        .expect("PT__MAX")
        .1;
    assert_eq!(ptmax as usize, PACKET_TYPES.len(), "EMPTCP_PT__MAX");
}

/// The packet builder and the decoder agree, and the decoder catches
/// broken checksums and lengths (no root needed: tests the test library).
#[test]
fn test_library_self_check() {
    let pkts = [
        dss_ack_pkt(v4(V4_A), v4(V4_B)),
        data_pkt(v6(V6_A), v6(V6_B), 333),
        data_pkt(v4(V4_A), v4(V4_B), 7)
            .vlan(TPID_8021AD, 100)
            .vlan(TPID_8021Q, 200)
            .ip4_opts(vec![148, 4, 0, 0, 1, 1, 1, 0]),
        data_pkt(v6(V6_A), v6(V6_B), 1)
            .ext(EXT_HOP, padn_body(6))
            .ext(EXT_ROUTING, routing_body())
            .ext(EXT_DEST, padn_body(14)),
    ];
    for p in &pkts {
        let b = p.build();
        if let Err(e) = decode::verify_tcp(&b) {
            panic!(
                "builder output does not verify: {e:?}\n{}",
                pktlib::diff::hexdump(&b, None)
            );
        }
        for head in [true, false] {
            let want = p.with_prio(head, true).build();
            let got = decode::grow_raw(&b, head, true).expect("grow_raw");
            if let Err(r) = pktlib::compare("grow_raw vs rebuilt", &b, &want, &got) {
                panic!("{r}");
            }
            decode::verify_tcp(&got).expect("grown packet verifies");
        }
        // every single-bit flip in the IP/TCP headers is caught, except in
        // the IPv6 fields no checksum covers (traffic class, flow label,
        // hop limit) and in IPv6 extension header bodies
        let d = decode::decode(&b);
        let t = d.tcp.expect("tcp");
        for i in t.l3_off..t.l4_off + 20 {
            let r = i - t.l3_off;
            if t.v6 && (r < 4 || r == 7 || (r >= 40 && i < t.l4_off)) {
                continue;
            }
            let mut c = b.clone();
            c[i] ^= 0x01;
            assert!(
                decode::verify_tcp(&c).is_err(),
                "flipping a bit of byte {i} went unnoticed"
            );
        }
    }
    // malformed options are reported
    for bad in [
        vec![8u8, 0, 1, 1],
        vec![8, 1, 1, 1],
        vec![1, 1, 8, 10],
        vec![1, 1, 1, 8],
        vec![30, 2, 1, 1],
    ] {
        let b = Pkt::v4(V4_A, V4_B).opts(bad.clone()).build();
        let e = decode::verify_tcp(&b).expect_err("malformed options must not verify");
        assert!(
            e.iter()
                .any(|p| p.contains("options do not parse") || p.contains("MPTCP option")),
            "{bad:02x?}: {e:?}"
        );
    }
}

/// packet_type: every MPTCP subtype and TCP kind, as the exact set of the
/// 20 types a packet belongs to (golden rows), read from the hit counters
/// of 20 `packet_type [X]` selectors (see run_probe).
#[test]
fn packet_type_classifies_every_kind() {
    if !root("packet_type_classifies_every_kind") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let a6 = v6(V6_A);
    let b6 = v6(V6_B);
    let syn_opts = |mp: &[u8]| {
        padded(&[
            &mss(1460),
            &sack_ok(),
            &nop_nop_ts(1, 0)[2..],
            &[NOP],
            &wscale(7),
            mp,
        ])
    };
    let dfin = Dss {
        ack: Some(5),
        map: Some((100, 0, 1)),
        data_fin: true,
        ..Default::default()
    };
    let rows: Vec<(&str, Pkt, Vec<&str>)> = vec![
        // MP_CAPABLE
        (
            "MP_CAPABLE SYN (len 4)",
            Pkt::ip(a, b).flags(SYN).opts(syn_opts(&mpc_syn())),
            vec!["mp_capable_syn", "syn"],
        ),
        (
            "MP_CAPABLE SYN-ACK (len 12)",
            Pkt::ip(b, a)
                .flags(SYN | ACK)
                .opts(syn_opts(&mpc_synack(0x1122))),
            vec!["mp_capable_synack", "syn"],
        ),
        (
            "MP_CAPABLE ACK (len 20)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &mpc_ack(1, 2)])),
            vec!["mp_capable_ack"],
        ),
        (
            "MP_CAPABLE ACK + data (len 22)",
            Pkt::ip(a, b)
                .flags(ACK | PSH)
                .opts(padded(&[&ts(), &mpc_ack_data(1, 2, 100, None)]))
                .payload(100),
            vec!["mp_capable_ack"],
        ),
        (
            "MP_CAPABLE ACK + data + csum (len 24)",
            Pkt::ip(a, b)
                .flags(ACK | PSH)
                .opts(padded(&[&ts(), &mpc_ack_data(1, 2, 100, Some(0xbeef))]))
                .payload(100),
            vec!["mp_capable_ack"],
        ),
        (
            "MP_CAPABLE SYN over IPv6",
            Pkt::ip(a6, b6).flags(SYN).opts(syn_opts(&mpc_syn())),
            vec!["mp_capable_syn", "syn"],
        ),
        // MP_JOIN
        (
            "MP_JOIN SYN (len 12)",
            Pkt::ip(a, b)
                .flags(SYN)
                .opts(syn_opts(&mpj_syn(false, 2, 0xdead, 0xbeef))),
            vec!["mp_join_syn", "syn"],
        ),
        (
            "MP_JOIN SYN backup (len 12)",
            Pkt::ip(a, b)
                .flags(SYN)
                .opts(syn_opts(&mpj_syn(true, 2, 0xdead, 0xbeef))),
            vec!["mp_join_syn", "syn"],
        ),
        (
            "MP_JOIN SYN-ACK (len 16)",
            Pkt::ip(b, a)
                .flags(SYN | ACK)
                .opts(padded(&[&mss(1460), &mpj_synack(false, 0, 7, 9)])),
            vec!["mp_join_synack", "syn"],
        ),
        (
            "MP_JOIN ACK (len 24)",
            Pkt::ip(a, b).opts(cat(&[&ts(), &mpj_ack()])),
            vec!["mp_join_ack"],
        ),
        // DSS
        (
            "DSS data ACK only (len 8), pure ACK",
            dss_ack_pkt(a, b),
            vec!["dss_ack"],
        ),
        (
            "DSS 8-byte data ACK (len 12), pure ACK",
            Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &Dss {
                    ack: Some(1 << 40),
                    ack64: true,
                    ..Default::default()
                }
                .bytes(),
            ])),
            vec!["dss_ack"],
        ),
        (
            "DSS ack + mapping (len 18) + payload",
            data_pkt(a, b, 100),
            vec!["dss_data"],
        ),
        (
            "DSS ack + mapping over IPv6 + payload",
            data_pkt(a6, b6, 1000),
            vec!["dss_data"],
        ),
        (
            "DSS mapping only (len 14) + payload",
            Pkt::ip(a, b)
                .opts(padded(&[
                    &ts(),
                    &Dss {
                        map: Some((9, 1, 10)),
                        ..Default::default()
                    }
                    .bytes(),
                ]))
                .payload(10),
            vec!["dss_data"],
        ),
        (
            "DSS 8-byte ack + 8-byte DSN mapping (len 26) + payload",
            Pkt::ip(a, b)
                .opts(padded(&[
                    &ts(),
                    &Dss {
                        ack: Some(1 << 33),
                        ack64: true,
                        map: Some((1 << 35, 1, 10)),
                        dsn64: true,
                        ..Default::default()
                    }
                    .bytes(),
                ]))
                .payload(10),
            vec!["dss_data"],
        ),
        (
            "DSS mapping with checksum (len 20) + payload",
            Pkt::ip(a, b)
                .opts(padded(&[
                    &ts(),
                    &Dss {
                        ack: Some(1),
                        map: Some((9, 1, 10)),
                        csum: Some(0x1234),
                        ..Default::default()
                    }
                    .bytes(),
                ]))
                .payload(10),
            vec!["dss_data"],
        ),
        (
            "DSS DATA_FIN (mapping dll 1, no payload)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &dfin.bytes()])),
            vec!["dss_ack", "data_fin"],
        ),
        (
            "DSS DATA_FIN with payload",
            Pkt::ip(a, b)
                .opts(padded(&[
                    &ts(),
                    &Dss {
                        map: Some((100, 1, 11)),
                        ..dfin
                    }
                    .bytes(),
                ]))
                .payload(10),
            vec!["dss_data", "data_fin"],
        ),
        (
            "DSS DATA_FIN + TCP FIN",
            Pkt::ip(a, b)
                .flags(FIN | ACK)
                .opts(padded(&[&ts(), &dfin.bytes()])),
            vec!["dss_ack", "data_fin", "fin"],
        ),
        (
            "DSS mapping without payload or ack",
            Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &Dss {
                    map: Some((9, 1, 0)),
                    ..Default::default()
                }
                .bytes(),
            ])),
            vec![],
        ),
        // ADD_ADDR
        (
            "ADD_ADDR v4 + HMAC (len 16)",
            Pkt::ip(b, a).opts(padded(&[&ts(), &add_addr(false, 1, v4(V4_D), None)])),
            vec!["add_addr"],
        ),
        (
            "ADD_ADDR v4 + port + HMAC (len 18)",
            Pkt::ip(b, a).opts(padded(&[&ts(), &add_addr(false, 1, v4(V4_D), Some(8080))])),
            vec!["add_addr"],
        ),
        (
            "ADD_ADDR v6 + HMAC (len 28)",
            Pkt::ip(b, a).opts(padded(&[&add_addr(false, 1, v6(V6_D), None)])),
            vec!["add_addr"],
        ),
        (
            "ADD_ADDR v6 + port + HMAC (len 30)",
            Pkt::ip(b6, a6).opts(padded(&[&add_addr(false, 1, v6(V6_D), Some(1))])),
            vec!["add_addr"],
        ),
        (
            "ADD_ADDR echo v4 (len 8)",
            Pkt::ip(a, b).opts(cat(&[&ts(), &add_addr(true, 1, v4(V4_D), None)])),
            vec!["add_addr_echo"],
        ),
        (
            "ADD_ADDR echo v4 + port (len 10)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &add_addr(true, 1, v4(V4_D), Some(80))])),
            vec!["add_addr_echo"],
        ),
        (
            "ADD_ADDR echo v6 (len 20)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &add_addr(true, 1, v6(V6_D), None)])),
            vec!["add_addr_echo"],
        ),
        (
            "ADD_ADDR echo v6 + port (len 22)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &add_addr(true, 1, v6(V6_D), Some(80))])),
            vec!["add_addr_echo"],
        ),
        (
            "ADD_ADDR + DSS ack",
            Pkt::ip(b, a).opts(padded(&[
                &ts(),
                &add_addr(false, 1, v4(V4_D), None),
                &dss_ack(3),
            ])),
            vec!["add_addr", "dss_ack"],
        ),
        // the rest
        (
            "REMOVE_ADDR one id (len 4)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &rm_addr(&[3])])),
            vec!["rm_addr"],
        ),
        (
            "REMOVE_ADDR three ids (len 6) + DSS ack",
            Pkt::ip(a, b).opts(padded(&[&rm_addr(&[3, 4, 5]), &dss_ack(1)])),
            vec!["rm_addr", "dss_ack"],
        ),
        (
            "MP_PRIO (len 3)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &mp_prio(true)])),
            vec!["mp_prio"],
        ),
        (
            "MP_PRIO unpadded before DSS ack",
            Pkt::ip(a, b).opts(padded(&[&mp_prio(false), &dss_ack(1)])),
            vec!["mp_prio", "dss_ack"],
        ),
        (
            "MP_FAIL (len 12) + DSS ack",
            Pkt::ip(a, b).opts(padded(&[&mp_fail(1 << 40), &dss_ack(1)])),
            vec!["mp_fail", "dss_ack"],
        ),
        (
            "MP_FASTCLOSE (len 12) on an ACK",
            Pkt::ip(a, b).opts(padded(&[&ts(), &mp_fastclose(42)])),
            vec!["mp_fastclose"],
        ),
        (
            "MP_FASTCLOSE on a RST",
            Pkt::ip(a, b)
                .flags(RST | ACK)
                .opts(padded(&[&mp_fastclose(42)])),
            vec!["mp_fastclose", "rst"],
        ),
        (
            "MP_TCPRST (len 4) on a RST",
            Pkt::ip(a, b).flags(RST).opts(padded(&[&mp_tcprst(1, 3)])),
            vec!["mp_tcprst", "rst"],
        ),
        (
            "unknown MPTCP subtype 15",
            Pkt::ip(a, b).opts(vec![30, 4, 0xf0, 0]),
            vec![],
        ),
        // plain TCP
        ("plain ACK, no options", Pkt::ip(a, b), vec!["tcp_plain"]),
        (
            "plain ACK with TS",
            Pkt::ip(a, b).opts(ts()),
            vec!["tcp_plain"],
        ),
        (
            "plain data segment",
            Pkt::ip(a6, b6).flags(ACK | PSH).opts(ts()).payload(500),
            vec!["tcp_plain"],
        ),
        (
            "plain SYN",
            Pkt::ip(a, b).flags(SYN).opts(syn_opts(&[])),
            vec!["syn", "tcp_plain"],
        ),
        (
            "plain SYN-ACK",
            Pkt::ip(b, a).flags(SYN | ACK).opts(syn_opts(&[])),
            vec!["syn", "tcp_plain"],
        ),
        (
            "plain FIN",
            Pkt::ip(a, b).flags(FIN | ACK).opts(ts()),
            vec!["fin", "tcp_plain"],
        ),
        (
            "plain RST",
            Pkt::ip(a, b).flags(RST),
            vec!["rst", "tcp_plain"],
        ),
        (
            "MPTCP option after EOL is not seen",
            Pkt::ip(a, b).opts(cat(&[&ts(), &[EOL, 0, 0, 0], &dss_ack(1)])),
            vec!["tcp_plain"],
        ),
        (
            "VLAN-tagged DSS ack",
            dss_ack_pkt(a, b).vlan(TPID_8021Q, 5),
            vec!["dss_ack"],
        ),
        (
            "IPv6 + hop-by-hop + dest options, DSS data",
            data_pkt(a6, b6, 64)
                .ext(EXT_HOP, padn_body(6))
                .ext(EXT_DEST, padn_body(6)),
            vec!["dss_data"],
        ),
        (
            "IPv4 options, MP_JOIN ACK",
            Pkt::ip(a, b)
                .ip4_opts(vec![148, 4, 0, 0])
                .opts(cat(&[&ts(), &mpj_ack()])),
            vec!["mp_join_ack"],
        ),
    ];

    for (i, (name, _, types)) in rows.iter().enumerate() {
        for t in types {
            assert!(
                PACKET_TYPES.contains(t),
                "row {i} ({name}): {t} is not a packet type"
            );
        }
    }
    let selectors: Vec<(String, Stage)> = PACKET_TYPES
        .iter()
        .map(|t| (t.to_string(), pt(&[t])))
        .collect();
    let packets: Vec<(String, Pkt)> = rows
        .iter()
        .map(|(n, p, _)| (n.to_string(), p.clone()))
        .collect();
    run_probe(
        "packet_type classification",
        &selectors,
        &packets,
        &|ti, pi| rows[pi].2.contains(&PACKET_TYPES[ti]),
    );
}

/// packet_type end to end: the selector decides whether set_backup acts.
#[test]
fn packet_type_selects_for_set_backup() {
    if !root("packet_type_selects_for_set_backup") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let ack = dss_ack_pkt(a, b);
    let data = data_pkt(a, b, 300);
    let plain = Pkt::ip(a, b).opts(ts());
    let syn = Pkt::ip(a, b)
        .flags(SYN)
        .opts(padded(&[&mss(1460), &mpj_syn(false, 1, 2, 3)]));
    let p_ack = one(vec![pt(&["syn", "dss_ack"])], true);
    let p_not_syn = one(vec![not(pt(&["syn"]))], false);
    let p_data = one(vec![pt(&["dss_data"])], true);
    let grown = |c: &[(Ctr, u64)]| exp(Out::Prio(true), c);
    let same = |c: &[(Ctr, u64)]| exp(Out::Same, c);
    let acted = [sel_hit(0, 0), (st(0, 1, "hit"), 1)];
    let not_selected = [(st(0, 0, "hit"), 0), (st(0, 1, "run"), 1)];
    let cases = vec![
        Case::new("[syn, dss_ack] selects a DSS pure ACK", &ack, p_ack.clone()).both(grown(&acted)),
        Case::new(
            "[syn, dss_ack] does not select a data segment",
            &data,
            p_ack.clone(),
        )
        .both(same(&not_selected)),
        Case::new(
            "[syn, dss_ack] does not select a plain ACK",
            &plain,
            p_ack.clone(),
        )
        .both(same(&not_selected)),
        Case::new(
            "[syn, dss_ack] selects a SYN, set_backup skips it",
            &syn,
            p_ack,
        )
        .both(same(&[sel_hit(0, 0), (st(0, 1, "skip"), 1)])),
        Case::new(
            "not [syn] selects a DSS pure ACK (backup=false)",
            &ack,
            p_not_syn.clone(),
        )
        .both(exp(Out::Prio(false), &acted)),
        Case::new("not [syn] does not select a SYN", &syn, p_not_syn).both(same(&not_selected)),
        Case::new(
            "[dss_data] selects a data segment (XDP grows, TC skips)",
            &data,
            p_data.clone(),
        )
        .xdp(grown(&acted))
        .tc(same(&[sel_hit(0, 0), (st(0, 1, "skip"), 1)])),
        Case::new("[dss_data] does not select a pure ACK", &ack, p_data).both(same(&not_selected)),
    ];
    run_table("packet_type -> set_backup", &cases);
}

/// An always-false selector (an address no fixture uses; any family).
fn never() -> Stage {
    ipp(Some("192.0.2.255".parse().expect("addr")), None, false)
}

/// Runs every packet through "probe" chains that evaluate each selector
/// on its own and checks each selector's hit counter against
/// `want(selector, packet)`. A probe chain is
///   S1, and NEVER, or S2, and NEVER, or S3, ..., and NEVER -> set_backup
/// The always-false AND after each selector resets the result, so the next
/// (OR) selector is always evaluated and its hit counter is its own result;
/// the actor never acts, so the packet must come out unchanged. At most 15
/// selectors a rig (31 stages, under the kernel's 33 tail calls).
fn run_probe(
    group: &str,
    selectors: &[(String, Stage)],
    packets: &[(String, Pkt)],
    want: &dyn Fn(usize, usize) -> bool,
) {
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut checks = 0;
    for hook in FAMILIES {
        for (k, group_sel) in selectors.chunks(15).enumerate() {
            let base = k * 15;
            let mut sel = Vec::new();
            for (i, (_, s)) in group_sel.iter().enumerate() {
                sel.push(if i == 0 { s.clone() } else { or(s.clone()) });
                sel.push(never());
            }
            let actor = sel.len();
            let rig = Rig::new(hook, &[chain(sel, vec![set_backup(true, false)])]);
            for (pi, (pname, p)) in packets.iter().enumerate() {
                let input = p.build();
                let mut watch = vec![entry("run"), entry("parse_err"), entry("not_tcp")];
                for i in 0..group_sel.len() {
                    watch.push(st(0, 2 * i, "hit"));
                    watch.push(st(0, 2 * i, "run"));
                    watch.push(st(0, 2 * i, "parse_err"));
                    watch.push(st(0, 2 * i + 1, "hit"));
                }
                for n in [
                    "run",
                    "hit",
                    "skip",
                    "parse_err",
                    "no_room",
                    "error",
                    "tail_miss",
                ] {
                    watch.push(st(0, actor, n));
                }
                let before: Vec<u64> = watch.iter().map(|c| rig.get(*c)).collect();
                let o = rig.run(&input);
                runs += 1;
                let after: Vec<u64> = watch.iter().map(|c| rig.get(*c)).collect();
                let mut errs = Vec::new();
                let mut check = |c: Ctr, want: u64, what: &str| {
                    let i = watch.iter().position(|x| *x == c).expect("watched");
                    let got = after[i] - before[i];
                    if got != want {
                        errs.push(format!("{what}counter {c}: expected +{want}, got +{got}"));
                    }
                };
                check(entry("run"), 1, "");
                check(entry("parse_err"), 0, "");
                check(entry("not_tcp"), 0, "");
                for (i, (sname, _)) in group_sel.iter().enumerate() {
                    checks += 1;
                    let w = want(base + i, pi);
                    check(
                        st(0, 2 * i, "hit"),
                        u64::from(w),
                        &format!(
                            "\"{sname}\" {}: ",
                            if w { "must select" } else { "must not select" }
                        ),
                    );
                    check(st(0, 2 * i, "run"), 1, "");
                    check(st(0, 2 * i, "parse_err"), 0, "");
                    check(st(0, 2 * i + 1, "hit"), 0, "");
                }
                check(st(0, actor, "run"), 1, "");
                for n in ["hit", "skip", "parse_err", "no_room", "error", "tail_miss"] {
                    check(st(0, actor, n), 0, "");
                }
                if o.ret != pass_verdict(hook) {
                    errs.push(format!("verdict {} (expected pass)", o.ret));
                }
                if let Err(r) = pktlib::compare("output changed", &input, &input, &o.data) {
                    errs.push(r);
                }
                if !errs.is_empty() {
                    failures.push(format!(
                        "packet \"{pname}\" ({}) on {hook}:\n  {}\n{}",
                        decode::summary(&input),
                        errs.join("\n  "),
                        pktlib::diff::hexdump(&input, None)
                    ));
                }
            }
        }
    }
    eprintln!(
        "{group}: {} selectors x {} packets, {runs} runs, {checks} checks, {} failed ({:.2?})",
        selectors.len(),
        packets.len(),
        failures.len(),
        t0.elapsed()
    );
    if !failures.is_empty() {
        panic!(
            "{group}: {} failures:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}

/// A chain of a selector matrix: description and selectors (the actor is
/// always set_backup(backup=true, once=false)).
type MatrixChain = (String, Vec<Stage>);

/// Runs every packet through rigs holding all `chains` (packed at most 32
/// stages a rig) and checks, for every (chain, packet), whether the chain
/// selected the packet against `want(chain, packet)`. A chain selected a
/// packet iff its actor counted a hit or a skip: the first selecting chain
/// adds the MP_PRIO (a skip on TC for a data segment), later ones see it
/// and skip. A chain with one selector must also count the selector hit.
/// The output is the input, or the input with one MP_PRIO (B=1).
fn run_matrix(
    group: &str,
    chains: &[MatrixChain],
    packets: &[(String, Pkt)],
    want: &dyn Fn(usize, usize) -> bool,
) {
    let t0 = Instant::now();
    // pack chains into rigs of at most 32 stages
    let mut packs: Vec<(usize, usize)> = Vec::new(); // (first chain, count)
    let mut stages = 0;
    for (i, (_, sel)) in chains.iter().enumerate() {
        let n = sel.len() + 1;
        match packs.last_mut() {
            Some((_, cnt)) if stages + n <= 32 => {
                *cnt += 1;
                stages += n;
            }
            _ => {
                packs.push((i, 1));
                stages = n;
            }
        }
    }
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut checks = 0;
    for hook in FAMILIES {
        for &(base, count) in &packs {
            let specs: Vec<ChainSpec> = chains[base..base + count]
                .iter()
                .map(|(_, sel)| chain(sel.clone(), vec![set_backup(true, false)]))
                .collect();
            let rig = Rig::new(hook, &specs);
            for (pi, (pname, p)) in packets.iter().enumerate() {
                let input = p.build();
                let mut watch: Vec<Ctr> = vec![entry("run"), entry("parse_err"), entry("not_tcp")];
                for (c, (_, sel)) in chains[base..base + count].iter().enumerate() {
                    let a = sel.len();
                    for n in ["run", "hit", "skip", "parse_err", "no_room", "error"] {
                        watch.push(st(c, a, n));
                    }
                    watch.push(st(c, 0, "hit"));
                }
                let before: Vec<u64> = watch.iter().map(|c| rig.get(*c)).collect();
                let o = rig.run(&input);
                runs += 1;
                let after: Vec<u64> = watch.iter().map(|c| rig.get(*c)).collect();
                let d = |c: Ctr| {
                    let i = watch.iter().position(|x| *x == c).expect("watched");
                    after[i] - before[i]
                };
                let mut errs = Vec::new();
                for (ctr, w) in [
                    (entry("run"), 1),
                    (entry("parse_err"), 0),
                    (entry("not_tcp"), 0),
                ] {
                    if d(ctr) != w {
                        errs.push(format!("counter {ctr}: expected +{w}, got +{}", d(ctr)));
                    }
                }
                if o.ret != pass_verdict(hook) {
                    errs.push(format!("verdict {} (expected pass)", o.ret));
                }
                let growable = hook == Hook::Xdp || p.tcp.payload.is_empty();
                let mut first = true;
                for (c, (cname, sel)) in chains[base..base + count].iter().enumerate() {
                    checks += 1;
                    let a = sel.len();
                    let w = want(base + c, pi);
                    let (hit, skip) = (d(st(c, a, "hit")), d(st(c, a, "skip")));
                    let (want_hit, want_skip) = match (w, first && growable) {
                        (false, _) => (0, 0),
                        (true, true) => (1, 0),
                        (true, false) => (0, 1),
                    };
                    if w {
                        first = false;
                    }
                    if (hit, skip) != (want_hit, want_skip) {
                        errs.push(format!(
                            "chain {} \"{cname}\": expected {} (actor hit +{want_hit} skip +{want_skip}), got actor hit +{hit} skip +{skip}",
                            base + c,
                            if w { "selected" } else { "not selected" }
                        ));
                    }
                    if a == 1 && d(st(c, 0, "hit")) != u64::from(w) {
                        errs.push(format!(
                            "chain {} \"{cname}\": selector hit +{}, expected +{}",
                            base + c,
                            d(st(c, 0, "hit")),
                            u64::from(w)
                        ));
                    }
                    for n in ["parse_err", "no_room", "error"] {
                        if d(st(c, a, n)) != 0 {
                            errs.push(format!("chain {} actor counted {n}", base + c));
                        }
                    }
                    if d(st(c, a, "run")) != 1 {
                        errs.push(format!("chain {} actor did not run once", base + c));
                    }
                }
                let want_out = if !first && growable {
                    p.with_prio(hook == Hook::Xdp, true).build()
                } else {
                    input.clone()
                };
                if let Err(r) = pktlib::compare("output", &input, &want_out, &o.data) {
                    errs.push(r);
                }
                if !errs.is_empty() {
                    failures.push(format!(
                        "packet \"{pname}\" ({}) on {hook}:\n  {}\npolicy:\n{}",
                        decode::summary(&input),
                        errs.join("\n  "),
                        rig.text
                    ));
                }
            }
        }
    }
    eprintln!(
        "{group}: {} chains x {} packets, {runs} runs, {checks} checks, {} failed ({:.2?})",
        chains.len(),
        packets.len(),
        failures.len(),
        t0.elapsed()
    );
    if !failures.is_empty() {
        panic!(
            "{group}: {} failures:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}

/// What ip_pair should do, written from its documentation: same family as
/// the configured address(es), every configured side equal, or (bidir) the
/// reverse pair; `not` inverts.
fn ip_pair_model(
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    bidir: bool,
    negate: bool,
    ps: IpAddr,
    pd: IpAddr,
) -> bool {
    let v6 = src.or(dst).expect("ip_pair needs an address").is_ipv6();
    let eq = |s: IpAddr, d: IpAddr| src.is_none_or(|a| a == s) && dst.is_none_or(|a| a == d);
    let hit = ps.is_ipv6() == v6 && (eq(ps, pd) || (bidir && eq(pd, ps)));
    hit ^ negate
}

/// ip_pair: v4/v6, src only, dst only, both, bidir, family mismatch, not.
/// Every selector is checked on every packet against the model; the golden
/// rows below pin the model itself. (ip_pair in front of an actor that
/// acts: chains_on_one_hook_run_in_order.)
#[test]
fn ip_pair_selects_by_address() {
    if !root("ip_pair_selects_by_address") {
        return;
    }
    let (a, b, c, d) = (v4(V4_A), v4(V4_B), v4(V4_C), v4(V4_D));
    let (a6, b6, c6, d6) = (v6(V6_A), v6(V6_B), v6(V6_C), v6(V6_D));
    // (name, src, dst, bidir, not)
    type P = (&'static str, Option<IpAddr>, Option<IpAddr>, bool, bool);
    let policies: Vec<P> = vec![
        ("v4 A->B", Some(a), Some(b), false, false),
        ("v4 A<->B", Some(a), Some(b), true, false),
        ("v4 src A", Some(a), None, false, false),
        ("v4 src A bidir", Some(a), None, true, false),
        ("v4 dst B", None, Some(b), false, false),
        ("v6 A->B", Some(a6), Some(b6), false, false),
        ("v6 A<->B", Some(a6), Some(b6), true, false),
        ("v6 src A", Some(a6), None, false, false),
        ("v6 dst B", None, Some(b6), false, false),
        ("v6 dst B bidir", None, Some(b6), true, false),
        ("not v4 src A", Some(a), None, false, true),
        ("not v6 A->B", Some(a6), Some(b6), false, true),
    ];
    let flows: Vec<(&str, IpAddr, IpAddr)> = vec![
        ("v4 A->B", a, b),
        ("v4 B->A", b, a),
        ("v4 A->D", a, d),
        ("v4 C->B", c, b),
        ("v4 C->D", c, d),
        ("v4 D->A", d, a),
        ("v6 A->B", a6, b6),
        ("v6 B->A", b6, a6),
        ("v6 A->D (high half differs)", a6, d6),
        ("v6 C->B (high half differs)", c6, b6),
        ("v6 B->B (low half differs)", b6, b6),
        ("v6 C->D", c6, d6),
    ];
    let mut packets: Vec<(String, Pkt)> = flows
        .iter()
        .map(|(n, s, t)| (format!("{n} pure ACK"), dss_ack_pkt(*s, *t)))
        .collect();
    packets.push(("v4 A->B data".into(), data_pkt(a, b, 100)));
    packets.push(("v6 B->A data".into(), data_pkt(b6, a6, 100)));
    packets.push((
        "v4 A->B, 802.1Q".into(),
        dss_ack_pkt(a, b).vlan(TPID_8021Q, 3),
    ));
    packets.push((
        "v6 A->B, hop-by-hop".into(),
        dss_ack_pkt(a6, b6).ext(EXT_HOP, padn_body(6)),
    ));
    let addr = |pi: usize| -> (IpAddr, IpAddr) {
        match &packets[pi].1.ip {
            Ip::V4 { src, dst, .. } => (IpAddr::V4(*src), IpAddr::V4(*dst)),
            Ip::V6 { src, dst, .. } => (IpAddr::V6(*src), IpAddr::V6(*dst)),
        }
    };
    let model = |ci: usize, pi: usize| {
        let (_, s, t, bidir, n) = policies[ci];
        let (ps, pd) = addr(pi);
        ip_pair_model(s, t, bidir, n, ps, pd)
    };
    // golden rows: (policy, flow, selected)
    let golden: &[(&str, &str, bool)] = &[
        ("v4 A->B", "v4 A->B", true),
        ("v4 A->B", "v4 B->A", false),
        ("v4 A->B", "v4 A->D", false),
        ("v4 A->B", "v4 C->B", false),
        ("v4 A<->B", "v4 B->A", true),
        ("v4 A<->B", "v4 A->D", false),
        ("v4 src A", "v4 A->D", true),
        ("v4 src A", "v4 D->A", false),
        ("v4 src A bidir", "v4 D->A", true),
        ("v4 dst B", "v4 C->B", true),
        ("v4 dst B", "v4 B->A", false),
        ("v6 A->B", "v6 A->B", true),
        ("v6 A->B", "v6 B->A", false),
        ("v6 A<->B", "v6 B->A", true),
        ("v6 src A", "v6 C->B (high half differs)", false),
        ("v6 src A", "v6 A->D (high half differs)", true),
        ("v6 dst B", "v6 B->B (low half differs)", true),
        ("v6 dst B", "v6 A->D (high half differs)", false),
        ("v6 dst B bidir", "v6 B->A", true),
        ("v4 A->B", "v6 A->B", false),
        ("v6 A->B", "v4 A->B", false),
        ("v4 src A", "v6 A->B", false),
        ("not v4 src A", "v4 A->B", false),
        ("not v4 src A", "v4 C->D", true),
        ("not v4 src A", "v6 A->B", true),
        ("not v6 A->B", "v6 A->B", false),
        ("not v6 A->B", "v4 A->B", true),
    ];
    for (pn, fname, sel) in golden {
        let ci = policies.iter().position(|p| p.0 == *pn).expect("policy");
        let pi = flows.iter().position(|f| f.0 == *fname).expect("flow");
        assert_eq!(model(ci, pi), *sel, "model vs golden row ({pn}, {fname})");
    }
    let selectors: Vec<(String, Stage)> = policies
        .iter()
        .map(|(n, s, t, bidir, neg)| {
            let sel = ipp(*s, *t, *bidir);
            (n.to_string(), if *neg { not(sel) } else { sel })
        })
        .collect();
    run_probe("ip_pair", &selectors, &packets, &model);
}

/// A tuple selector of the catalogue (src, dst, port, subflow), with the
/// behaviour its documentation promises.
#[derive(Clone, Debug)]
enum TupleSel {
    Src(&'static str),
    Dst(&'static str),
    Port(Option<u16>, Option<u16>),
    Subflow {
        saddr: Option<IpAddr>,
        daddr: Option<IpAddr>,
        sport: Option<u16>,
        dport: Option<u16>,
        bidir: bool,
    },
    Not(Box<TupleSel>),
}

impl TupleSel {
    fn stage(&self) -> Stage {
        match self {
            TupleSel::Src(p) => format!("kind = \"src\"\naddr = \"{p}\""),
            TupleSel::Dst(p) => format!("kind = \"dst\"\naddr = \"{p}\""),
            TupleSel::Port(s, d) => {
                let mut t = String::from("kind = \"port\"");
                if let Some(s) = s {
                    let _ = write!(t, "\nsport = {s}");
                }
                if let Some(d) = d {
                    let _ = write!(t, "\ndport = {d}");
                }
                t
            }
            TupleSel::Subflow {
                saddr,
                daddr,
                sport,
                dport,
                bidir,
            } => {
                let mut t = String::from("kind = \"subflow\"");
                if let Some(a) = saddr {
                    let _ = write!(t, "\nsaddr = \"{a}\"");
                }
                if let Some(a) = daddr {
                    let _ = write!(t, "\ndaddr = \"{a}\"");
                }
                if let Some(p) = sport {
                    let _ = write!(t, "\nsport = {p}");
                }
                if let Some(p) = dport {
                    let _ = write!(t, "\ndport = {p}");
                }
                if *bidir {
                    t.push_str("\nbidir = true");
                }
                t
            }
            TupleSel::Not(s) => not(s.stage()),
        }
    }

    /// Does the selector pick a packet (src, dst, sport, dport)?
    fn model(&self, s: IpAddr, d: IpAddr, sp: u16, dp: u16) -> bool {
        let in_prefix = |pfx: &str, a: IpAddr| -> bool {
            let (p, len) = match pfx.split_once('/') {
                Some((p, l)) => (
                    p.parse::<IpAddr>().expect("prefix"),
                    l.parse::<u32>().expect("len"),
                ),
                None => {
                    let p: IpAddr = pfx.parse().expect("addr");
                    (p, if p.is_ipv4() { 32 } else { 128 })
                }
            };
            match (p, a) {
                (IpAddr::V4(p), IpAddr::V4(a)) => {
                    let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    u32::from(p) & m == u32::from(a) & m
                }
                (IpAddr::V6(p), IpAddr::V6(a)) => {
                    let m = if len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - len)
                    };
                    u128::from(p) & m == u128::from(a) & m
                }
                _ => false,
            }
        };
        match self {
            TupleSel::Src(p) => in_prefix(p, s),
            TupleSel::Dst(p) => in_prefix(p, d),
            TupleSel::Port(ws, wd) => ws.is_none_or(|x| x == sp) && wd.is_none_or(|x| x == dp),
            TupleSel::Subflow {
                saddr,
                daddr,
                sport,
                dport,
                bidir,
            } => {
                let eq = |s: IpAddr, d: IpAddr, sp: u16, dp: u16| {
                    saddr.is_none_or(|a| a == s)
                        && daddr.is_none_or(|a| a == d)
                        && sport.is_none_or(|p| p == sp)
                        && dport.is_none_or(|p| p == dp)
                };
                eq(s, d, sp, dp) || (*bidir && eq(d, s, dp, sp))
            }
            TupleSel::Not(x) => !x.model(s, d, sp, dp),
        }
    }
}

/// The tuple selectors src / dst (prefixes), port and subflow, on every
/// packet against their documented behaviour; golden rows pin the model.
#[test]
fn tuple_selectors_match_addresses_and_ports() {
    if !root("tuple_selectors_match_addresses_and_ports") {
        return;
    }
    let (a, b, c, d) = (v4(V4_A), v4(V4_B), v4(V4_C), v4(V4_D));
    let (a6, b6, c6) = (v6(V6_A), v6(V6_B), v6(V6_C));
    // fd00:1::/65 excludes this one: first bit of the low half set
    let a6_far: IpAddr = "fd00:1::8000:0:0:1".parse().expect("addr");
    let sel: Vec<(&str, TupleSel)> = vec![
        ("src 10.1.0.0/16", TupleSel::Src("10.1.0.0/16")),
        ("src 10.1.0.1 (a /32)", TupleSel::Src("10.1.0.1")),
        (
            "src 10.1.7.7/16 (host bits set)",
            TupleSel::Src("10.1.7.7/16"),
        ),
        ("dst 10.1.0.2/31", TupleSel::Dst("10.1.0.2/31")),
        ("src 0.0.0.0/0", TupleSel::Src("0.0.0.0/0")),
        ("src fd00:1::/32", TupleSel::Src("fd00:1::/32")),
        ("dst fd00:1::2 (a /128)", TupleSel::Dst("fd00:1::2")),
        ("src fd00:1::/65", TupleSel::Src("fd00:1::/65")),
        ("port sport 40000", TupleSel::Port(Some(40000), None)),
        ("port dport 5201", TupleSel::Port(None, Some(5201))),
        (
            "port 40000 -> 5202",
            TupleSel::Port(Some(40000), Some(5202)),
        ),
        (
            "subflow A:40000 -> B:5201",
            TupleSel::Subflow {
                saddr: Some(a),
                daddr: Some(b),
                sport: Some(40000),
                dport: Some(5201),
                bidir: false,
            },
        ),
        (
            "subflow A:40000 <-> B:5201",
            TupleSel::Subflow {
                saddr: Some(a),
                daddr: Some(b),
                sport: Some(40000),
                dport: Some(5201),
                bidir: true,
            },
        ),
        (
            "subflow sport 40000 (no address: any family)",
            TupleSel::Subflow {
                saddr: None,
                daddr: None,
                sport: Some(40000),
                dport: None,
                bidir: false,
            },
        ),
        (
            "not subflow to [fd00:1::2]:5201",
            TupleSel::Not(Box::new(TupleSel::Subflow {
                saddr: None,
                daddr: Some(b6),
                sport: None,
                dport: Some(5201),
                bidir: false,
            })),
        ),
    ];
    let flows: Vec<(&str, IpAddr, IpAddr, u16, u16)> = vec![
        ("v4 A:40000 -> B:5201", a, b, 40000, 5201),
        ("v4 B:5201 -> A:40000", b, a, 5201, 40000),
        ("v4 A:40000 -> B:5202", a, b, 40000, 5202),
        ("v4 C:40000 -> D:5201", c, d, 40000, 5201),
        (
            "v4 10.1.0.3:1 -> 10.1.0.3:2",
            v4(std::net::Ipv4Addr::new(10, 1, 0, 3)),
            v4(std::net::Ipv4Addr::new(10, 1, 0, 3)),
            1,
            2,
        ),
        ("v6 A:40000 -> B:5201", a6, b6, 40000, 5201),
        ("v6 B:5201 -> A:40000", b6, a6, 5201, 40000),
        ("v6 C:40001 -> B:5201", c6, b6, 40001, 5201),
        ("v6 fd00:1::8000:0:0:1:40000 -> A:80", a6_far, a6, 40000, 80),
    ];
    let packets: Vec<(String, Pkt)> = flows
        .iter()
        .map(|(n, s, t, sp, dp)| (n.to_string(), dss_ack_pkt(*s, *t).ports(*sp, *dp)))
        .collect();
    let model = |si: usize, pi: usize| {
        let (_, s, t, sp, dp) = flows[pi];
        sel[si].1.model(s, t, sp, dp)
    };
    // golden rows: (selector, flow, selected)
    let golden: &[(&str, &str, bool)] = &[
        ("src 10.1.0.0/16", "v4 B:5201 -> A:40000", true),
        ("src 10.1.0.0/16", "v4 C:40000 -> D:5201", false),
        ("src 10.1.0.0/16", "v6 A:40000 -> B:5201", false),
        ("src 10.1.0.1 (a /32)", "v4 B:5201 -> A:40000", false),
        (
            "src 10.1.7.7/16 (host bits set)",
            "v4 A:40000 -> B:5201",
            true,
        ),
        ("dst 10.1.0.2/31", "v4 10.1.0.3:1 -> 10.1.0.3:2", true),
        ("dst 10.1.0.2/31", "v4 B:5201 -> A:40000", false),
        ("src 0.0.0.0/0", "v4 C:40000 -> D:5201", true),
        ("src 0.0.0.0/0", "v6 A:40000 -> B:5201", false),
        ("src fd00:1::/32", "v6 C:40001 -> B:5201", false),
        (
            "src fd00:1::/32",
            "v6 fd00:1::8000:0:0:1:40000 -> A:80",
            true,
        ),
        ("dst fd00:1::2 (a /128)", "v6 A:40000 -> B:5201", true),
        ("src fd00:1::/65", "v6 B:5201 -> A:40000", true),
        (
            "src fd00:1::/65",
            "v6 fd00:1::8000:0:0:1:40000 -> A:80",
            false,
        ),
        ("port sport 40000", "v6 A:40000 -> B:5201", true),
        ("port dport 5201", "v4 A:40000 -> B:5202", false),
        ("port 40000 -> 5202", "v4 A:40000 -> B:5202", true),
        ("subflow A:40000 -> B:5201", "v4 B:5201 -> A:40000", false),
        ("subflow A:40000 <-> B:5201", "v4 B:5201 -> A:40000", true),
        ("subflow A:40000 <-> B:5201", "v4 A:40000 -> B:5202", false),
        (
            "subflow sport 40000 (no address: any family)",
            "v6 A:40000 -> B:5201",
            true,
        ),
        (
            "subflow sport 40000 (no address: any family)",
            "v4 C:40000 -> D:5201",
            true,
        ),
        (
            "not subflow to [fd00:1::2]:5201",
            "v6 C:40001 -> B:5201",
            false,
        ),
        (
            "not subflow to [fd00:1::2]:5201",
            "v4 A:40000 -> B:5201",
            true,
        ),
    ];
    for (sn, fname, w) in golden {
        let si = sel.iter().position(|s| s.0 == *sn).expect("selector");
        let pi = flows.iter().position(|f| f.0 == *fname).expect("flow");
        assert_eq!(model(si, pi), *w, "model vs golden row ({sn}, {fname})");
    }
    let selectors: Vec<(String, Stage)> = sel
        .iter()
        .map(|(n, s)| (n.to_string(), s.stage()))
        .collect();
    run_probe("tuple selectors", &selectors, &packets, &model);
}

/// pass and drop: terminal verdicts for the selected packets.
#[test]
fn pass_and_drop_verdicts() {
    if !root("pass_and_drop_verdicts") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let c = v4(V4_C);
    let d = v4(V4_D);
    let act = |k: &str| format!("kind = \"{k}\"");
    let drop_a = vec![
        chain(vec![ipp(Some(a), None, false)], vec![act("drop")]),
        chain(vec![], vec![set_backup(true, false)]),
    ];
    let pass_ack = vec![
        chain(vec![pt(&["dss_ack"])], vec![act("pass")]),
        chain(vec![], vec![set_backup(true, false)]),
    ];
    let grow_then_drop = vec![
        chain(vec![], vec![set_backup(false, false)]),
        chain(vec![pt(&["mp_prio"])], vec![act("drop")]),
    ];
    let dropped = |out: Out, counts: &[(Ctr, u64)]| Exp {
        out,
        drop: true,
        counts: counts.to_vec(),
    };
    let cases = vec![
        Case::new(
            "drop selects A: dropped, later chains do not run",
            &dss_ack_pkt(a, b),
            drop_a.clone(),
        )
        .both(dropped(
            Out::Same,
            &[sel_hit(0, 0), (st(0, 1, "hit"), 1), (st(1, 0, "run"), 0)],
        )),
        Case::new(
            "drop does not select C: next chain acts",
            &dss_ack_pkt(c, d),
            drop_a.clone(),
        )
        .both(exp(
            Out::Prio(true),
            &[
                (st(0, 1, "run"), 1),
                (st(0, 1, "hit"), 0),
                (st(1, 0, "hit"), 1),
            ],
        )),
        Case::new(
            "drop on a data segment",
            &data_pkt(a, b, 500),
            drop_a.clone(),
        )
        .both(dropped(Out::Same, &[(st(0, 1, "hit"), 1)])),
        Case::raw("non-TCP never reaches drop", udp_v4(), drop_a).both(exp(
            Out::Same,
            &[(entry("not_tcp"), 1), (st(0, 0, "run"), 0)],
        )),
        Case::new(
            "pass ends the walk: set_backup never runs",
            &dss_ack_pkt(a, b),
            pass_ack.clone(),
        )
        .both(exp(
            Out::Same,
            &[(st(0, 1, "hit"), 1), (st(1, 0, "run"), 0)],
        )),
        Case::new(
            "pass does not select a data segment",
            &data_pkt(a, b, 10),
            pass_ack,
        )
        .xdp(exp(
            Out::Prio(true),
            &[(st(0, 1, "hit"), 0), (st(1, 0, "hit"), 1)],
        ))
        .tc(exp(
            Out::Same,
            &[(st(0, 1, "hit"), 0), (st(1, 0, "skip"), 1)],
        )),
        Case::new(
            "grown by set_backup, then dropped by the next chain",
            &dss_ack_pkt(a, b),
            grow_then_drop.clone(),
        )
        .both(dropped(
            Out::Prio(false),
            &[(st(0, 0, "hit"), 1), sel_hit(1, 0), (st(1, 1, "hit"), 1)],
        )),
        Case::new(
            "not grown (plain ACK), not dropped",
            &Pkt::ip(a, b).opts(ts()),
            grow_then_drop,
        )
        .both(exp(
            Out::Same,
            &[(st(0, 0, "skip"), 1), (st(1, 0, "hit"), 0)],
        )),
    ];
    run_table("pass / drop", &cases);
}

/// AND / OR / NOT over two and three selectors, against a left-to-right
/// model (each selector combines with the result so far).
#[test]
fn selector_combinations_follow_left_to_right_logic() {
    if !root("selector_combinations_follow_left_to_right_logic") {
        return;
    }
    // S1: src is A, S2: data_fin, S3: dst is B
    let s = [
        ipp(Some(v4(V4_A)), None, false),
        pt(&["data_fin"]),
        ipp(None, Some(v4(V4_B)), false),
    ];
    // (op of each selector after the first: true = or; not of each)
    type Expr = (Vec<bool>, Vec<bool>);
    // 6 + 3 expressions = 30 stages: one rig
    let exprs: Vec<Expr> = vec![
        (vec![false], vec![false, false]),              // S1 and S2
        (vec![true], vec![false, false]),               // S1 or S2
        (vec![false], vec![false, true]),               // S1 and !S2
        (vec![true], vec![true, false]),                // !S1 or S2
        (vec![false], vec![true, true]),                // !S1 and !S2
        (vec![true], vec![false, true]),                // S1 or !S2
        (vec![false, true], vec![false, false, false]), // (S1 and S2) or S3
        (vec![true, false], vec![false, false, false]), // (S1 or S2) and S3
        (vec![true, false], vec![true, false, true]),   // (!S1 or S2) and !S3
    ];
    let model = |e: &Expr, v: [bool; 3]| -> bool {
        let mut m = v[0] ^ e.1[0];
        for (i, or_op) in e.0.iter().enumerate() {
            let x = v[i + 1] ^ e.1[i + 1];
            m = if *or_op { m || x } else { m && x };
        }
        m
    };
    // golden rows pin the model: (expression, S1..S3, result)
    let golden: &[(usize, [bool; 3], bool)] = &[
        (0, [true, true, false], true),
        (0, [true, false, true], false),
        (1, [false, true, false], true),
        (1, [false, false, true], false),
        (2, [true, false, false], true),
        (2, [true, true, false], false),
        (3, [true, false, false], false),
        (3, [false, false, false], true),
        (4, [false, false, true], true),
        (4, [true, false, false], false),
        (5, [false, false, false], true),
        (5, [false, true, false], false),
        (6, [true, false, true], true),
        (6, [false, true, false], false),
        (7, [false, true, true], true),
        (7, [true, true, false], false),
        (8, [true, true, false], true),
        (8, [false, false, false], true),
        (8, [true, false, false], false),
        (8, [false, true, true], false),
    ];
    for (e, v, r) in golden {
        assert_eq!(model(&exprs[*e], *v), *r, "model vs golden row {e} {v:?}");
    }
    let show = |e: &Expr| -> String {
        let mut t = format!("{}S1", if e.1[0] { "!" } else { "" });
        for (i, o) in e.0.iter().enumerate() {
            let _ = write!(
                t,
                " {} {}S{}",
                if *o { "or" } else { "and" },
                if e.1[i + 1] { "!" } else { "" },
                i + 2
            );
        }
        t
    };
    let chains: Vec<MatrixChain> = exprs
        .iter()
        .map(|e| {
            let sel = (0..e.1.len())
                .map(|i| {
                    let mut x = s[i].clone();
                    if i > 0 && e.0[i - 1] {
                        x = or(x);
                    }
                    if e.1[i] {
                        x = not(x);
                    }
                    x
                })
                .collect();
            (show(e), sel)
        })
        .collect();
    // the 8 packets: every (S1, S2, S3)
    let mut packets = Vec::new();
    let mut truth = Vec::new();
    for s1 in [false, true] {
        for s2 in [false, true] {
            for s3 in [false, true] {
                let src = v4(if s1 { V4_A } else { V4_C });
                let dst = v4(if s3 { V4_B } else { V4_D });
                let o = if s2 {
                    padded(&[
                        &ts(),
                        &Dss {
                            ack: Some(9),
                            map: Some((50, 0, 1)),
                            data_fin: true,
                            ..Default::default()
                        }
                        .bytes(),
                    ])
                } else {
                    cat(&[&ts(), &dss_ack(9)])
                };
                packets.push((
                    format!("S1..S3 = {s1} {s2} {s3}"),
                    Pkt::ip(src, dst).opts(o),
                ));
                truth.push([s1, s2, s3]);
            }
        }
    }
    run_matrix("selector combinations", &chains, &packets, &|c, p| {
        model(&exprs[c], truth[p])
    });
}

/// Several chains on one hook run in order, each counting its runs; the
/// first actor that changes the packet wins, later ones see its MP_PRIO
/// (the packet-type summary is recomputed after a change) and skip.
#[test]
fn chains_on_one_hook_run_in_order() {
    if !root("chains_on_one_hook_run_in_order") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let c = v4(V4_C);
    let d = v4(V4_D);
    let two = vec![
        chain(
            vec![ipp(Some(a), None, false)],
            vec![set_backup(true, false)],
        ),
        chain(vec![], vec![set_backup(false, false)]),
    ];
    // chain 0 has two actors; chain 1 selects what chain 0 produced
    let stacked = vec![
        chain(
            vec![pt(&["dss_ack"])],
            vec![set_backup(true, false), set_backup(false, false)],
        ),
        chain(vec![pt(&["mp_prio"])], vec![set_backup(false, false)]),
    ];
    let cases = vec![
        Case::new(
            "first chain selects and acts, second skips",
            &dss_ack_pkt(a, b),
            two.clone(),
        )
        .both(exp(
            Out::Prio(true),
            &[
                (st(0, 0, "run"), 1),
                sel_hit(0, 0),
                (st(0, 1, "run"), 1),
                (st(0, 1, "hit"), 1),
                (st(1, 0, "run"), 1),
                (st(1, 0, "skip"), 1),
            ],
        )),
        Case::new(
            "first chain does not select, second acts",
            &dss_ack_pkt(c, d),
            two.clone(),
        )
        .both(exp(
            Out::Prio(false),
            &[
                (st(0, 0, "run"), 1),
                (st(0, 0, "hit"), 0),
                (st(0, 1, "run"), 1),
                (st(0, 1, "hit"), 0),
                (st(1, 0, "run"), 1),
                (st(1, 0, "hit"), 1),
            ],
        )),
        Case::new(
            "a non-MPTCP segment runs through both",
            &Pkt::ip(a, b).opts(ts()),
            two,
        )
        .both(exp(
            Out::Same,
            &[
                sel_hit(0, 0),
                (st(0, 1, "skip"), 1),
                (st(1, 0, "run"), 1),
                (st(1, 0, "skip"), 1),
            ],
        )),
        Case::new(
            "second actor and next chain see the first actor's MP_PRIO",
            &dss_ack_pkt(a, b),
            stacked.clone(),
        )
        .both(exp(
            Out::Prio(true),
            &[
                sel_hit(0, 0),
                (st(0, 1, "hit"), 1),
                (st(0, 2, "run"), 1),
                (st(0, 2, "skip"), 1),
                (st(1, 0, "run"), 1),
                sel_hit(1, 0),
                (st(1, 1, "skip"), 1),
            ],
        )),
        Case::new(
            "nothing selects a plain ACK",
            &Pkt::ip(a, b).opts(ts()),
            stacked.clone(),
        )
        .both(exp(
            Out::Same,
            &[
                (st(0, 0, "hit"), 0),
                (st(0, 1, "run"), 1),
                (st(0, 2, "run"), 1),
                (st(1, 0, "run"), 1),
                (st(1, 0, "hit"), 0),
                (st(1, 1, "run"), 1),
            ],
        )),
        Case::new(
            "a DSS ACK that already carries MP_PRIO: everyone skips",
            &Pkt::ip(a, b).opts(padded(&[&mp_prio(false), &dss_ack(1)])),
            stacked,
        )
        .both(exp(
            Out::Same,
            &[
                sel_hit(0, 0),
                (st(0, 1, "skip"), 1),
                (st(0, 2, "skip"), 1),
                sel_hit(1, 0),
                (st(1, 1, "skip"), 1),
            ],
        )),
    ];
    run_table("chain order", &cases);
}

/// More stages than the kernel's 33 tail calls: one walk program runs
/// them all, and the actor at the end acts (the tail-call walk stopped at
/// the 34th stage; badinput.rs pins that limit for points that still walk
/// by tail calls).
#[test]
fn long_chains_reach_their_actor() {
    if !root("long_chains_reach_their_actor") {
        return;
    }
    // one chain: 63 ip_pair selectors, then drop = 64 stages
    let sel: Vec<Stage> = (0..63).map(|_| ipp(Some(v4(V4_A)), None, false)).collect();
    let chains = vec![chain(sel, vec!["kind = \"drop\"".to_owned()])];
    let mut counts: Vec<(Ctr, u64)> = (0..64).map(|s| (st(0, s, "run"), 1)).collect();
    counts.extend((0..64).map(|s| (st(0, s, "hit"), 1)));
    counts.push((st(0, 63, "tail_miss"), 0));
    let cases = vec![Case::new(
        "64 stages: the actor (64th) acts",
        &dss_ack_pkt(v4(V4_A), v4(V4_B)),
        chains,
    )
    .both(Exp {
        out: Out::Same,
        drop: true,
        counts,
    })];
    run_table("long walk", &cases);
}

/// set_backup on both hooks: what grows, what stays, and why.
#[test]
fn set_backup_adds_mp_prio_where_it_can() {
    if !root("set_backup_adds_mp_prio_where_it_can") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let a6 = v6(V6_A);
    let b6 = v6(V6_B);
    let on = |bk: bool| one(vec![], bk);
    let hit = |bk: bool| exp(Out::Prio(bk), &[(st(0, 0, "hit"), 1)]);
    let skip = || exp(Out::Same, &[(st(0, 0, "skip"), 1)]);
    let no_room = || exp(Out::Same, &[(st(0, 0, "no_room"), 1)]);
    let tc_data = || exp(Out::Same, &[(st(0, 0, "skip"), 1)]);
    let mut cases = Vec::new();
    for bk in [true, false] {
        cases.push(
            Case::new(
                format!("v4 DSS pure ACK, backup={bk}"),
                &dss_ack_pkt(a, b),
                on(bk),
            )
            .both(hit(bk)),
        );
        cases.push(
            Case::new(
                format!("v6 DSS pure ACK, backup={bk}"),
                &dss_ack_pkt(a6, b6),
                on(bk),
            )
            .both(hit(bk)),
        );
        cases.push(
            Case::new(
                format!("v4 data segment, 100 bytes, backup={bk}"),
                &data_pkt(a, b, 100),
                on(bk),
            )
            .xdp(hit(bk))
            .tc(tc_data()),
        );
        cases.push(
            Case::new(
                format!("v6 data segment, 1200 bytes, backup={bk}"),
                &data_pkt(a6, b6, 1200),
                on(bk),
            )
            .xdp(hit(bk))
            .tc(tc_data()),
        );
    }
    let t = true;
    let extra: Vec<Case> = vec![
        Case::new("v4 1-byte data segment", &data_pkt(a, b, 1), on(t))
            .xdp(hit(t))
            .tc(tc_data()),
        Case::new(
            "v4 full-size data segment (1448 bytes)",
            &data_pkt(a, b, 1448),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        Case::new(
            "DSS ack only, no TS (header 28 bytes)",
            &Pkt::ip(a, b).opts(dss_ack(1)),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "MP_JOIN third ACK (header 56 -> 60)",
            &Pkt::ip(a, b).opts(cat(&[&ts(), &mpj_ack()])),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "options at 36 bytes (DSS 8-byte ack + SACK) grow to 40",
            &Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &Dss {
                    ack: Some(1 << 40),
                    ack64: true,
                    ..Default::default()
                }
                .bytes(),
                &[NOP, NOP],
                &sack(&[(1, 2)]),
            ])),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "options already 40 bytes: no room",
            &Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &dss_ack(1),
                &[NOP, NOP],
                &sack(&[(1, 2), (3, 4)])[..18],
            ])),
            on(t),
        )
        .both(no_room()),
        Case::new(
            "37 option bytes + 3 NOPs: no room",
            &Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &dss_ack(1),
                &sack(&[(1, 2)]),
                &[253, 7, 0, 0, 0, 0, 0],
            ])),
            on(t),
        )
        .both(no_room()),
        Case::new(
            "38 option bytes + EOL: no room",
            &Pkt::ip(a, b).opts(cat(&[
                &ts(),
                &dss_ack(1),
                &sack(&[(1, 2)]),
                &[253, 8, 0, 0, 0, 0, 0, 0],
                &[EOL, 0],
            ])),
            on(t),
        )
        .both(no_room()),
        Case::new(
            "39 option bytes + NOP: no room",
            &Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &dss_ack(1),
                &sack(&[(1, 2)]),
                &[253, 9, 0, 0, 0, 0, 0, 0, 0],
            ])),
            on(t),
        )
        .both(no_room()),
        Case::new(
            "data segment with 40 option bytes: no room (XDP)",
            &Pkt::ip(a, b)
                .opts(padded(&[
                    &ts(),
                    &Dss {
                        ack: Some(1),
                        ack64: true,
                        map: Some((1, 1, 9)),
                        dsn64: true,
                        ..Default::default()
                    }
                    .bytes(),
                    &[NOP, NOP],
                ]))
                .payload(9),
            on(t),
        )
        // TC: a data segment needs no room (its clone reuses the DSS
        // mapping bytes); under BPF_PROG_TEST_RUN (loopback) it is skipped
        .xdp(no_room())
        .tc(skip()),
        Case::new(
            "MP_JOIN SYN: skipped",
            &Pkt::ip(a, b)
                .flags(SYN)
                .opts(padded(&[&mss(1460), &mpj_syn(false, 1, 2, 3)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "MP_JOIN SYN-ACK: skipped",
            &Pkt::ip(b, a)
                .flags(SYN | ACK)
                .opts(padded(&[&mss(1460), &mpj_synack(false, 1, 2, 3)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "RST with DSS: skipped",
            &Pkt::ip(a, b)
                .flags(RST | ACK)
                .opts(cat(&[&ts(), &dss_ack(1)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "no ACK flag with DSS: skipped",
            &Pkt::ip(a, b).flags(PSH).opts(cat(&[&ts(), &dss_ack(1)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "FIN + DATA_FIN: grows",
            &Pkt::ip(a, b).flags(FIN | ACK).opts(padded(&[
                &ts(),
                &Dss {
                    ack: Some(1),
                    map: Some((5, 0, 1)),
                    data_fin: true,
                    ..Default::default()
                }
                .bytes(),
            ])),
            on(t),
        )
        .both(hit(t)),
        Case::new("plain TCP ACK: skipped", &Pkt::ip(a, b).opts(ts()), on(t)).both(skip()),
        Case::new(
            "plain TCP data: skipped",
            &Pkt::ip(a, b).opts(ts()).payload(10),
            on(t),
        )
        .both(skip()),
        Case::new(
            "ADD_ADDR without DSS: skipped",
            &Pkt::ip(b, a).opts(padded(&[&ts(), &add_addr(false, 1, v4(V4_D), None)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "MP_CAPABLE third ACK: skipped",
            &Pkt::ip(a, b).opts(padded(&[&ts(), &mpc_ack(1, 2)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "already carries MP_PRIO: skipped",
            &Pkt::ip(a, b).opts(padded(&[&mp_prio(false), &dss_ack(1)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "MPTCP option after EOL does not count: skipped",
            &Pkt::ip(a, b).opts(cat(&[&ts(), &[EOL, 0, 0, 0], &dss_ack(1)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "Ethernet padding after a DSS ACK (XDP keeps it, TC cuts it)",
            &Pkt::ip(a, b).opts(dss_ack(1)).trailer(6),
            on(t),
        )
        .both(hit(t)),
        Case::new("802.1Q tag", &dss_ack_pkt(a, b).vlan(TPID_8021Q, 10), on(t)).both(hit(t)),
        Case::new(
            "802.1ad + 802.1Q tags, data segment",
            &data_pkt(a, b, 200)
                .vlan(TPID_8021AD, 10)
                .vlan(TPID_8021Q, 20),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        Case::new(
            "QinQ, IPv6 pure ACK",
            &dss_ack_pkt(a6, b6)
                .vlan(TPID_8021AD, 10)
                .vlan(TPID_8021Q, 20),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "IPv4 with options (router alert + NOPs)",
            &dss_ack_pkt(a, b).ip4_opts(vec![148, 4, 0, 0, 1, 1, 1, 0]),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "IPv4 with 40 bytes of options, data segment",
            &data_pkt(a, b, 50).ip4_opts([vec![148, 4, 0, 0], vec![1; 35], vec![0]].concat()),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        Case::new(
            "IPv6 hop-by-hop",
            &dss_ack_pkt(a6, b6).ext(EXT_HOP, padn_body(6)),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "IPv6 destination options (22 bytes body), data",
            &data_pkt(a6, b6, 99).ext(EXT_DEST, padn_body(22)),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        Case::new(
            "IPv6 hop-by-hop + routing + destination options",
            &dss_ack_pkt(a6, b6)
                .ext(EXT_HOP, padn_body(6))
                .ext(EXT_ROUTING, routing_body())
                .ext(EXT_DEST, padn_body(6)),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "IPv6 + 104-byte hop-by-hop: TCP at offset 158 (the deepest handled)",
            &data_pkt(a6, b6, 20).ext(EXT_HOP, padn_body(102)),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        Case::new(
            "IPv6 + 104-byte hop-by-hop, pure ACK",
            &dss_ack_pkt(a6, b6).ext(EXT_HOP, padn_body(102)),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "IPv6 four extension headers (the most walked)",
            &dss_ack_pkt(a6, b6)
                .ext(EXT_HOP, padn_body(6))
                .ext(EXT_DEST, padn_body(6))
                .ext(EXT_ROUTING, routing_body())
                .ext(EXT_DEST, padn_body(6)),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "QinQ + IPv6 + 3 extension headers, data segment",
            &data_pkt(a6, b6, 500)
                .vlan(TPID_8021AD, 1)
                .vlan(TPID_8021Q, 2)
                .ext(EXT_HOP, padn_body(14))
                .ext(EXT_ROUTING, routing_body())
                .ext(EXT_DEST, padn_body(30)),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        // EOL ends the option list: XDP puts the MP_PRIO before it; TC
        // would append it behind the EOL, where no receiver reads it, so
        // TC skips such segments
        Case::new(
            "DSS ACK, options end with EOL + zero padding",
            &Pkt::ip(a, b).opts(cat(&[&dss_ack(1), &[EOL, 0, 0, 0]])),
            on(t),
        )
        .xdp(hit(t))
        .tc(skip()),
        Case::new(
            "v6 DSS ACK, TS, EOL + garbage after it",
            &Pkt::ip(a6, b6).opts(cat(&[&ts(), &dss_ack(1), &[NOP, EOL, 0xff, 0xee]])),
            on(false),
        )
        .xdp(hit(false))
        .tc(skip()),
        Case::new(
            "DSS ACK ending exactly at the area end, no EOL",
            &Pkt::ip(a, b).opts(cat(&[&ts()[2..], &[NOP, NOP], &dss_ack(1)])),
            on(t),
        )
        .both(hit(t)),
    ];
    cases.extend(extra);
    run_table("set_backup", &cases);
}

/// once=true: only the first eligible segment of a 4-tuple (per stage)
/// changes; another 4-tuple, or the reverse direction, changes again.
#[test]
fn set_backup_once_per_subflow() {
    if !root("set_backup_once_per_subflow") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let a6 = v6(V6_A);
    let b6 = v6(V6_B);
    let chains = vec![chain(vec![], vec![set_backup(true, true)])];
    let hit = || exp(Out::Prio(true), &[(st(0, 0, "hit"), 1)]);
    let skip = || exp(Out::Same, &[(st(0, 0, "skip"), 1)]);
    // stateful: one rig per family, in this order
    let seq: Vec<Case> = vec![
        Case::new(
            "plain ACK on tuple 1 (not eligible, not recorded)",
            &Pkt::ip(a, b).opts(ts()),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "tuple 1: first DSS ACK changes",
            &dss_ack_pkt(a, b),
            chains.clone(),
        )
        .both(hit()),
        Case::new(
            "tuple 1: second DSS ACK unchanged",
            &dss_ack_pkt(a, b),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "tuple 1: a data segment unchanged",
            &data_pkt(a, b, 100),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "tuple 2 (other source port) changes",
            &dss_ack_pkt(a, b).ports(40001, 5201),
            chains.clone(),
        )
        .both(hit()),
        Case::new(
            "tuple 3 (other destination port) changes",
            &dss_ack_pkt(a, b).ports(40000, 5202),
            chains.clone(),
        )
        .both(hit()),
        Case::new(
            "tuple 1 reversed changes",
            &dss_ack_pkt(a, b).reversed(),
            chains.clone(),
        )
        .both(hit()),
        Case::new(
            "tuple 4 (other address) changes",
            &dss_ack_pkt(v4(V4_C), b),
            chains.clone(),
        )
        .both(hit()),
        Case::new(
            "tuple 4 again unchanged",
            &dss_ack_pkt(v4(V4_C), b),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "tuple 5: data segment (XDP changes, TC skips without recording)",
            &data_pkt(a, b, 10).ports(41000, 5201),
            chains.clone(),
        )
        .xdp(hit())
        .tc(skip()),
        Case::new(
            "tuple 5: then a pure ACK (XDP: done already; TC: first time)",
            &dss_ack_pkt(a, b).ports(41000, 5201),
            chains.clone(),
        )
        .xdp(skip())
        .tc(hit()),
        Case::new("v6 tuple changes", &dss_ack_pkt(a6, b6), chains.clone()).both(hit()),
        Case::new(
            "v6 tuple again unchanged",
            &dss_ack_pkt(a6, b6),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "v6 with hop-by-hop, same addresses and ports: same subflow",
            &dss_ack_pkt(a6, b6).ext(EXT_HOP, padn_body(6)),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "v4 tuple whose addresses equal the v6 tuple's first bytes",
            &dss_ack_pkt(v4(V4_D), v4(V4_B)),
            chains.clone(),
        )
        .both(hit()),
    ];
    run_table("set_backup once", &seq);
}

/// Malformed TCP options and inconsistent headers: passed unchanged,
/// counted as parse errors by every stage that looks at them.
#[test]
fn malformed_packets_pass_unchanged() {
    if !root("malformed_packets_pass_unchanged") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    // chain 0: a selector that walks the options; chain 1: set_backup alone
    let chains = vec![
        chain(
            vec![pt(&["dss_ack", "dss_data", "tcp_plain"])],
            vec![set_backup(true, false)],
        ),
        chain(vec![], vec![set_backup(true, false)]),
    ];
    let both_err = || {
        exp(
            Out::Same,
            &[
                (st(0, 0, "parse_err"), 1),
                (st(0, 0, "hit"), 0),
                (st(1, 0, "parse_err"), 1),
                (st(1, 0, "hit"), 0),
            ],
        )
    };
    let mut cases = Vec::new();
    let bad_opts: Vec<(&str, Vec<u8>)> = vec![
        ("option length 0", cat(&[&dss_ack(1), &[8, 0, 1, 1]])),
        ("option length 1", cat(&[&dss_ack(1), &[8, 1, 1, 1]])),
        (
            "TS running past the header",
            cat(&[&dss_ack(1), &[1, 1, 8, 10]]),
        ),
        (
            "DSS running past the header",
            cat(&[&ts(), &[30, 12, 0x20, 1, 0, 0, 0, 1]]),
        ),
        (
            "MPTCP option of length 2",
            cat(&[&dss_ack(1), &[30, 2, 1, 1]]),
        ),
        (
            "kind in the last byte, no length",
            cat(&[&dss_ack(1), &[1, 1, 1, 8]]),
        ),
        (
            "length 0 as the first option",
            cat(&[&[2, 0, 0, 0], &dss_ack(1)]),
        ),
        ("length 255", cat(&[&[5, 255, 0, 0], &dss_ack(1)])),
    ];
    for (name, o) in bad_opts {
        for (fam, s, d) in [("v4", a, b), ("v6", v6(V6_A), v6(V6_B))] {
            cases.push(
                Case::new(
                    format!("{name} ({fam} pure ACK)"),
                    &Pkt::ip(s, d).opts(o.clone()),
                    chains.clone(),
                )
                .both(both_err()),
            );
        }
        cases.push(
            Case::new(
                format!("{name} (v4 data segment)"),
                &Pkt::ip(a, b).opts(o.clone()).payload(40),
                chains.clone(),
            )
            // TC reads a data segment's options too (its MP_PRIO goes in a
            // clone trimmed to a pure ACK, see set_backup.bpf.c)
            .both(both_err()),
        );
    }
    // IP length fields that leave no room for the TCP header
    let good = dss_ack_pkt(a, b).build();
    let mut short_tot = good.clone();
    short_tot[16..18].copy_from_slice(&50u16.to_be_bytes()); // 20 IP + 30 < 20 + 40
    cases.push(
        Case::raw(
            "IPv4 total length shorter than the TCP header",
            short_tot,
            chains.clone(),
        )
        .both(both_err()),
    );
    let good6 = dss_ack_pkt(v6(V6_A), v6(V6_B)).build();
    let mut short_pl = good6.clone();
    short_pl[18..20].copy_from_slice(&36u16.to_be_bytes());
    cases.push(
        Case::raw(
            "IPv6 payload length shorter than the TCP header",
            short_pl,
            chains.clone(),
        )
        .both(both_err()),
    );
    // headers the entry refuses
    let entry_err = || {
        exp(
            Out::Same,
            &[
                (entry("parse_err"), 1),
                (st(0, 0, "run"), 0),
                (st(1, 0, "run"), 0),
            ],
        )
    };
    let mut doff4 = good.clone();
    doff4[14 + 20 + 12] = 0x40;
    cases.push(Case::raw("TCP data offset 4", doff4, chains.clone()).both(entry_err()));
    let mut doff15 = good.clone();
    doff15[14 + 20 + 12] = 0xf0;
    cases.push(
        Case::raw(
            "TCP data offset past the end of the frame",
            doff15,
            chains.clone(),
        )
        .both(entry_err()),
    );
    let mut ihl4 = good.clone();
    ihl4[14] = 0x44;
    cases.push(Case::raw("IPv4 header length 16", ihl4, chains.clone()).both(entry_err()));
    let mut ihl15 = good.clone();
    ihl15[14] = 0x4f;
    ihl15.truncate(14 + 50);
    cases.push(
        Case::raw(
            "IPv4 header length 60 past the frame",
            ihl15,
            chains.clone(),
        )
        .both(entry_err()),
    );
    let mut ver = good.clone();
    ver[14] = 0x65;
    cases.push(Case::raw("IPv4 EtherType with version 6", ver, chains.clone()).both(entry_err()));
    let mut ver6 = good6.clone();
    ver6[14] = 0x46;
    cases.push(Case::raw("IPv6 EtherType with version 4", ver6, chains.clone()).both(entry_err()));
    let mut tot_small = good.clone();
    tot_small[16..18].copy_from_slice(&10u16.to_be_bytes());
    cases.push(
        Case::raw(
            "IPv4 total length below its header length",
            tot_small,
            chains.clone(),
        )
        .both(entry_err()),
    );
    run_table("malformed", &cases);
}

/// Non-TCP frames, IP fragments and too deep encapsulations: passed
/// unchanged, counted by the entry, no stage runs.
#[test]
fn non_tcp_and_fragments_pass_unchanged() {
    if !root("non_tcp_and_fragments_pass_unchanged") {
        return;
    }
    let chains = one(vec![], true);
    let not_tcp = || exp(Out::Same, &[(entry("not_tcp"), 1), (st(0, 0, "run"), 0)]);
    let parse_err = || exp(Out::Same, &[(entry("parse_err"), 1), (st(0, 0, "run"), 0)]);
    let a = v4(V4_A);
    let b = v4(V4_B);
    let a6 = v6(V6_A);
    let b6 = v6(V6_B);
    let mut vlan_udp = link_header(&[(TPID_8021Q, 7)], etherparse::EtherType::IPV4);
    vlan_udp.extend_from_slice(&udp_v4()[14..]);
    let mut lldp = udp_v4();
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    let mut three_tags = dss_ack_pkt(a, b)
        .vlan(TPID_8021AD, 1)
        .vlan(TPID_8021Q, 2)
        .vlan(TPID_8021Q, 3)
        .build();
    let mut cases = vec![
        Case::raw("UDP over IPv4", udp_v4(), chains.clone()).both(not_tcp()),
        Case::raw("UDP over IPv6", udp_v6(), chains.clone()).both(not_tcp()),
        Case::raw("ICMP echo", icmp_v4(), chains.clone()).both(not_tcp()),
        Case::raw("ICMPv6 echo", icmp_v6(), chains.clone()).both(not_tcp()),
        Case::raw("ARP request", arp(), chains.clone()).both(not_tcp()),
        Case::raw("UDP behind an 802.1Q tag", vlan_udp, chains.clone()).both(not_tcp()),
        Case::raw("LLDP EtherType", lldp, chains.clone()).both(not_tcp()),
        Case::new(
            "IPv4 first fragment (MF)",
            &dss_ack_pkt(a, b).frag(true, 0),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv4 last fragment (offset 185)",
            &dss_ack_pkt(a, b).frag(false, 185),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv4 middle fragment",
            &data_pkt(a, b, 64).frag(true, 8),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv6 fragment header",
            &dss_ack_pkt(a6, b6).ext(EXT_FRAGMENT, fragment_body(0, true)),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv6 hop-by-hop then fragment header",
            &dss_ack_pkt(a6, b6)
                .ext(EXT_HOP, padn_body(6))
                .ext(EXT_FRAGMENT, fragment_body(3, false)),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv6 + 112-byte hop-by-hop: TCP at offset 166, past the 160 handled",
            &dss_ack_pkt(a6, b6).ext(EXT_HOP, padn_body(110)),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv6 five extension headers (more than walked)",
            &dss_ack_pkt(a6, b6)
                .ext(EXT_HOP, padn_body(6))
                .ext(EXT_DEST, padn_body(6))
                .ext(EXT_ROUTING, routing_body())
                .ext(EXT_DEST, padn_body(6))
                .ext(EXT_DEST, padn_body(6)),
            chains.clone(),
        )
        .both(parse_err()),
    ];
    cases.push(
        Case::raw(
            "three VLAN tags",
            std::mem::take(&mut three_tags),
            chains.clone(),
        )
        .both(parse_err()),
    );
    run_table("non-TCP and fragments", &cases);
}

/// BPF_PROG_TEST_RUN itself refuses frames shorter than Ethernet, and on
/// TC untagged IP frames shorter than the IP header (the skb test run
/// looks at it); our programs never see those.
fn kernel_refuses(hook: Hook, frame: &[u8]) -> bool {
    if frame.len() < 14 {
        return true;
    }
    let min = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => 14 + 20,
        0x86dd => 14 + 40,
        _ => 0,
    };
    hook != Hook::Xdp && frame.len() < min
}

/// Every prefix of valid packets: never a crash, never an error; the
/// output is the input, or the input grown exactly as expected.
#[test]
fn truncated_packets_never_break() {
    if !root("truncated_packets_never_break") {
        return;
    }
    let t0 = Instant::now();
    let pkts: Vec<(&str, Pkt)> = vec![
        ("v4 DSS pure ACK", dss_ack_pkt(v4(V4_A), v4(V4_B))),
        (
            "v6 + hop-by-hop, data segment",
            data_pkt(v6(V6_A), v6(V6_B), 40).ext(EXT_HOP, padn_body(6)),
        ),
        (
            "QinQ, IPv4 options, data segment",
            data_pkt(v4(V4_A), v4(V4_B), 30)
                .vlan(TPID_8021AD, 1)
                .vlan(TPID_8021Q, 2)
                .ip4_opts(vec![148, 4, 0, 0]),
        ),
        (
            "v4 MP_JOIN third ACK (56-byte header)",
            Pkt::v4(V4_A, V4_B).opts(cat(&[&ts(), &mpj_ack()])),
        ),
    ];
    let chains = vec![
        chain(
            vec![pt(&["dss_ack", "dss_data", "mp_join_ack"])],
            vec![set_backup(true, false)],
        ),
        chain(vec![], vec![set_backup(false, false)]),
        // every tuple selector reads the (possibly cut) packet too
        chain(
            vec![
                TupleSel::Src("10.0.0.0/8").stage(),
                or(TupleSel::Dst("fd00::/16").stage()),
                TupleSel::Port(Some(40000), Some(5201)).stage(),
                TupleSel::Subflow {
                    saddr: None,
                    daddr: None,
                    sport: Some(40000),
                    dport: None,
                    bidir: true,
                }
                .stage(),
                ipp(Some(v4(V4_A)), None, true),
            ],
            vec![set_backup(true, false)],
        ),
    ];
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut grown = 0;
    let mut refused = 0;
    for hook in FAMILIES {
        let rig = Rig::new(hook, &chains);
        for (name, p) in &pkts {
            let full = p.build();
            for cut in 0..=full.len() {
                let input = &full[..cut];
                let quiet = rig.quiet_counters();
                let before: Vec<u64> = quiet.iter().map(|c| rig.get(*c)).collect();
                runs += 1;
                let o = match rig.h.run(input) {
                    Ok(o) => o,
                    Err(_) if kernel_refuses(hook, input) => {
                        refused += 1;
                        continue;
                    }
                    Err(e) => {
                        failures.push(format!("{name} cut at {cut} on {hook}: run failed: {e:#}"));
                        continue;
                    }
                };
                let mut errs = Vec::new();
                if o.ret != pass_verdict(hook) {
                    errs.push(format!("verdict {}", o.ret));
                }
                for (i, c) in quiet.iter().enumerate() {
                    if matches!(c, Ctr::St(_, _, _)) && rig.get(*c) != before[i] {
                        errs.push(format!("counter {c} moved"));
                    }
                }
                if o.data != input {
                    grown += 1;
                    let want = decode::grow_raw(input, hook == Hook::Xdp, true);
                    match want {
                        None => errs.push("changed a frame without a TCP header".into()),
                        Some(w) => {
                            if let Err(r) =
                                pktlib::compare("changed, but not as expected", input, &w, &o.data)
                            {
                                errs.push(r);
                            }
                        }
                    }
                    if cut == full.len() {
                        if let Err(r) = pktlib::consistent("full packet", input, &o.data) {
                            errs.push(r);
                        }
                    }
                } else if cut == full.len() && (hook == Hook::Xdp || p.tcp.payload.is_empty()) {
                    errs.push("the complete packet was not changed".into());
                }
                if !errs.is_empty() {
                    failures.push(format!(
                        "{name} cut at {cut} of {} on {hook}:\n  {}",
                        full.len(),
                        errs.join("\n  ")
                    ));
                }
            }
        }
    }
    eprintln!(
        "truncation: {} packets, {runs} runs ({grown} changed, {refused} refused by the kernel), {} failed ({:.2?})",
        pkts.len(),
        failures.len(),
        t0.elapsed()
    );
    if !failures.is_empty() {
        panic!("truncated packets:\n\n{}", failures.join("\n\n"));
    }
}

/// TC ingress runs the same programs as TC egress.
#[test]
fn tc_ingress_behaves_like_egress() {
    if !root("tc_ingress_behaves_like_egress") {
        return;
    }
    let input = dss_ack_pkt(v4(V4_A), v4(V4_B));
    let data = data_pkt(v4(V4_A), v4(V4_B), 10);
    let rig = Rig::new(
        Hook::TcIngress,
        &one(vec![pt(&["dss_ack", "dss_data"])], true),
    );
    for (p, out, ctr) in [(&input, Out::Prio(true), "hit"), (&data, Out::Same, "skip")] {
        let case = Case::new("tc-ingress", p, vec![]);
        let e = exp(out, &[sel_hit(0, 0), (st(0, 1, ctr), 1)]);
        if let Err(r) = check_case(&rig, &case, &e) {
            panic!("{r}");
        }
    }
}

/// rate_limit on both hooks, v4 and v6. Windows: the shift comes from the
/// ACK sender's SYN / SYN-ACK; an ACK announces at most what is in flight
/// plus the credit left, which is a whole burst until data passes (32 KiB at
/// 100 Gbit/s: deterministic); a window already below the budget is never
/// raised; no handshake, RST or malformed options leave the packet alone.
/// Data: new bytes within the burst pass, the segment that would overdraw
/// the budget is dropped, a retransmission of bytes already passed goes
/// through, a segment larger than the burst passes only when the budget is
/// paid up (80 bit/s, 2 KiB burst: no credit is earned during the run).
/// Every output is verified independently (etherparse rebuild, RFC 1624
/// transform, checksums recomputed).
#[test]
fn rate_limit_clamps_the_window() {
    if !root("rate_limit_clamps_the_window") {
        return;
    }
    let rl = || {
        vec![chain(
            vec![],
            vec!["kind = \"rate_limit\"\nrate = \"100gbit\"\nburst = \"32kb\"".to_owned()],
        )]
    };
    let slow = || {
        vec![chain(
            vec![],
            vec!["kind = \"rate_limit\"\nrate = \"80bit\"\nburst = \"2kb\"".to_owned()],
        )]
    };
    let hit = |w: u16| exp(Out::Window(w), &[(st(0, 0, "hit"), 1)]);
    let skip = || exp(Out::Same, &[(st(0, 0, "skip"), 1)]);
    let perr = || exp(Out::Same, &[(st(0, 0, "parse_err"), 1)]);
    let dropped = || Exp {
        out: Out::Same,
        drop: true,
        counts: vec![(st(0, 0, "drop"), 1), (st(0, 0, "skip"), 0)],
    };
    let mut cases = Vec::new();
    for (fam, a, b) in [("v4", v4(V4_A), v4(V4_B)), ("v6", v6(V6_A), v6(V6_B))] {
        // the subflow's ACK sender is `a`; each scenario on its own ports
        let syn = |sp: u16, flags: u8, o: Vec<u8>| {
            let mut p = Pkt::ip(a, b).ports(sp, 5201).flags(flags).opts(o);
            p.tcp.win = 64240;
            p
        };
        let ackp = |sp: u16, win: u16| {
            let mut p = dss_ack_pkt(a, b).ports(sp, 5201);
            p.tcp.win = win;
            p
        };
        // data from `b` to the ACK sender, at `off` bytes into its stream
        let datap = |sp: u16, off: u32, n: usize| {
            let p = data_pkt(b, a, n).ports(5201, sp);
            let seq = p.tcp.seq.wrapping_add(off);
            p.seq(seq)
        };
        let syn_opts = |ws: Option<u8>| {
            let mut parts: Vec<Vec<u8>> = vec![mss(1460), sack_ok(), ts()];
            if let Some(s) = ws {
                parts.push(vec![NOP]);
                parts.push(wscale(s));
            }
            parts.push(mpc_syn());
            let refs: Vec<&[u8]> = parts.iter().map(|v| v.as_slice()).collect();
            padded(&refs)
        };
        let c = |name: &str, p: &Pkt, e: Exp| Case::new(format!("{fam}: {name}"), p, rl()).both(e);
        let cs =
            |name: &str, p: &Pkt, e: Exp| Case::new(format!("{fam}: {name}"), p, slow()).both(e);
        cases.extend([
            c(
                "SYN, wscale 7: recorded, untouched",
                &syn(41000, SYN, syn_opts(Some(7))),
                skip(),
            ),
            c(
                "first ACK: nothing in flight, a burst of credit: 32768 >> 7 = 256",
                &ackp(41000, 0xffff),
                hit(256),
            ),
            c("next ACK: the same", &ackp(41000, 0xffff), hit(256)),
            c(
                "ACK already below the budget (100 < 256): never raised",
                &ackp(41000, 100),
                skip(),
            ),
            c(
                "window exactly the budget: untouched",
                &ackp(41000, 256),
                skip(),
            ),
            c(
                "data segment (ACK flag) of the same subflow: clamped too",
                &data_pkt(a, b, 300).ports(41000, 5201),
                hit(256),
            ),
            c(
                "ACK of a subflow whose handshake was not seen",
                &ackp(41999, 0xffff),
                skip(),
            ),
            c(
                "SYN without window scale: shift 0",
                &syn(42000, SYN, syn_opts(None)),
                skip(),
            ),
            c("ACK: 32768 unscaled", &ackp(42000, 0xffff), hit(32768)),
            c(
                "SYN-ACK with wscale 14 (the ACK sender is the server)",
                &syn(43000, SYN | ACK, syn_opts(Some(14))),
                skip(),
            ),
            c("ACK: 32768 >> 14 = 2", &ackp(43000, 0xffff), hit(2)),
            c(
                "RST forgets the subflow",
                &ackp(41000, 0xffff).flags(RST | ACK),
                skip(),
            ),
            c(
                "after the RST: no handshake known",
                &ackp(41000, 0xffff),
                skip(),
            ),
            c(
                "SYN with a malformed option (length 0)",
                &syn(44000, SYN, padded(&[&mss(1460), &[8, 0]])),
                perr(),
            ),
            c(
                "after the malformed SYN: nothing recorded",
                &ackp(44000, 0xffff),
                skip(),
            ),
            cs(
                "SYN, wscale 0 (80 bit/s, burst 2 KiB)",
                &syn(45000, SYN, syn_opts(Some(0))),
                skip(),
            ),
            cs(
                "data, 1400 new bytes within the burst: passed",
                &datap(45000, 0, 1400),
                skip(),
            ),
            cs(
                "ACK of nothing yet: 1400 in flight + 648 of credit -> 2048",
                &{
                    let mut p = ackp(45000, 0xffff);
                    p.tcp.ack = datap(45000, 0, 0).tcp.seq;
                    p
                },
                hit(2048),
            ),
            cs(
                "data, 1400 more: over the budget, dropped",
                &datap(45000, 1400, 1400),
                dropped(),
            ),
            cs(
                "the first segment again (a retransmission): passed",
                &datap(45000, 0, 1400),
                skip(),
            ),
            cs(
                "data, 600 more: within the budget, passed",
                &datap(45000, 1400, 600),
                skip(),
            ),
            cs(
                "data, 600 more: over it, dropped",
                &datap(45000, 2000, 600),
                dropped(),
            ),
            cs(
                "another subflow: SYN",
                &syn(46000, SYN, syn_opts(Some(0))),
                skip(),
            ),
            cs(
                "a 3000-byte segment, over the 2 KiB burst: passed, the budget paid up",
                &datap(46000, 0, 3000),
                skip(),
            ),
            cs(
                "then 100 more: the budget is 952 bytes in debt, dropped",
                &datap(46000, 3000, 100),
                dropped(),
            ),
        ]);
    }
    run_table("rate_limit", &cases);
}
