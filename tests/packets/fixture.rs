//! The golden-case runner every stage module shares. A fixture is
//! {description, input packet, hook(s), policy, expected verdict, expected
//! output, expected counter deltas}: the policy text of a chain list, a
//! loaded chain list and its counters (`Rig`), the expectations (`Out`,
//! `Exp`, `Case`), the check of one case against its expectation and an
//! independent decoder (`check_case`), the table runner (`run_table`), and
//! the packets most fixtures start from.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Instant;

use emptcp::policy::Policy;
use emptcp::testrun::{Harness, RunOut};
use emptcp::Hook;

use crate::pktlib::{self, build::*, decode, opts::*};

// ---------------------------------------------------------------------------
// hooks, verdicts, root
// ---------------------------------------------------------------------------

/// The two program families every case runs on.
pub const FAMILIES: [Hook; 2] = [Hook::Xdp, Hook::TcEgress];

pub fn pass_verdict(h: Hook) -> i32 {
    match h {
        Hook::Xdp => 2, // XDP_PASS
        _ => -1,        // TC_ACT_UNSPEC
    }
}

pub fn drop_verdict(h: Hook) -> i32 {
    match h {
        Hook::Xdp => 1, // XDP_DROP
        _ => 2,         // TC_ACT_SHOT
    }
}

