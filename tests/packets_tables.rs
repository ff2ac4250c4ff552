//! Packet tests of named sets and maps: the `lookup` selector (`src`,
//! `dst`, `ip_pair`, `subflow`, `port` with `set = "NAME"`) for every key
//! type, and the actors whose parameter comes from a map (`set_mark`,
//! `redirect`, `set_backup`, `rate_limit` with `{ map = …, key = … }`),
//! through BPF_PROG_TEST_RUN (emptcp::testrun::Harness::with_tables) on XDP
//! and TC.
//!
//! A fixture group is {sets and maps (TOML, parsed as a policy file is),
//! one chain, cases}; a case is {description, input packet, expected
//! verdict, expected output, expected counter deltas}. IPv4 and IPv6
//! elements sit in the same table. Expected outputs are "unchanged" (byte
//! for byte) or "MP_PRIO added" (rebuilt from the description by
//! etherparse, cross-checked against an RFC 1624 transform of the input,
//! and walked by our own option decoder). A failure prints a field diff and
//! a hexdump of the input and the output.
//!
//! Live updates: elements added, deleted, or flushed between two runs
//! change the verdict of the next packet, with the stages untouched.
//!
//! Needs root (BPF_PROG_TEST_RUN, bpffs); otherwise every test prints
//! "SKIPPED: needs root" and returns.

#[allow(dead_code)] // a shared test library: not every test binary uses all of it
mod pktlib;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Instant;

use emptcp::policy::Policy;
use emptcp::testrun::{Harness, RunOut};
use emptcp::Hook;
use libbpf_rs::MapCore;

use pktlib::build::*;
use pktlib::decode;
use pktlib::opts::*;

// ---------------------------------------------------------------------------
// hooks, verdicts, root
// ---------------------------------------------------------------------------

/// XDP and one TC hook; groups may add tc-ingress.
const FAMILIES: [Hook; 2] = [Hook::Xdp, Hook::TcEgress];
const ALL_HOOKS: [Hook; 3] = [Hook::Xdp, Hook::TcEgress, Hook::TcIngress];
const TC_HOOKS: [Hook; 2] = [Hook::TcEgress, Hook::TcIngress];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Drop,
    Redirect,
}

fn verdict_code(h: Hook, v: Verdict) -> i32 {
    match (h, v) {
        (Hook::Xdp, Verdict::Pass) => 2,     // XDP_PASS
        (Hook::Xdp, Verdict::Drop) => 1,     // XDP_DROP
        (Hook::Xdp, Verdict::Redirect) => 4, // XDP_REDIRECT
        (_, Verdict::Pass) => -1,            // TC_ACT_UNSPEC
        (_, Verdict::Drop) => 2,             // TC_ACT_SHOT
        (_, Verdict::Redirect) => 7,         // TC_ACT_REDIRECT
    }
}

/// False (after a visible note) when the tests cannot load BPF programs.
fn root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
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
// addresses and packets
// ---------------------------------------------------------------------------