/// False (after a visible note) when the tests cannot load BPF programs.
pub fn root(test: &str) -> bool {
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
pub type Stage = String;

pub fn pt(types: &[&str]) -> Stage {
    format!("kind = \"packet_type\"\ntypes = {types:?}")
}

pub fn ipp(src: Option<IpAddr>, dst: Option<IpAddr>, bidir: bool) -> Stage {
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

pub fn or(s: Stage) -> Stage {
    format!("{s}\nop = \"or\"")
}

pub fn not(s: Stage) -> Stage {
    format!("{s}\nnot = true")
}

/// An always-false selector (an address no fixture uses; any family).
pub fn never() -> Stage {
    ipp(Some("192.0.2.255".parse().expect("addr")), None, false)
}

pub fn set_backup(backup: bool, once: bool) -> Stage {
    format!("kind = \"set_backup\"\nbackup = {backup}\nonce = {once}")
}

#[derive(Clone, Debug)]
pub struct ChainSpec {
    pub sel: Vec<Stage>,
    pub act: Vec<Stage>,
}

pub fn chain(sel: Vec<Stage>, act: Vec<Stage>) -> ChainSpec {
    ChainSpec { sel, act }
}

/// One chain: the selectors, then set_backup(backup, once=false).
pub fn one(sel: Vec<Stage>, backup: bool) -> Vec<ChainSpec> {
    vec![chain(sel, vec![set_backup(backup, false)])]
}

pub fn policy_text(hook: Hook, chains: &[ChainSpec]) -> String {
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

pub fn indent(s: &str) -> String {
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
pub enum Ctr {
    Entry(&'static str),
    St(usize, usize, &'static str),
}

pub fn entry(name: &'static str) -> Ctr {
    Ctr::Entry(name)
}

pub fn st(c: usize, s: usize, name: &'static str) -> Ctr {
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

pub struct Rig {
    pub hook: Hook,
    pub h: Harness,
    pub text: String,
}

impl Rig {
    pub fn new(hook: Hook, chains: &[ChainSpec]) -> Rig {
        let text = policy_text(hook, chains);
        let p = Policy::parse(&text, "fixture.toml")
            .unwrap_or_else(|e| panic!("fixture policy does not parse: {e}\n{text}"));
        let h = Harness::new(hook, &p.chains)
            .unwrap_or_else(|e| panic!("Harness::new({hook}) failed: {e:#}\npolicy:\n{text}"));
        Rig { hook, h, text }
    }

    pub fn run(&self, pkt: &[u8]) -> RunOut {
        self.h.run(pkt).unwrap_or_else(|e| {
            panic!(
                "BPF_PROG_TEST_RUN failed on {}: {e:#}\n{}",
                self.hook,
                pktlib::diff::hexdump(pkt, None)
            )
        })
    }

    pub fn get(&self, c: Ctr) -> u64 {
        match c {
            Ctr::Entry(n) => self.h.counter(None, n),
            Ctr::St(ci, si, n) => self.h.counter(Some((ci, si)), n),
        }
    }

    /// Counters that must not move unless a case says so.
    pub fn quiet_counters(&self) -> Vec<Ctr> {
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
pub enum Out {
    /// Byte for byte the input.
    Same,
    /// MP_PRIO len 3 + NOP with this B bit added, everything else identical.
    Prio(bool),
    /// The TCP window field set to this value (rate_limit), checksum fixed.
    Window(u16),
}

#[derive(Clone, Debug)]
pub struct Exp {
    pub out: Out,
    pub drop: bool,
    /// Counter deltas; unlisted entry parse_err/not_tcp and stage
    /// error/tail_miss must stay, entry run must go up by one.
    pub counts: Vec<(Ctr, u64)>,
}

pub fn exp(out: Out, counts: &[(Ctr, u64)]) -> Exp {
    Exp {
        out,
        drop: false,
        counts: counts.to_vec(),
    }
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub input: Vec<u8>,
    /// The description the input was built from (rebuilds the expected
    /// output); None for hand-corrupted inputs.
    pub spec: Option<Pkt>,
    pub chains: Vec<ChainSpec>,
    pub xdp: Option<Exp>,
    pub tc: Option<Exp>,
}

impl Case {
    pub fn new(name: impl Into<String>, p: &Pkt, chains: Vec<ChainSpec>) -> Case {
        Case {
            name: name.into(),
            input: p.build(),
            spec: Some(p.clone()),
            chains,
            xdp: None,
            tc: None,
        }
    }
    pub fn raw(name: impl Into<String>, input: Vec<u8>, chains: Vec<ChainSpec>) -> Case {
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
    pub fn both(mut self, e: Exp) -> Case {
        self.xdp = Some(e.clone());
        self.tc = Some(e);
        self
    }
    pub fn xdp(mut self, e: Exp) -> Case {
        self.xdp = Some(e);
        self
    }
    pub fn tc(mut self, e: Exp) -> Case {
        self.tc = Some(e);
        self
    }
    pub fn exp_for(&self, h: Hook) -> Option<&Exp> {
        match h {
            Hook::Xdp => self.xdp.as_ref(),
            _ => self.tc.as_ref(),
        }
    }
}

/// The expected output frame of a case on a hook.
pub fn expected_output(case: &Case, hook: Hook, out: &Out) -> Result<Vec<u8>, String> {
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
pub fn window_raw(input: &[u8], w: u16) -> Option<Vec<u8>> {
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
pub fn expected_window(case: &Case, w: u16) -> Result<Vec<u8>, String> {
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
pub fn prio_visible(input: &[u8], got: &[u8], backup: bool) -> Result<(), String> {
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
pub fn check_case(rig: &Rig, case: &Case, e: &Exp) -> Result<(), String> {
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
pub fn run_table(group: &str, cases: &[Case]) {
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

pub fn ts() -> Vec<u8> {
    nop_nop_ts(0x0102_0304, 0x0506_0708)
}

/// Linux's pure ACK on an established subflow: NOP NOP TS + DSS data ACK
/// (TCP header 40 bytes).
pub fn dss_ack_pkt(src: IpAddr, dst: IpAddr) -> Pkt {
    Pkt::ip(src, dst).opts(cat(&[&ts(), &dss_ack(0x0a0b_0c0d)]))
}

pub fn v4(a: std::net::Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

pub fn v6(a: std::net::Ipv6Addr) -> IpAddr {
    IpAddr::V6(a)
}

/// A data segment: NOP NOP TS + DSS (ack + mapping) + `n` payload bytes
/// (TCP header 52 bytes).
pub fn data_pkt(src: IpAddr, dst: IpAddr, n: usize) -> Pkt {
    Pkt::ip(src, dst)
        .flags(ACK | PSH)
        .opts(padded(&[&ts(), &dss_map(0x0a0b_0c0d, 0x1000, n as u16)]))
        .payload(n)
}

pub fn sel_hit(c: usize, s: usize) -> (Ctr, u64) {
    (st(c, s, "hit"), 1)
}