fn v4(a: std::net::Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn v6(a: std::net::Ipv6Addr) -> IpAddr {
    IpAddr::V6(a)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The (A, B, C, D) addresses of one family (pktlib's constants).
fn quad(fam: &str) -> [IpAddr; 4] {
    match fam {
        "v4" => [v4(V4_A), v4(V4_B), v4(V4_C), v4(V4_D)],
        _ => [v6(V6_A), v6(V6_B), v6(V6_C), v6(V6_D)],
    }
}

const FAMS: [&str; 2] = ["v4", "v6"];

/// Linux's pure ACK on an established subflow: NOP NOP TS + DSS data ACK.
fn ack_pkt(src: IpAddr, dst: IpAddr) -> Pkt {
    Pkt::ip(src, dst).opts(cat(&[
        &nop_nop_ts(0x0102_0304, 0x0506_0708),
        &dss_ack(0x0a0b_0c0d),
    ]))
}

/// A data segment of `n` bytes (NOP NOP TS + DSS mapping).
fn data_pkt(src: IpAddr, dst: IpAddr, seq: u32, n: usize) -> Pkt {
    Pkt::ip(src, dst)
        .flags(ACK | PSH)
        .seq(seq)
        .opts(padded(&[
            &nop_nop_ts(0x0102_0304, 0x0506_0708),
            &dss_map(0x0a0b_0c0d, seq, n as u16),
        ]))
        .payload(n)
}

// ---------------------------------------------------------------------------
// policies
// ---------------------------------------------------------------------------

/// A selector or actor table body (TOML keys, one per line).
type Stage = String;

fn in_set(kind: &str, set: &str, extra: &str) -> Stage {
    let mut s = format!("kind = \"{kind}\"\nset = \"{set}\"");
    if !extra.is_empty() {
        let _ = write!(s, "\n{extra}");
    }
    s
}

fn drop_() -> Stage {
    "kind = \"drop\"".into()
}

/// `[[set]]` in TOML.
fn set_toml(name: &str, ty: &str, elements: &[&str]) -> String {
    format!("[[set]]\nname = \"{name}\"\ntype = \"{ty}\"\nelements = {elements:?}\n")
}

/// `[[map]]` in TOML; elements as (key, value) pairs, values TOML-quoted
/// as written.
fn map_toml(name: &str, key: &str, value: &str, elements: &[(&str, &str)]) -> String {
    let mut t = format!("[[map]]\nname = \"{name}\"\nkey = \"{key}\"\nvalue = \"{value}\"\n");
    t += "elements = { ";
    t += &elements
        .iter()
        .map(|(k, v)| format!("{k:?} = {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    t += " }\n";
    t
}

fn policy_text(hook: Hook, tables: &str, sel: &[Stage], act: &[Stage]) -> String {
    let mut t = String::from(tables);
    let _ = write!(
        t,
        "[[chain]]\nname = \"c0\"\ndev = \"lo\"\nhook = \"{hook}\"\n"
    );
    for s in sel {
        let _ = write!(t, "  [[chain.select]]\n{}\n", indent(s));
    }
    for a in act {
        let _ = write!(t, "  [[chain.act]]\n{}\n", indent(a));
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
// a loaded chain with its tables, and its counters
// ---------------------------------------------------------------------------

/// A counter: the entry's own, or stage `s` of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctr {
    Entry(&'static str),
    St(usize, &'static str),
}

fn st(s: usize, name: &'static str) -> (Ctr, u64) {
    (Ctr::St(s, name), 1)
}

impl std::fmt::Display for Ctr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ctr::Entry(n) => write!(f, "entry.{n}"),
            Ctr::St(s, n) => write!(f, "stage{s}.{n}"),
        }
    }
}

struct Rig {
    hook: Hook,
    h: Harness,
    text: String,
}

impl Rig {
    fn new(hook: Hook, tables: &str, sel: &[Stage], act: &[Stage]) -> Rig {
        let text = policy_text(hook, tables, sel, act);
        let p = Policy::parse(&text, "fixture.toml")
            .unwrap_or_else(|e| panic!("fixture policy does not parse: {e}\n{text}"));
        let defs: Vec<_> = p
            .tables
            .iter()
            .map(|t| (t.def.clone(), t.elements.clone()))
            .collect();
        let h = Harness::with_tables(hook, &p.chains, &defs).unwrap_or_else(|e| {
            panic!("Harness::with_tables({hook}) failed: {e:#}\npolicy:\n{text}")
        });
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
            Ctr::St(s, n) => self.h.counter(Some((0, s)), n),
        }
    }

    /// Every counter a case may move; unlisted ones must stay.
    fn watched(&self) -> Vec<Ctr> {
        let mut v = vec![
            Ctr::Entry("run"),
            Ctr::Entry("parse_err"),
            Ctr::Entry("not_tcp"),
        ];
        for s in 0..self.h.slots[0].len() {
            for n in [
                "hit",
                "parse_err",
                "no_key",
                "error",
                "tail_miss",
                "no_room",
            ] {
                v.push(Ctr::St(s, n));
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
}

#[derive(Clone, Debug)]
struct Exp {
    verdict: Verdict,
    out: Out,
    /// Counter deltas; every other watched counter stays, except entry.run
    /// (+1) and stage run counters (not watched).
    counts: Vec<(Ctr, u64)>,
    /// TC: the skb mark after the run (it starts at MARK_IN).
    mark: Option<u32>,
}

/// The skb mark every TC run starts with.
const MARK_IN: u32 = 0x0bad_0000;

fn pass(counts: &[(Ctr, u64)]) -> Exp {
    Exp {
        verdict: Verdict::Pass,
        out: Out::Same,
        counts: counts.to_vec(),
        mark: None,
    }
}

/// The selector (stage 0) matched and the drop actor (stage 1) dropped.
fn selected() -> Exp {
    Exp {
        verdict: Verdict::Drop,
        out: Out::Same,
        counts: vec![st(0, "hit"), st(1, "hit")],
        mark: None,
    }
}

/// Not selected: passed untouched, nothing counted.
fn untouched() -> Exp {
    pass(&[])
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    input: Vec<u8>,
    /// The description the input was built from (rebuilds the expected
    /// output); None for hand-corrupted inputs.
    spec: Option<Pkt>,
    exp: Exp,
}

fn case(name: impl Into<String>, p: &Pkt, exp: Exp) -> Case {
    Case {
        name: name.into(),
        input: p.build(),
        spec: Some(p.clone()),
        exp,
    }
}

fn raw_case(name: impl Into<String>, input: Vec<u8>, exp: Exp) -> Case {
    Case {
        name: name.into(),
        input,
        spec: None,
        exp,
    }
}

/// A fixture group: tables and one chain, its cases, the hooks it runs on.
struct Group {
    name: &'static str,
    tables: String,
    sel: Vec<Stage>,
    act: Vec<Stage>,
    hooks: &'static [Hook],
    cases: Vec<Case>,
}

/// The expected output frame of a case on a hook.
fn expected_output(case: &Case, hook: Hook, out: Out) -> Result<Vec<u8>, String> {
    let b = match out {
        Out::Same => return Ok(case.input.clone()),
        Out::Prio(b) => b,
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

/// A receiver's option walk of the output finds exactly one MP_PRIO of
/// length 3 with the expected B bit, decoded independently of the C code.
fn prio_visible(got: &[u8], backup: bool) -> Result<(), String> {
    let g = decode::decode(got)
        .tcp
        .ok_or("no TCP header in the output")?;
    let prios: Vec<&decode::Opt> = g
        .opts
        .iter()
        .filter(|o| o.mptcp_subtype() == Some(MP_PRIO))
        .collect();
    if prios.len() != 1 || prios[0].bytes.len() != 3 {
        return Err(format!(
            "a receiver's option walk finds {} MP_PRIO option(s) {:02x?}, expected one of length 3",
            prios.len(),
            prios.iter().map(|o| &o.bytes).collect::<Vec<_>>()
        ));
    }
    let b = prios[0].bytes[2] & 0x01 != 0;
    if b != backup || prios[0].bytes[2] >> 4 != MP_PRIO {
        return Err(format!(
            "MP_PRIO {:02x?}: backup bit {b}, expected {backup}",
            prios[0].bytes
        ));
    }
    if let Some(e) = &g.opt_err {
        return Err(format!("the output's options do not parse: {e}"));
    }
    Ok(())
}

/// Runs one case on a rig; returns a report on failure.
fn check_case(rig: &Rig, case: &Case) -> Result<(), String> {
    let e = &case.exp;
    let watch = rig.watched();
    let before: Vec<u64> = watch.iter().map(|c| rig.get(*c)).collect();
    let (o, mark) = if rig.hook == Hook::Xdp {
        (rig.run(&case.input), None)
    } else {
        let (o, m) = rig.h.run_mark(&case.input, MARK_IN).unwrap_or_else(|err| {
            panic!(
                "BPF_PROG_TEST_RUN failed on {}: {err:#}\n{}",
                rig.hook,
                pktlib::diff::hexdump(&case.input, None)
            )
        });
        (o, Some(m))
    };
    let after: Vec<u64> = watch.iter().map(|c| rig.get(*c)).collect();

    let mut errs = Vec::new();
    let want_ret = verdict_code(rig.hook, e.verdict);
    if o.ret != want_ret {
        errs.push(format!(
            "verdict: expected {want_ret} ({:?}), got {}",
            e.verdict, o.ret
        ));
    }
    match expected_output(case, rig.hook, e.out) {
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
            if let Out::Prio(b) = e.out {
                if let Err(r) = pktlib::consistent("output is not consistent", &case.input, &o.data)
                {
                    errs.push(r);
                }
                if let Err(m) = prio_visible(&o.data, b) {
                    errs.push(m);
                }
            }
        }
    }
    if let Some(got) = mark {
        let want = e.mark.unwrap_or(MARK_IN);
        if got != want {
            errs.push(format!("skb mark: expected {want:#x}, got {got:#x}"));
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
    for (c, _) in &e.counts {
        if !watch.contains(c) {
            errs.push(format!("test bug: counter {c} is not watched"));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "case \"{}\" on {}: {} problem(s)\n{}\ninput: {}\npolicy:\n{}",
            case.name,
            rig.hook,
            errs.len(),
            errs.join("\n"),
            decode::summary(&case.input),
            rig.text
        ))
    }
}

/// Runs fixture groups, one rig per group and hook. Panics with every
/// failing case's report.
fn run_groups(test: &str, groups: &[Group]) {
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let mut runs = 0;
    for g in groups {
        for &hook in g.hooks {
            let rig = Rig::new(hook, &g.tables, &g.sel, &g.act);
            for case in &g.cases {
                runs += 1;
                if let Err(r) = check_case(&rig, case) {
                    failures.push(format!("[{}] {r}", g.name));
                }
            }
        }
    }
    eprintln!(
        "{test}: {} groups, {runs} runs, {} failed ({:.2?})",
        groups.len(),
        failures.len(),
        t0.elapsed()
    );
    if !failures.is_empty() {
        panic!(
            "{test}: {} of {runs} runs failed:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}

/// `sel` + drop, the case packets selected or not per `hit`.
fn sel_group(
    name: &'static str,
    tables: String,
    sel: Stage,
    hooks: &'static [Hook],
    cases: Vec<(String, Pkt, bool)>,
) -> Group {
    Group {
        name,
        tables,
        sel: vec![sel],
        act: vec![drop_()],
        hooks,
        cases: cases
            .into_iter()
            .map(|(n, p, hit)| case(n, &p, if hit { selected() } else { untouched() }))
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// tests: the set selector, every key type
// ---------------------------------------------------------------------------

/// `src` and `dst` with an addr set holding an IPv4 and an IPv6 address;
/// `not = true`.
#[test]
fn addr_sets_select_by_source_and_destination() {
    if !root("addr_sets_select_by_source_and_destination") {
        return;
    }
    let tables = set_toml("hosts", "addr", &["10.1.0.1", "fd00:1::1"]);
    let mut src = Vec::new();
    let mut dst = Vec::new();
    let mut not = Vec::new();
    for fam in FAMS {
        let [a, b, c, d] = quad(fam);
        for (what, p, s_hit, d_hit) in [
            ("A -> B", ack_pkt(a, b), true, false),
            ("B -> A", ack_pkt(b, a), false, true),
            ("C -> D", ack_pkt(c, d), false, false),
            ("A -> B, data", data_pkt(a, b, 1, 100), true, false),
        ] {
            src.push((format!("{fam} {what}"), p.clone(), s_hit));
            dst.push((format!("{fam} {what}"), p.clone(), d_hit));
            not.push((format!("{fam} {what}"), p, !s_hit));
        }
    }
    // an IPv6 address that shares the low 32 bits of an IPv4 element
    let lookalike = ack_pkt(ip("fd00::a01:1"), v6(V6_B));
    src.push((
        "v6 fd00::a01:1 (not 10.1.0.1)".into(),
        lookalike.clone(),
        false,
    ));
    not.push(("v6 fd00::a01:1 (not 10.1.0.1)".into(), lookalike, true));
    run_groups(
        "addr_sets_select_by_source_and_destination",
        &[
            sel_group(
                "src",
                tables.clone(),
                in_set("src", "hosts", ""),
                &ALL_HOOKS,
                src,
            ),
            sel_group(
                "dst",
                tables.clone(),
                in_set("dst", "hosts", ""),
                &FAMILIES,
                dst,
            ),
            sel_group(
                "src, not = true",
                tables,
                in_set("src", "hosts", "not = true"),
                &FAMILIES,
                not,
            ),
        ],
    );
}

/// Addresses of `fam` whose keys hash to one slot of a set of `size`:
/// the first `n` found (walking fd00:9::x or 10.9.x.y).
fn same_slot(fam: &str, size: u32, n: usize) -> Vec<IpAddr> {
    use emptcp::tables::slots::{slot_bits, slot_of};
    let bits = slot_bits(size);
    let words = |a: IpAddr| {
        let b = match a {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        [0, 8].map(|i| u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes")))
    };
    let cand = |i: u32| match fam {
        "v4" => v4(std::net::Ipv4Addr::from(0x0a09_0000 + i)),
        _ => v6(std::net::Ipv6Addr::from(
            0xfd00_0009_u128 << 96 | u128::from(i),
        )),
    };
    let want = slot_of(&words(cand(1)), bits);
    let found: Vec<IpAddr> = (1..10_000)
        .map(cand)
        .filter(|&a| slot_of(&words(a), bits) == want)
        .take(n)
        .collect();
    assert_eq!(found.len(), n, "{fam}: {n} addresses on one slot");
    found
}

/// A walk runs a set's lookup (and a mark map's) inline at its first
/// positions, on the key's own slot, and calls the full lookup when that
/// slot does not tell: a key stored one slot further (its slot held
/// another first), a key not in the set whose slot holds another, and a
/// lookup late in a long walk.
#[test]
fn set_lookups_past_their_own_slot_and_late_in_the_walk() {
    if !root("set_lookups_past_their_own_slot_and_late_in_the_walk") {
        return;
    }
    let mut elements = Vec::new();
    let mut marks = Vec::new();
    let mut cases = Vec::new();
    let mut mark_cases = Vec::new();
    for fam in FAMS {
        let [a, b, c]: [IpAddr; 3] = same_slot(fam, 4, 3).try_into().expect("three");
        elements.extend([a.to_string(), b.to_string()]);
        marks.extend([(a.to_string(), "11"), (b.to_string(), "12")]);
        let dst = quad(fam)[1];
        for (what, src, exp) in [
            ("first", a, mark_exp(11)),
            ("second", b, mark_exp(12)),
            ("not in", c, no_key(0)),
        ] {
            mark_cases.push(case(
                format!("{fam} {what} on one slot"),
                &ack_pkt(src, dst),
                exp,
            ));
        }
        for (what, src, hit) in [
            ("first", a, true),
            ("second", b, true),
            ("not in", c, false),
        ] {
            cases.push((format!("{fam} {what} on one slot"), ack_pkt(src, dst), hit));
        }
        cases.push((
            format!("{fam} elsewhere"),
            ack_pkt(quad(fam)[0], dst),
            false,
        ));
    }
    let marks: Vec<(&str, &str)> = marks.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let by_map = Group {
        name: "set_mark from a map at position 0",
        tables: format!("{}size = 4\n", map_toml("crowdm", "addr", "u32", &marks)),
        sel: vec![],
        act: vec!["kind = \"set_mark\"\nmark = { map = \"crowdm\", key = \"src\" }".into()],
        hooks: &TC_HOOKS,
        cases: mark_cases,
    };
    let elements: Vec<&str> = elements.iter().map(String::as_str).collect();
    let tables = format!("{}size = 4\n", set_toml("crowd", "addr", &elements));
    let early = sel_group(
        "lookup at position 0",
        tables.clone(),
        in_set("src", "crowd", ""),
        &FAMILIES,
        cases.clone(),
    );
    // nine `port` selectors that hit every case's packet, then the lookup
    let late = 9;
    let mut sel: Vec<Stage> = (0..late)
        .map(|_| "kind = \"port\"\ndport = 5201".into())
        .collect();
    sel.push(in_set("src", "crowd", ""));
    let hits: Vec<(Ctr, u64)> = (0..late).map(|s| st(s, "hit")).collect();
    let late_group = Group {
        name: "lookup at position 9",
        tables,
        sel,
        act: vec![drop_()],
        hooks: &FAMILIES,
        cases: cases
            .into_iter()
            .map(|(n, p, hit)| {
                let mut counts = hits.clone();
                let verdict = if hit {
                    counts.extend([st(late, "hit"), st(late + 1, "hit")]);
                    Verdict::Drop
                } else {
                    Verdict::Pass
                };
                let exp = Exp {
                    verdict,
                    out: Out::Same,
                    counts,
                    mark: None,
                };
                case(n, &p, exp)
            })
            .collect(),
    };
    run_groups(
        "set_lookups_past_their_own_slot_and_late_in_the_walk",
        &[early, late_group, by_map],
    );
}

/// One chain looking up sets of four sizes (2^4, 2^12, 2^19 and 2^6
/// slots: each size is an outer map of its own, bound to the walk by
/// emptcp) at the walk's first positions (inline), after 9 `port`
/// selectors (each lookup its stage's call) and after 13 (the loop walk):
/// each set answers for its own elements.
#[test]
fn sets_of_several_sizes_in_one_walk() {
    if !root("sets_of_several_sizes_in_one_walk") {
        return;
    }
    let (q4, q6) = (quad("v4"), quad("v6"));
    let (s0, s1) = (
        [q4[0].to_string(), q6[0].to_string()],
        [q4[1].to_string(), q6[1].to_string()],
    );
    let pairs = [
        format!("{} . {}", q4[0], q4[1]),
        format!("{} . {}", q6[0], q6[1]),
    ];
    let set = |name: &str, ty: &str, size: u32, e: &[String]| {
        let e: Vec<&str> = e.iter().map(String::as_str).collect();
        format!("{}size = {size}\n", set_toml(name, ty, &e))
    };
    let tables = [
        set("small", "addr", 2, &s0),
        set("mid", "addr", 1000, &s1),
        set("big", "addr", 100_000, &s0),
        set("pairs", "pair", 16, &pairs),
        set("huge", "addr", 300_000, &s1),
    ]
    .concat();
    let five = [
        in_set("src", "small", ""),
        in_set("dst", "mid", ""),
        in_set("src", "big", ""),
        in_set("ip_pair", "pairs", ""),
        in_set("dst", "huge", ""),
    ];
    // a program binds four sizes (abi.h EMPTCP_TAB_BINDS)
    let four = &five[..4];
    let group = |name: &'static str, ports: usize, lookups: &[Stage]| {
        let mut sel: Vec<Stage> = (0..ports)
            .map(|_| "kind = \"port\"\ndport = 5201".into())
            .collect();
        sel.extend(lookups.iter().cloned());
        let hits = |n: usize| -> Vec<(Ctr, u64)> { (0..ports + n).map(|s| st(s, "hit")).collect() };
        let mut cases = Vec::new();
        for fam in FAMS {
            let [a, b, c, d] = quad(fam);
            let mut all = hits(lookups.len() + 1);
            all.truncate(ports + lookups.len());
            all.push(st(ports + lookups.len(), "hit"));
            cases.push(case(
                format!("{fam} in every set"),
                &ack_pkt(a, b),
                Exp {
                    verdict: Verdict::Drop,
                    out: Out::Same,
                    counts: all,
                    mark: None,
                },
            ));
            // the source in no set: the first lookup misses
            cases.push(case(
                format!("{fam} source in none"),
                &ack_pkt(c, b),
                pass(&hits(0)),
            ));
            // the destination not in `mid`: the second misses
            cases.push(case(
                format!("{fam} destination in none"),
                &ack_pkt(a, d),
                pass(&hits(1)),
            ));
        }
        Group {
            name,
            tables: tables.clone(),
            sel,
            act: vec![drop_()],
            hooks: &FAMILIES,
            cases,
        }
    };
    run_groups(
        "sets_of_several_sizes_in_one_walk",
        &[
            group("lookups at positions 0..3", 0, four),
            group("lookups at positions 9..12", 9, four),
            group("lookups at positions 13..16 (the loop walk)", 13, four),
            group("five sizes: a program per stage", 0, &five),
        ],
    );
    // four sizes walk; five are more than a walk binds, and the chain
    // runs as a program per stage, each binding its one size
    for (lookups, walks) in [(four, true), (&five[..], false)] {
        let rig = Rig::new(Hook::TcEgress, &tables, lookups, &[drop_()]);
        assert_eq!(
            rig.h.walk_prog().is_some(),
            walks,
            "{} lookups",
            lookups.len()
        );
    }
}

/// `src` and `dst` with a prefix set (LPM trie): a /16 and a /24 inside
/// it, and IPv6 /32 and /64 inside it, both present.
#[test]
fn prefix_sets_select_by_longest_match() {
    if !root("prefix_sets_select_by_longest_match") {
        return;
    }
    let tables = set_toml(
        "nets",
        "prefix",
        &[
            "10.1.0.0/16",
            "10.1.2.0/24",
            "fd00:1::/32",
            "fd00:1:0:5::/64",
        ],
    );
    let other = |fam: &str| match fam {
        "v4" => ip("192.0.2.9"),
        _ => ip("2001:db8::9"),
    };
    let mut src = Vec::new();
    let mut dst = Vec::new();
    for (what, a, hit) in [
        ("v4 in the /24", ip("10.1.2.3"), true),
        ("v4 in the /16 only", ip("10.1.200.3"), true),
        ("v4 next to the /16", ip("10.2.0.1"), false),
        ("v4 10.0.255.255", ip("10.0.255.255"), false),
        ("v6 in the /64", ip("fd00:1:0:5::7"), true),
        ("v6 in the /32 only", ip("fd00:1:ffff::7"), true),
        ("v6 next to the /32", ip("fd00:2::1"), false),
        // keys are IPv4-mapped IPv6 (tables.h): an IPv6 packet from the
        // mapped form of an IPv4 address has that IPv4 address's key
        (
            "v6 ::ffff:10.1.2.3 (mapped: in the /24)",
            ip("::ffff:10.1.2.3"),
            true,
        ),
    ] {
        let fam = if a.is_ipv4() { "v4" } else { "v6" };
        src.push((format!("{what} as source"), ack_pkt(a, other(fam)), hit));
        src.push((
            format!("{what} as destination"),
            ack_pkt(other(fam), a),
            false,
        ));
        dst.push((
            format!("{what} as destination"),
            ack_pkt(other(fam), a),
            hit,
        ));
        dst.push((format!("{what} as source"), ack_pkt(a, other(fam)), false));
    }
    run_groups(
        "prefix_sets_select_by_longest_match",
        &[
            sel_group(
                "src prefix",
                tables.clone(),
                in_set("src", "nets", ""),
                &FAMILIES,
                src,
            ),
            sel_group(
                "dst prefix",
                tables,
                in_set("dst", "nets", ""),
                &ALL_HOOKS,
                dst,
            ),
            // an IPv6 prefix matches IPv6 packets only, as the literal
            // `src` does (each family has its own trie)
            sel_group(
                "src IPv6 /0 and IPv4 /0",
                set_toml("all6", "prefix", &["::/0"]) + &set_toml("all4", "prefix", &["0.0.0.0/0"]),
                in_set("src", "all6", ""),
                &FAMILIES,
                vec![
                    (
                        "v4 packet, ::/0".into(),
                        ack_pkt(ip("10.9.9.9"), other("v4")),
                        false,
                    ),
                    (
                        "v6 packet, ::/0".into(),
                        ack_pkt(ip("2001:db8::1"), other("v6")),
                        true,
                    ),
                ],
            ),
            sel_group(
                "src IPv4 /0",
                set_toml("all4", "prefix", &["0.0.0.0/0"]),
                in_set("src", "all4", ""),
                &FAMILIES,
                vec![
                    (
                        "v4 packet, 0.0.0.0/0".into(),
                        ack_pkt(ip("10.9.9.9"), other("v4")),
                        true,
                    ),
                    (
                        "v6 packet, 0.0.0.0/0".into(),
                        ack_pkt(ip("2001:db8::1"), other("v6")),
                        false,
                    ),
                ],
            ),
        ],
    );
}

/// A prefix table's IPv4 index head (abi.h struct emptcp_tab_pfx_head)
/// for lengths `lens`, longest first: each + 1 in a byte.
fn lens_head(lens: &[u8]) -> u64 {
    lens.iter()
        .enumerate()
        .fold(0, |w, (i, l)| w | u64::from(l + 1) << (8 * i))
}

/// The head that sends lookups to the IPv4 trie.
const TRIE_HEAD: u64 = 0xff;

/// IPv4 prefix sets changed live through the index's states (abi.h
/// struct emptcp_tab_pfx_head): lengths probed one by one (2, 1, 4), past
/// EMPTCP_TAB_PFX_LENS lengths the trie (5), back to the index when a
/// length goes, /0 in and out, no IPv4 prefix at all. Each state is read
/// from the index's head, and at each the selector answers for every
/// length at the walk's first position (inline: each length's own slot)
/// and after 9 `port` selectors (the stage's full lookup: the trie).
#[test]
fn prefix_sets_through_the_index_and_the_trie() {
    if !root("prefix_sets_through_the_index_and_the_trie") {
        return;
    }
    let t0 = Instant::now();
    let tables = format!(
        "{}size = 64\n",
        set_toml(
            "pfx",
            "prefix",
            &["10.0.0.0/8", "10.1.0.0/16", "fd00:1::/48"]
        )
    );
    let late: Vec<Stage> = (0..9)
        .map(|_| "kind = \"port\"\ndport = 5201".into())
        .chain([in_set("src", "pfx", "")])
        .collect();
    // the sources each step sends (its prefixes decide which hit)
    let probes = [
        "10.1.2.3",
        "10.2.0.1",
        "11.0.0.1",
        "10.9.9.7",
        "10.8.8.8",
        "10.8.8.9",
        "10.7.7.200",
        "10.7.7.5",
        "10.6.15.1",
        "10.6.16.1",
        "fd00:1::5",
    ];
    // (step, adds, dels, head, the probes that hit)
    let steps: [(&str, &[&str], &[&str], u64, &[&str]); 8] = [
        (
            "/16 and /8",
            &[],
            &[],
            lens_head(&[16, 8]),
            &[
                "10.1.2.3",
                "10.2.0.1",
                "10.9.9.7",
                "10.8.8.8",
                "10.8.8.9",
                "10.7.7.200",
                "10.7.7.5",
                "10.6.15.1",
                "10.6.16.1",
                "fd00:1::5",
            ],
        ),
        (
            "/8 deleted",
            &[],
            &["10.0.0.0/8"],
            lens_head(&[16]),
            &["10.1.2.3", "fd00:1::5"],
        ),
        (
            "/32, /25, /24, /20 added: five lengths",
            &["10.9.9.0/24", "10.8.8.8/32", "10.7.7.128/25", "10.6.0.0/20"],
            &[],
            TRIE_HEAD,
            &[
                "10.1.2.3",
                "10.9.9.7",
                "10.8.8.8",
                "10.7.7.200",
                "10.6.15.1",
                "fd00:1::5",
            ],
        ),
        (
            "/16 deleted: four lengths",
            &[],
            &["10.1.0.0/16"],
            lens_head(&[32, 25, 24, 20]),
            &[
                "10.9.9.7",
                "10.8.8.8",
                "10.7.7.200",
                "10.6.15.1",
                "fd00:1::5",
            ],
        ),
        (
            "/0 added: five lengths",
            &["0.0.0.0/0"],
            &[],
            TRIE_HEAD,
            &probes,
        ),
        (
            "/32 and /25 deleted: /0 with three",
            &[],
            &["10.8.8.8/32", "10.7.7.128/25"],
            lens_head(&[24, 20, 0]),
            &probes,
        ),
        (
            "/0 deleted",
            &[],
            &["0.0.0.0/0"],
            lens_head(&[24, 20]),
            &["10.9.9.7", "10.6.15.1", "fd00:1::5"],
        ),
        (
            "no IPv4 prefix",
            &[],
            &["10.9.9.0/24", "10.6.0.0/20"],
            0,
            &["fd00:1::5"],
        ),
    ];
    for hook in FAMILIES {
        for (pos, sel) in [
            ("position 0", vec![in_set("src", "pfx", "")]),
            ("position 9", late.clone()),
        ] {
            let rig = Rig::new(hook, &tables, &sel, &[drop_()]);
            let ids = prog_ids(&rig);
            let pass_v = verdict_code(hook, Verdict::Pass);
            let drop_v = verdict_code(hook, Verdict::Drop);
            for (step, adds, dels, head, hits) in steps {
                if !adds.is_empty() {
                    rig.h.table_add("pfx", adds).expect("add");
                }
                if !dels.is_empty() {
                    rig.h.table_del("pfx", dels).expect("del");
                }
                assert_eq!(
                    rig.h.table_prefix_lens("pfx").expect("head"),
                    head,
                    "{hook} {pos}, {step}: the index's head"
                );
                for a in probes {
                    let src = ip(a);
                    let dst = quad(if src.is_ipv4() { "v4" } else { "v6" })[1];
                    let p = ack_pkt(src, dst).build();
                    let want = if hits.contains(&a) { drop_v } else { pass_v };
                    assert_eq!(
                        rig.run(&p).ret,
                        want,
                        "{hook} {pos}, {step}: source {a}\npolicy:\n{}",
                        rig.text
                    );
                }
            }
            assert_eq!(prog_ids(&rig), ids, "{hook}: no program was reloaded");
        }
    }
    eprintln!(
        "prefix_sets_through_the_index_and_the_trie: {:.2?}",
        t0.elapsed()
    );
}

/// A /24 of `base` (10.1.x.0) whose IPv4 index key (abi.h: the length,
/// the mapped address's second word) hashes to the same slot as
/// 10.1.2.0/24's in a table of `size`.
fn same_slot_24(size: u32) -> String {
    use emptcp::tables::slots::{slot_bits, slot_of};
    let bits = slot_bits(size);
    let words = |c: u8| [24u64, u64::from_ne_bytes([0, 0, 0xff, 0xff, 10, 1, c, 0])];
    let want = slot_of(&words(2), bits);
    let c = (3..=255u8)
        .find(|c| slot_of(&words(*c), bits) == want)
        .expect("a /24 on 10.1.2.0/24's slot");
    format!("10.1.{c}.0/24")
}

/// A prefix map's value is the longest match's when the longest one's key
/// is not in its own slot (another /24 took it first) and a shorter one
/// is: the walk's inline lookup leaves it to the trie; the same past the
/// index's lengths (the head says trie), at the walk's first position and
/// late.
#[test]
fn prefix_maps_take_the_longest_match_past_their_own_slot() {
    if !root("prefix_maps_take_the_longest_match_past_their_own_slot") {
        return;
    }
    let other = same_slot_24(8);
    let o_in = other.replace(".0/24", ".9");
    let mut els = vec![
        (other.as_str(), "99"),
        ("10.1.2.0/24", "24"),
        ("10.1.0.0/16", "16"),
        ("10.0.0.0/8", "8"),
    ];
    let cases = |five: bool| {
        // the mark each source gets (None: not in the map, untouched)
        let mut c = vec![
            ("10.1.2.3", Some(24)),
            (o_in.as_str(), Some(99)),
            ("10.1.200.1", Some(16)),
            ("10.200.0.1", Some(8)),
            ("11.0.0.1", None),
        ];
        if five {
            c.extend([("10.1.2.77", Some(32)), ("10.1.2.70", Some(26))]);
        }
        c
    };
    for five in [false, true] {
        if five {
            els.extend([("10.1.2.77/32", "32"), ("10.1.2.64/26", "26")]);
        }
        let tables = format!("{}size = 8\n", map_toml("pm", "prefix", "u32", &els));
        for hook in TC_HOOKS {
            for late in [false, true] {
                let n = if late { 9 } else { 0 };
                let sel: Vec<Stage> = (0..n)
                    .map(|_| "kind = \"port\"\ndport = 5201".into())
                    .collect();
                let act = "kind = \"set_mark\"\nmark = { map = \"pm\", key = \"src\" }".to_owned();
                let rig = Rig::new(hook, &tables, &sel, &[act]);
                let head = rig.h.table_prefix_lens("pm").expect("head");
                let want_head = if five {
                    TRIE_HEAD
                } else {
                    lens_head(&[24, 16, 8])
                };
                assert_eq!(head, want_head, "{hook}: the index's head");
                for (a, exp) in cases(five) {
                    let p = ack_pkt(ip(a), quad("v4")[1]).build();
                    let (o, m) = rig.h.run_mark(&p, MARK_IN).expect("test_run");
                    assert_eq!(o.data, p, "{hook} {a}: bytes untouched");
                    let want = exp.unwrap_or(MARK_IN);
                    assert_eq!(
                        m, want,
                        "{hook} late={late} five={five} {a}: mark {m:#x}, want {want:#x}\npolicy:\n{}",
                        rig.text
                    );
                }
            }
        }
    }
}

/// `ip_pair` with a pair set, with and without `bidir`.
#[test]
fn pair_sets_select_by_address_pair() {
    if !root("pair_sets_select_by_address_pair") {
        return;
    }
    let tables = set_toml(
        "pairs",
        "pair",
        &["10.1.0.1 . 10.1.0.2", "fd00:1::1 . fd00:1::2"],
    );
    let mut one = Vec::new();
    let mut bidir = Vec::new();
    for fam in FAMS {
        let [a, b, c, d] = quad(fam);
        for (what, p, fwd, both) in [
            ("A -> B", ack_pkt(a, b), true, true),
            ("B -> A", ack_pkt(b, a), false, true),
            ("A -> C", ack_pkt(a, c), false, false),
            ("C -> B", ack_pkt(c, b), false, false),
            ("C -> D", ack_pkt(c, d), false, false),
            ("A -> A", ack_pkt(a, a), false, false),
        ] {
            one.push((format!("{fam} {what}"), p.clone(), fwd));
            bidir.push((format!("{fam} {what}"), p, both));
        }
    }
    run_groups(
        "pair_sets_select_by_address_pair",
        &[
            sel_group(
                "ip_pair",
                tables.clone(),
                in_set("ip_pair", "pairs", ""),
                &ALL_HOOKS,
                one,
            ),
            sel_group(
                "ip_pair, bidir",
                tables,
                in_set("ip_pair", "pairs", "bidir = true"),
                &FAMILIES,
                bidir,
            ),
        ],
    );
}

/// `subflow` with a 4-tuple set, with and without `bidir`.
#[test]
fn subflow_sets_select_by_four_tuple() {
    if !root("subflow_sets_select_by_four_tuple") {
        return;
    }
    let tables = set_toml(
        "flows",
        "subflow",
        &[
            "10.1.0.1:40000 . 10.1.0.2:80",
            "[fd00:1::1]:40000 . [fd00:1::2]:80",
        ],
    );
    let mut one = Vec::new();
    let mut bidir = Vec::new();
    for fam in FAMS {
        let [a, b, c, _] = quad(fam);
        for (what, p, fwd, both) in [
            (
                "A:40000 -> B:80",
                ack_pkt(a, b).ports(40000, 80),
                true,
                true,
            ),
            (
                "B:80 -> A:40000",
                ack_pkt(b, a).ports(80, 40000),
                false,
                true,
            ),
            (
                "A:40001 -> B:80",
                ack_pkt(a, b).ports(40001, 80),
                false,
                false,
            ),
            (
                "A:40000 -> B:81",
                ack_pkt(a, b).ports(40000, 81),
                false,
                false,
            ),
            (
                "A:80 -> B:40000",
                ack_pkt(a, b).ports(80, 40000),
                false,
                false,
            ),
            (
                "C:40000 -> B:80",
                ack_pkt(c, b).ports(40000, 80),
                false,
                false,
            ),
            (
                "A:40000 -> B:80, data",
                data_pkt(a, b, 7, 300).ports(40000, 80),
                true,
                true,
            ),
        ] {
            one.push((format!("{fam} {what}"), p.clone(), fwd));
            bidir.push((format!("{fam} {what}"), p, both));
        }
    }
    run_groups(
        "subflow_sets_select_by_four_tuple",
        &[
            sel_group(
                "subflow",
                tables.clone(),
                in_set("subflow", "flows", ""),
                &FAMILIES,
                one,
            ),
            sel_group(
                "subflow, bidir",
                tables,
                in_set("subflow", "flows", "bidir = true"),
                &ALL_HOOKS,
                bidir,
            ),
        ],
    );
}

/// `port` with a port set, field dport (the default) and sport.
#[test]
fn port_sets_select_by_source_or_destination_port() {
    if !root("port_sets_select_by_source_or_destination_port") {
        return;
    }
    let tables = set_toml("web", "port", &["80", "443"]);
    let mut dport = Vec::new();
    let mut sport = Vec::new();
    for fam in FAMS {
        let [a, b, ..] = quad(fam);
        for (sp, dp, d_hit, s_hit) in [
            (40000u16, 80u16, true, false),
            (40000, 443, true, false),
            (80, 40000, false, true),
            (443, 80, true, true),
            (40000, 8080, false, false),
            (8443, 40000, false, false),
            // the bytes of 80 swapped (0x5000) are not 80
            (20480, 20480, false, false),
        ] {
            let p = ack_pkt(a, b).ports(sp, dp);
            dport.push((format!("{fam} {sp} -> {dp}"), p.clone(), d_hit));
            sport.push((format!("{fam} {sp} -> {dp}"), p, s_hit));
        }
    }
    run_groups(
        "port_sets_select_by_source_or_destination_port",
        &[
            sel_group(
                "port (dport)",
                tables.clone(),
                in_set("port", "web", ""),
                &ALL_HOOKS,
                dport.clone(),
            ),
            sel_group(
                "port, field = dport",
                tables.clone(),
                in_set("port", "web", "field = \"dport\""),
                &FAMILIES,
                dport,
            ),
            sel_group(
                "port, field = sport",
                tables,
                in_set("port", "web", "field = \"sport\""),
                &FAMILIES,
                sport,
            ),
        ],
    );
}

/// An empty set selects nothing; a set selector combines with a literal
/// one (`op = "or"`) as any selector does.
#[test]
fn empty_sets_and_combinations() {
    if !root("empty_sets_and_combinations") {
        return;
    }
    let [a, b, c, d] = quad("v4");
    let empty = set_toml("none", "addr", &[]);
    let hosts = set_toml("hosts", "addr", &["10.1.0.1", "fd00:1::1"]);
    let mut cases = Vec::new();
    for fam in FAMS {
        let [a, b, ..] = quad(fam);
        cases.push((format!("{fam} A -> B"), ack_pkt(a, b), false));
    }
    let or = Group {
        name: "src in set OR dst port 5201",
        tables: hosts,
        sel: vec![
            in_set("src", "hosts", ""),
            "kind = \"port\"\ndport = 5201\nop = \"or\"".into(),
        ],
        act: vec![drop_()],
        hooks: &FAMILIES,
        cases: vec![
            case(
                "in the set, port 5201",
                &ack_pkt(a, b),
                Exp {
                    verdict: Verdict::Drop,
                    out: Out::Same,
                    // an OR after a true result is not evaluated
                    counts: vec![st(0, "hit"), st(2, "hit")],
                    mark: None,
                },
            ),
            case(
                "not in the set, port 5201",
                &ack_pkt(c, d),
                Exp {
                    verdict: Verdict::Drop,
                    out: Out::Same,
                    counts: vec![st(1, "hit"), st(2, "hit")],
                    mark: None,
                },
            ),
            case(
                "not in the set, port 80",
                &ack_pkt(c, d).ports(40000, 80),
                untouched(),
            ),
        ],
    };
    run_groups(
        "empty_sets_and_combinations",
        &[
            sel_group(
                "empty set",
                empty,
                in_set("src", "none", ""),
                &FAMILIES,
                cases,
            ),
            or,
        ],
    );
}

// ---------------------------------------------------------------------------
// tests: actors with a parameter from a map
// ---------------------------------------------------------------------------

fn mark_exp(m: u32) -> Exp {
    Exp {
        verdict: Verdict::Pass,
        out: Out::Same,
        counts: vec![st(0, "hit")],
        mark: Some(m),
    }
}

fn no_key(stage: usize) -> Exp {
    pass(&[st(stage, "no_key")])
}

/// set_mark with u32 maps keyed by the source address, by the longest
/// source prefix, by the pair and by the destination port (TC: the skb
/// mark after the run); a key not in the map: no_key, mark and bytes
/// untouched.
#[test]
fn set_mark_takes_the_mark_from_a_map() {
    if !root("set_mark_takes_the_mark_from_a_map") {
        return;
    }
    let mk = |map: &str, key: &str, extra: &str| -> Stage {
        format!("kind = \"set_mark\"\nmark = {{ map = \"{map}\", key = \"{key}\" }}{extra}")
    };
    let mut by_src = Vec::new();
    let mut by_pfx = Vec::new();
    let mut by_pair = Vec::new();
    for (fam, m) in [("v4", 7u32), ("v6", 9)] {
        let [a, b, c, d] = quad(fam);
        by_src.push(case(format!("{fam} A -> B"), &ack_pkt(a, b), mark_exp(m)));
        by_src.push(case(format!("{fam} B -> A"), &ack_pkt(b, a), no_key(0)));
        by_src.push(case(
            format!("{fam} C -> D"),
            &data_pkt(c, d, 1, 64),
            no_key(0),
        ));
        by_pair.push(case(
            format!("{fam} A -> B"),
            &ack_pkt(a, b),
            mark_exp(m + 100),
        ));
        by_pair.push(case(format!("{fam} B -> A"), &ack_pkt(b, a), no_key(0)));
    }
    for (what, a, m) in [
        ("10.1.2.3 (in the /24)", ip("10.1.2.3"), Some(24)),
        ("10.1.3.3 (in the /16 only)", ip("10.1.3.3"), Some(16)),
        ("10.2.0.1 (in neither)", ip("10.2.0.1"), None),
        ("fd00:1:0:5::1 (in the /64)", ip("fd00:1:0:5::1"), Some(64)),
        (
            "fd00:1:0:6::1 (in the /32 only)",
            ip("fd00:1:0:6::1"),
            Some(32),
        ),
        ("fd00:2::1 (in neither)", ip("fd00:2::1"), None),
    ] {
        let peer = if a.is_ipv4() { v4(V4_B) } else { v6(V6_B) };
        by_pfx.push(case(
            what,
            &ack_pkt(a, peer),
            m.map_or_else(|| no_key(0), mark_exp),
        ));
    }
    let masked = Group {
        name: "mark from a port map, mask 0xff00",
        tables: map_toml("marks", "port", "u32", &[("5201", "\"0x1234\"")]),
        sel: vec![],
        act: vec![mk("marks", "dport", "\nmask = 0xff00")],
        hooks: &TC_HOOKS,
        cases: vec![
            case(
                "v4 dport 5201",
                &ack_pkt(v4(V4_A), v4(V4_B)),
                mark_exp((MARK_IN & !0xff00) | 0x1200),
            ),
            case(
                "v6 dport 80",
                &ack_pkt(v6(V6_A), v6(V6_B)).ports(40000, 80),
                no_key(0),
            ),
        ],
    };
    run_groups(
        "set_mark_takes_the_mark_from_a_map",
        &[
            Group {
                name: "mark from an addr map (src)",
                tables: map_toml(
                    "marks",
                    "addr",
                    "u32",
                    &[("10.1.0.1", "7"), ("fd00:1::1", "9")],
                ),
                sel: vec![],
                act: vec![mk("marks", "src", "")],
                hooks: &TC_HOOKS,
                cases: by_src,
            },
            Group {
                name: "mark from a prefix map (src, longest match)",
                tables: map_toml(
                    "marks",
                    "prefix",
                    "u32",
                    &[
                        ("10.1.0.0/16", "16"),
                        ("10.1.2.0/24", "24"),
                        ("fd00:1::/32", "32"),
                        ("fd00:1:0:5::/64", "64"),
                    ],
                ),
                sel: vec![],
                act: vec![mk("marks", "src", "")],
                hooks: &TC_HOOKS,
                cases: by_pfx,
            },
            Group {
                name: "mark from a pair map",
                tables: map_toml(
                    "marks",
                    "pair",
                    "u32",
                    &[
                        ("10.1.0.1 . 10.1.0.2", "107"),
                        ("fd00:1::1 . fd00:1::2", "109"),
                    ],
                ),
                sel: vec![],
                act: vec![mk("marks", "pair", "")],
                hooks: &[Hook::TcEgress],
                cases: by_pair,
            },
            masked,
        ],
    );
}

/// redirect with a dev map keyed by the destination: the redirect verdict
/// and the bytes unchanged; a key not in the map: no_key, the packet goes
/// on (and passes). The ifindex a test run redirects to is not visible.
#[test]
fn redirect_takes_the_device_from_a_map() {
    if !root("redirect_takes_the_device_from_a_map") {
        return;
    }
    let redirected = || Exp {
        verdict: Verdict::Redirect,
        out: Out::Same,
        counts: vec![st(0, "hit")],
        mark: None,
    };
    let mut cases = Vec::new();
    for fam in FAMS {
        let [a, b, c, d] = quad(fam);
        cases.push(case(format!("{fam} A -> B"), &ack_pkt(a, b), redirected()));
        cases.push(case(
            format!("{fam} A -> B, data"),
            &data_pkt(a, b, 1, 500),
            redirected(),
        ));
        cases.push(case(format!("{fam} B -> A"), &ack_pkt(b, a), no_key(0)));
        cases.push(case(format!("{fam} C -> D"), &ack_pkt(c, d), no_key(0)));
    }
    run_groups(
        "redirect_takes_the_device_from_a_map",
        &[Group {
            name: "dev from an addr map (dst)",
            tables: map_toml(
                "out",
                "addr",
                "dev",
                &[("10.1.0.2", "\"lo\""), ("fd00:1::2", "\"lo\"")],
            ),
            sel: vec![],
            act: vec!["kind = \"redirect\"\ndev = { map = \"out\", key = \"dst\" }".into()],
            hooks: &ALL_HOOKS,
            cases,
        }],
    );
}

/// set_backup with a bool map keyed by the subflow: true gives an MP_PRIO
/// with the backup bit, false one without it, a key not in the map leaves
/// the packet alone (no_key).
#[test]
fn set_backup_takes_the_backup_bit_from_a_map() {
    if !root("set_backup_takes_the_backup_bit_from_a_map") {
        return;
    }
    let prio = |b: bool| Exp {
        verdict: Verdict::Pass,
        out: Out::Prio(b),
        counts: vec![st(0, "hit")],
        mark: None,
    };
    let mut by_sub = Vec::new();
    let mut by_src = Vec::new();
    for fam in FAMS {
        let [a, b, c, d] = quad(fam);
        by_sub.push(case(
            format!("{fam} A -> B (true)"),
            &ack_pkt(a, b),
            prio(true),
        ));
        by_sub.push(case(
            format!("{fam} C -> D (false)"),
            &ack_pkt(c, d),
            prio(false),
        ));
        by_sub.push(case(
            format!("{fam} B -> A (missing)"),
            &ack_pkt(b, a),
            no_key(0),
        ));
        by_sub.push(case(
            format!("{fam} A:1 -> B (missing)"),
            &ack_pkt(a, b).ports(1, 5201),
            no_key(0),
        ));
        by_src.push(case(
            format!("{fam} A -> B (true)"),
            &ack_pkt(a, b),
            prio(true),
        ));
        by_src.push(case(
            format!("{fam} C -> D (false)"),
            &ack_pkt(c, d),
            prio(false),
        ));
        by_src.push(case(
            format!("{fam} B -> A (missing)"),
            &ack_pkt(b, a),
            no_key(0),
        ));
    }
    let sb = |key: &str| -> Stage {
        format!("kind = \"set_backup\"\nbackup = {{ map = \"bk\", key = \"{key}\" }}\nonce = false")
    };
    run_groups(
        "set_backup_takes_the_backup_bit_from_a_map",
        &[
            Group {
                name: "backup from a subflow map",
                tables: map_toml(
                    "bk",
                    "subflow",
                    "bool",
                    &[
                        ("10.1.0.1:40000 . 10.1.0.2:5201", "true"),
                        ("10.2.0.1:40000 . 10.2.0.2:5201", "false"),
                        ("[fd00:1::1]:40000 . [fd00:1::2]:5201", "true"),
                        ("[fd00:2::1]:40000 . [fd00:2::2]:5201", "\"false\""),
                    ],
                ),
                sel: vec![],
                act: vec![sb("subflow")],
                hooks: &ALL_HOOKS,
                cases: by_sub,
            },
            Group {
                name: "backup from an addr map (src)",
                tables: map_toml(
                    "bk",
                    "addr",
                    "bool",
                    &[
                        ("10.1.0.1", "true"),
                        ("10.2.0.1", "false"),
                        ("fd00:1::1", "\"yes\""),
                        ("fd00:2::1", "0"),
                    ],
                ),
                sel: vec![],
                act: vec![sb("src")],
                hooks: &FAMILIES,
                cases: by_src,
            },
        ],
    );
}

/// rate_limit with a rate map keyed by the source: data within the
/// 1-second burst passes untouched and leaves a per-flow record; a source
/// not in the map is not limited (no_key); past the budget new data is
/// dropped.
#[test]
fn rate_limit_takes_the_rate_from_a_map() {
    if !root("rate_limit_takes_the_rate_from_a_map") {
        return;
    }
    let tables = map_toml(
        "rates",
        "addr",
        "rate",
        &[
            ("10.1.0.1", "\"8mbit\""),
            ("fd00:1::1", "\"8mbit\""),
            ("10.2.0.1", "\"8kbit\""),
            ("fd00:2::1", "\"8kbit\""),
        ],
    );
    let act = "kind = \"rate_limit\"\nrate = { map = \"rates\", key = \"src\" }".to_owned();
    for hook in FAMILIES {
        for fam in FAMS {
            let [a, b, c, d] = quad(fam);
            let rig = Rig::new(hook, &tables, &[], std::slice::from_ref(&act));
            let what = |s: &str| format!("{hook} {fam}: {s}\npolicy:\n{}", rig.text);
            // within the burst (1 s of 1 MB/s): every segment passes
            for i in 0..4u32 {
                let p = data_pkt(a, b, 1 + i * 1000, 1000).build();
                let o = rig.run(&p);
                assert_eq!(
                    o.ret,
                    verdict_code(hook, Verdict::Pass),
                    "{}",
                    what("within the burst")
                );
                assert_eq!(o.data, p, "{}", what("rate_limit passes data untouched"));
            }
            let flows =
                libbpf_rs::MapHandle::from_pinned_path(rig.h.dir().join("emptcp_g_rl_flows"))
                    .unwrap_or_else(|e| panic!("{}", what(&format!("rl flows map: {e}"))));
            assert_eq!(
                emptcp::observe::stats::flowtab_live(&flows).unwrap().len(),
                1,
                "{}",
                what("one per-flow record")
            );
            // not in the map: not limited, counted
            let before = rig.get(Ctr::St(0, "no_key"));
            let p = data_pkt(b, a, 1, 1400).build();
            let o = rig.run(&p);
            assert_eq!(
                o.ret,
                verdict_code(hook, Verdict::Pass),
                "{}",
                what("key not in the map")
            );
            assert_eq!(o.data, p, "{}", what("key not in the map: untouched"));
            assert_eq!(
                rig.get(Ctr::St(0, "no_key")) - before,
                1,
                "{}",
                what("no_key counted")
            );
            assert_eq!(
                emptcp::observe::stats::flowtab_live(&flows).unwrap().len(),
                1,
                "{}",
                what("no record for a key not in the map")
            );
            // 1000 B/s (burst 1000 bytes): 20 segments of 500 bytes in a
            // moment cannot all pass
            let mut dropped = 0;
            for i in 0..20u32 {
                let p = data_pkt(c, d, 1 + i * 500, 500).build();
                let o = rig.run(&p);
                if o.ret == verdict_code(hook, Verdict::Drop) {
                    dropped += 1;
                } else {
                    assert_eq!(
                        o.ret,
                        verdict_code(hook, Verdict::Pass),
                        "{}",
                        what("pass or drop")
                    );
                }
            }
            assert!(
                (10..=19).contains(&dropped),
                "{}",
                what(&format!(
                    "8kbit: {dropped} of 20 segments of 500 bytes dropped"
                ))
            );
        }
    }
}

// ---------------------------------------------------------------------------
// tests: live changes, malformed packets
// ---------------------------------------------------------------------------

/// Elements added, deleted and flushed between two runs change the verdict
/// of the next packet, with no stage reloaded (the harness loads once).
#[test]
fn set_changes_reach_the_next_packet() {
    if !root("set_changes_reach_the_next_packet") {
        return;
    }
    let t0 = Instant::now();
    let tables = set_toml("live", "addr", &["10.9.9.9"]) + &set_toml("pl", "prefix", &[]);
    for hook in FAMILIES {
        for (sel, set) in [("src", "live"), ("src", "pl")] {
            let rig = Rig::new(hook, &tables, &[in_set(sel, set, "")], &[drop_()]);
            let ids = prog_ids(&rig);
            let [a4, b4, ..] = quad("v4");
            let [a6, b6, ..] = quad("v6");
            let (p4, p6) = (ack_pkt(a4, b4).build(), ack_pkt(a6, b6).build());
            let (e4, e6) = if set == "pl" {
                ("10.1.0.0/16", "fd00:1::/48")
            } else {
                ("10.1.0.1", "fd00:1::1")
            };
            let pass_v = verdict_code(hook, Verdict::Pass);
            let drop_v = verdict_code(hook, Verdict::Drop);
            let check = |step: &str, want4: i32, want6: i32| {
                for (p, want, fam) in [(&p4, want4, "v4"), (&p6, want6, "v6")] {
                    let o = rig.run(p);
                    assert_eq!(
                        o.ret, want,
                        "{hook} set {set}, {step}: {fam} verdict\npolicy:\n{}",
                        rig.text
                    );
                    assert_eq!(&o.data, p, "{hook} {step}: {fam} bytes untouched");
                }
            };
            check("before", pass_v, pass_v);
            rig.h.table_add(set, &[e4]).expect("add v4");
            check(&format!("after add {e4}"), drop_v, pass_v);
            rig.h.table_add(set, &[e6]).expect("add v6");
            check(&format!("after add {e6}"), drop_v, drop_v);
            rig.h.table_del(set, &[e4]).expect("del v4");
            check(&format!("after del {e4}"), pass_v, drop_v);
            rig.h.table_add(set, &[e4]).expect("add v4 again");
            check("after adding it again", drop_v, drop_v);
            rig.h.table_flush(set).expect("flush");
            check("after flush", pass_v, pass_v);
            rig.h.table_add(set, &[e6]).expect("add after flush");
            check("after add to the flushed set", pass_v, drop_v);
            assert_eq!(prog_ids(&rig), ids, "{hook}: no program was reloaded");
        }
    }
    eprintln!("set_changes_reach_the_next_packet: {:.2?}", t0.elapsed());
}

/// Map values changed in place reach the next packet (set_mark, TC).
#[test]
fn map_changes_reach_the_next_packet() {
    if !root("map_changes_reach_the_next_packet") {
        return;
    }
    let tables = map_toml("m", "port", "u32", &[("5201", "1")]);
    let act = "kind = \"set_mark\"\nmark = { map = \"m\", key = \"dport\" }".to_owned();
    let rig = Rig::new(Hook::TcEgress, &tables, &[], &[act]);
    let p = ack_pkt(v4(V4_A), v4(V4_B)).build();
    let mark = |step: &str| {
        let (o, m) = rig.h.run_mark(&p, 0).expect("test_run");
        assert_eq!(o.data, p, "{step}: untouched");
        m
    };
    assert_eq!(mark("start"), 1);
    rig.h.table_add("m", &["5201=0x77"]).expect("change value");
    assert_eq!(mark("value changed"), 0x77);
    rig.h.table_del("m", &["5201"]).expect("del");
    assert_eq!(mark("deleted"), 0, "no key: mark untouched");
    rig.h.table_add("m", &["5201=5"]).expect("add");
    assert_eq!(mark("added back"), 5);
    rig.h.table_flush("m").expect("flush");
    assert_eq!(mark("flushed"), 0);
}

/// Slot tables under churn (addr keys, size 4: 16 slots): elements added
/// and deleted over and over leave deleted slots behind until a delete
/// rebuilds the table and swaps it in; each step reaches the next packet,
/// no program is reloaded, and a full set refuses an add whole. An addr
/// map's value changed in place reaches the next packet too.
#[test]
fn slot_tables_take_churn_and_rebuilds() {
    if !root("slot_tables_take_churn_and_rebuilds") {
        return;
    }
    let t0 = Instant::now();
    let tables = format!(
        "{}\nsize = 4\n\n{}",
        set_toml("churn", "addr", &[]).trim_end(),
        map_toml(
            "mk",
            "addr",
            "u32",
            &[("10.1.0.1", "1"), ("fd00:1::1", "1")]
        )
    );
    for hook in FAMILIES {
        let rig = Rig::new(hook, &tables, &[in_set("src", "churn", "")], &[drop_()]);
        let ids = prog_ids(&rig);
        let [a4, b4, ..] = quad("v4");
        let [a6, b6, ..] = quad("v6");
        let (p4, p6) = (ack_pkt(a4, b4).build(), ack_pkt(a6, b6).build());
        let pass_v = verdict_code(hook, Verdict::Pass);
        let drop_v = verdict_code(hook, Verdict::Drop);
        let verdicts = |step: &str, want: i32| {
            for (p, fam) in [(&p4, "v4"), (&p6, "v6")] {
                let o = rig.run(p);
                assert_eq!(
                    o.ret, want,
                    "{hook} {step}: {fam} verdict\npolicy:\n{}",
                    rig.text
                );
            }
        };
        let first_map = rig.h.table_map_id("churn").expect("map id");
        let mut rebuilt = false;
        for i in 0..12 {
            let f4 = format!("10.77.0.{i}");
            let f6 = format!("fd00:77::{i:x}");
            rig.h
                .table_add("churn", &[&f4, "10.1.0.1", &f6, "fd00:1::1"])
                .unwrap_or_else(|e| panic!("{hook} round {i}: add: {e:#}"));
            verdicts(&format!("round {i}, added"), drop_v);
            rig.h
                .table_del("churn", &["10.1.0.1", "fd00:1::1"])
                .unwrap_or_else(|e| panic!("{hook} round {i}: del: {e:#}"));
            verdicts(&format!("round {i}, deleted"), pass_v);
            rig.h.table_del("churn", &[&f4, &f6]).expect("del fillers");
            let left = rig.h.table_elements("churn").expect("elements");
            assert!(left.is_empty(), "{hook} round {i}: left {left:?}");
            rebuilt |= rig.h.table_map_id("churn").expect("map id") != first_map;
        }
        assert!(
            rebuilt,
            "{hook}: 48 deletes in 16 slots never rebuilt the table"
        );
        // full: 5 elements into a set of size 4, refused whole
        rig.h.table_add("churn", &["10.1.0.1"]).expect("add one");
        let e = rig
            .h
            .table_add(
                "churn",
                &["10.77.1.1", "10.77.1.2", "10.77.1.3", "10.77.1.4"],
            )
            .expect_err("a fifth element");
        assert_eq!(
            format!("{e:#}"),
            "set \"churn\" is full: 1 elements and 4 new do not fit its size 4"
        );
        assert_eq!(rig.h.table_elements("churn").expect("elements").len(), 1);
        assert_eq!(rig.run(&p4).ret, drop_v, "{hook}: v4 after the refused add");
        assert_eq!(rig.run(&p6).ret, pass_v, "{hook}: v6 after the refused add");
        assert_eq!(prog_ids(&rig), ids, "{hook}: no program was reloaded");
    }
    // an addr map's value, changed in place (TC: the mark is visible)
    let act = "kind = \"set_mark\"\nmark = { map = \"mk\", key = \"src\" }".to_owned();
    let rig = Rig::new(Hook::TcEgress, &tables, &[], &[act]);
    for (a, b) in [(v4(V4_A), v4(V4_B)), (ip("fd00:1::1"), ip("fd00:1::2"))] {
        let p = ack_pkt(a, b).build();
        for v in [1u32, 7, 0x1234_5678, 2] {
            if v != 1 {
                rig.h
                    .table_add("mk", &[&format!("{a}={v}")])
                    .expect("change value");
            }
            let (o, m) = rig.h.run_mark(&p, 0).expect("test_run");
            assert_eq!(o.data, p, "{a}: untouched");
            assert_eq!(m, v, "{a}: the mark after setting {v}");
        }
    }
    eprintln!("slot_tables_take_churn_and_rebuilds: {:.2?}", t0.elapsed());
}

/// The ids of the programs in the chain's slots (a walk program holds
/// the first slot alone; one program per stage holds each).
fn prog_ids(rig: &Rig) -> Vec<u32> {
    let progs = libbpf_rs::MapHandle::from_pinned_path(
        rig.h.dir().join(rig.hook.family()).join("emptcp_progs"),
    )
    .expect("progs map");
    let ids: Vec<u32> = rig.h.slots[0]
        .iter()
        .filter_map(|s| {
            progs
                .lookup(&u32::from(*s).to_ne_bytes(), libbpf_rs::MapFlags::ANY)
                .expect("lookup")
                .map(|v| u32::from_ne_bytes(v[..4].try_into().expect("4 bytes")))
        })
        .collect();
    assert!(!ids.is_empty(), "no program in the chain's slots");
    ids
}

/// Malformed options after a set selector: the selector (which reads no
/// option) matches; the map-valued actor after it finds its key, counts a
/// parse error and leaves the packet. Frames the entry refuses (truncated
/// headers, bad lengths) never reach a lookup: counted by the entry,
/// passed untouched.
#[test]
fn malformed_packets_through_lookups_pass_untouched() {
    if !root("malformed_packets_through_lookups_pass_untouched") {
        return;
    }
    let tables = set_toml("hosts", "addr", &["10.1.0.1", "fd00:1::1"])
        + &map_toml(
            "bk",
            "addr",
            "bool",
            &[("10.1.0.2", "true"), ("fd00:1::2", "true")],
        );
    let sel = in_set("src", "hosts", "");
    let act =
        "kind = \"set_backup\"\nbackup = { map = \"bk\", key = \"dst\" }\nonce = false".to_owned();
    let opt_err = || pass(&[st(0, "hit"), st(1, "parse_err")]);
    let entry_err = || pass(&[(Ctr::Entry("parse_err"), 1)]);
    let mut cases = Vec::new();
    let bad_opts: Vec<(&str, Vec<u8>)> = vec![
        ("option length 0", cat(&[&dss_ack(1), &[8, 0, 1, 1]])),
        ("option length 1", cat(&[&dss_ack(1), &[8, 1, 1, 1]])),
        (
            "DSS running past the header",
            cat(&[&nop_nop_ts(1, 2), &[30, 12, 0x20, 1, 0, 0, 0, 1]]),
        ),
        ("length 255", cat(&[&[5, 255, 0, 0], &dss_ack(1)])),
    ];
    for (name, o) in &bad_opts {
        for fam in FAMS {
            let [a, b, ..] = quad(fam);
            cases.push(case(
                format!("{name} ({fam} pure ACK)"),
                &Pkt::ip(a, b).opts(o.clone()),
                opt_err(),
            ));
        }
    }
    let good = ack_pkt(v4(V4_A), v4(V4_B)).build();
    let good6 = ack_pkt(v6(V6_A), v6(V6_B)).build();
    let mut doff15 = good.clone();
    doff15[14 + 20 + 12] = 0xf0;
    cases.push(raw_case(
        "TCP data offset past the frame",
        doff15,
        entry_err(),
    ));
    let mut doff4 = good6.clone();
    doff4[14 + 40 + 12] = 0x40;
    cases.push(raw_case("v6 TCP data offset 4", doff4, entry_err()));
    let mut ihl15 = good.clone();
    ihl15[14] = 0x4f;
    ihl15.truncate(14 + 50);
    cases.push(raw_case(
        "IPv4 header length 60 past the frame",
        ihl15,
        entry_err(),
    ));
    for cut in [14 + 20 + 10, 14 + 20 + 20 + 4] {
        let mut t = good.clone();
        t.truncate(cut);
        // the IP length still says the whole packet
        cases.push(raw_case(format!("v4 frame cut at {cut}"), t, entry_err()));
    }
    for cut in [14 + 40 + 12, 14 + 40 + 30] {
        let mut t = good6.clone();
        t.truncate(cut);
        cases.push(raw_case(format!("v6 frame cut at {cut}"), t, entry_err()));
    }
    cases.push(raw_case(
        "UDP",
        udp_v4(),
        pass(&[(Ctr::Entry("not_tcp"), 1)]),
    ));
    run_groups(
        "malformed_packets_through_lookups_pass_untouched",
        &[Group {
            name: "src in set + set_backup from a map",
            tables,
            sel: vec![sel],
            act: vec![act],
            hooks: &FAMILIES,
            cases,
        }],
    );
}
