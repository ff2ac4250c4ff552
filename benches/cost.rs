//! Per-packet cost of chains, through BPF_PROG_TEST_RUN (kernel-timed
//! average over `repeat` runs of the entry program), against an empty
//! program (`src/bpf/baseline.bpf.c`) timed in the same run.
//!
//!     cargo bench --bench cost -- [--quick] [--rounds N] [--repeat N] [--only TEXT] [--json FILE]
//!
//! Every chain is loaded first; then each round times, for every case in
//! turn, the baseline and the chain back to back, so that noise from other
//! work on the machine spreads over all cases. Reported: the minimum over
//! rounds (the least disturbed figure) minus the baseline's minimum, and the
//! median difference. Needs root.

use std::fmt::Write as _;

use emptcp::policy::Policy;
use emptcp::testrun::Harness;
use emptcp::Hook;
use libbpf_rs::{ObjectBuilder, ProgramInput};

#[path = "common/packet.rs"]
mod packet;
use packet::dss_segment;

/// Stage tables (TOML) that the bench packet matches.
const IP_PAIR: &str =
    "[[chain.select]]\nkind = \"ip_pair\"\nsrc = \"10.1.0.1\"\ndst = \"10.1.0.2\"\n";
const IP_PAIR_MISS: &str =
    "[[chain.select]]\nkind = \"ip_pair\"\nsrc = \"10.9.9.9\"\ndst = \"10.1.0.2\"\n";
const SUBFLOW: &str = "[[chain.select]]\nkind = \"subflow\"\nsaddr = \"10.1.0.1\"\ndaddr = \"10.1.0.2\"\nsport = 40000\ndport = 5201\n";
const SRC: &str = "[[chain.select]]\nkind = \"src\"\naddr = \"10.1.0.0/24\"\n";
const PORT: &str = "[[chain.select]]\nkind = \"port\"\ndport = 5201\n";
const PACKET_TYPE: &str = "[[chain.select]]\nkind = \"packet_type\"\ntypes = [\"dss_data\"]\n";
const PASS: &str = "[[chain.act]]\nkind = \"pass\"\n";
const SET_BACKUP: &str = "[[chain.act]]\nkind = \"set_backup\"\n";
const RECORD: &str = "[[chain.act]]\nkind = \"record\"\nmetrics = [\"packets\", \"bytes\"]\n";
const GET_CONNECT: &str = "[[chain.act]]\nkind = \"get_connect\"\n";
const SET_MARK: &str = "[[chain.act]]\nkind = \"set_mark\"\nmark = 7\n";
const DST: &str = "[[chain.select]]\nkind = \"dst\"\naddr = \"10.1.0.0/24\"\n";
const SEQUENCE: &str = "[[chain.select]]\nkind = \"sequence\"\nfield = \"dsn\"\nfrom = 0\n";
const GET_SUBFLOW: &str = "[[chain.act]]\nkind = \"get_subflow\"\n";
const BLK_SUBFLOW: &str = "[[chain.act]]\nkind = \"blk_subflow\"\n";
const ADD_SUBFLOW: &str = "[[chain.act]]\nkind = \"add_subflow\"\n";
const RATE_LIMIT: &str = "[[chain.act]]\nkind = \"rate_limit\"\nrate = \"20mbit\"\n";
const REDIRECT: &str = "[[chain.act]]\nkind = \"redirect\"\ndev = \"lo\"\n";
const DROP: &str = "[[chain.act]]\nkind = \"drop\"\n";

fn chain(hook: &str, stages: &[&str]) -> String {
    format!(
        "[[chain]]\nname = \"bench\"\ndev = \"x\"\nhook = \"{hook}\"\n{}",
        stages.concat()
    )
}

/// `n` stages in all: selectors that hit, then `pass`.
fn hits(n: usize) -> Vec<&'static str> {
    let mut v = vec![IP_PAIR; n - 1];
    v.push(PASS);
    v
}

/// `n` stages that only step on: the first selector misses, the next ones
/// see the result decided (AND after a miss) and go straight to the next
/// stage, and the unselected `pass` ends the walk.
fn forwards(n: usize) -> Vec<&'static str> {
    let mut v = vec![IP_PAIR_MISS];
    v.extend(std::iter::repeat_n(IP_PAIR, n - 2));
    v.push(PASS);
    v
}

#[derive(Clone, Copy, PartialEq)]
enum Group {
    Kind,
    Length,
    Forward,
    Combo,
}

struct Case {
    group: Group,
    label: String,
    stages: usize,
    toml: String,
}

fn cases(hook: &str) -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |group, label: &str, stages: Vec<&str>| {
        v.push(Case {
            group,
            label: label.to_owned(),
            stages: stages.len(),
            toml: chain(hook, &stages),
        })
    };
    add(Group::Kind, "pass (entry + 1 stage)", vec![PASS]);
    add(Group::Kind, "ip_pair hit + pass", vec![IP_PAIR, PASS]);
    add(Group::Kind, "ip_pair miss + pass", vec![IP_PAIR_MISS, PASS]);
    add(Group::Kind, "subflow hit + pass", vec![SUBFLOW, PASS]);
    add(Group::Kind, "src hit + pass", vec![SRC, PASS]);
    add(Group::Kind, "port hit + pass", vec![PORT, PASS]);
    add(Group::Kind, "dst (prefix) hit + pass", vec![DST, PASS]);
    add(Group::Kind, "sequence dsn hit + pass", vec![SEQUENCE, PASS]);
    add(
        Group::Kind,
        "packet_type hit + pass",
        vec![PACKET_TYPE, PASS],
    );
    add(
        Group::Kind,
        "set_backup (subflow done: once)",
        vec![SET_BACKUP],
    );
    add(Group::Kind, "record packets+bytes", vec![RECORD]);
    add(
        Group::Kind,
        "get_connect (DSS: no event)",
        vec![GET_CONNECT],
    );
    add(
        Group::Kind,
        "get_subflow (DSS: no event)",
        vec![GET_SUBFLOW],
    );
    add(Group::Kind, "blk_subflow (no ADD_ADDR)", vec![BLK_SUBFLOW]);
    add(Group::Kind, "add_subflow (nothing kept)", vec![ADD_SUBFLOW]);
    add(
        Group::Kind,
        "rate_limit (handshake not seen)",
        vec![RATE_LIMIT],
    );
    add(Group::Kind, "redirect (to lo)", vec![REDIRECT]);
    add(Group::Kind, "drop", vec![DROP]);
    if hook != "xdp" {
        add(Group::Kind, "set_mark", vec![SET_MARK]);
    }
    for n in [1usize, 2, 4, 8, 16, 32, 64] {
        add(
            Group::Length,
            &format!("{n:>2} stages: {} x ip_pair hit + pass", n - 1),
            hits(n),
        );
    }
    for n in [2usize, 4, 8, 16] {
        add(
            Group::Forward,
            &format!("{n:>2} stages: ip_pair miss, {} x step on, pass", n - 2),
            forwards(n),
        );
    }
    add(
        Group::Combo,
        "ip_pair + port + pass",
        vec![IP_PAIR, PORT, PASS],
    );
    add(
        Group::Combo,
        "ip_pair + packet_type + set_backup",
        vec![IP_PAIR, PACKET_TYPE, SET_BACKUP],
    );
    v
}

struct Baseline {
    obj: libbpf_rs::Object,
}

impl Baseline {
    fn new(family: &str) -> Baseline {
        let bytes = emptcp::loader::object_bytes("baseline", family).expect("baseline object");
        let open = ObjectBuilder::default()
            .open_memory(bytes)
            .expect("open baseline");
        Baseline {
            obj: open.load().expect("load baseline"),
        }
    }
    fn time(&self, pkt: &[u8], repeat: u32) -> f64 {
        let prog = self.obj.progs_mut().next().expect("baseline program");
        let i = ProgramInput {
            data_in: Some(pkt),
            repeat,
            ..Default::default()
        };
        prog.test_run(i)
            .expect("test_run baseline")
            .duration
            .as_nanos() as f64
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

struct Row {
    /// hook family and runtime: "xdp walk", "tc tail"
    family: String,
    group: Group,
    label: String,
    stages: usize,
    /// min and median ns/packet of the chain
    ns: (f64, f64),
    /// over the baseline: min(chain) - min(base), median of paired differences
    over: (f64, f64),
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("cost benchmark: needs root (BPF_PROG_TEST_RUN); SKIPPED");
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json_out: Option<String> = arg(&args, "--json");
    let only: Option<String> = arg(&args, "--only");
    let repeat: u32 = arg(&args, "--repeat").unwrap_or(if quick { 200_000 } else { 1_000_000 });
    let rounds: usize = arg(&args, "--rounds").unwrap_or(if quick { 5 } else { 9 });
    let pkt = dss_segment();

    let harden = std::fs::read_to_string("/proc/sys/net/core/bpf_jit_harden")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    println!(
        "emptcp cost: {}-byte DSS data segment, BPF_PROG_TEST_RUN repeat {repeat}, {rounds} rounds \
         interleaved with the baseline; kernel {}, bpf_jit_harden={harden}",
        pkt.len(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    if harden != "0" {
        println!(
            "WARNING: bpf_jit_harden is on: constants are blinded, figures are not representative"
        );
    }

    // the walk program and one program per stage (tail calls), A/B
    let runtimes: Vec<(&str, bool)> = match arg::<String>(&args, "--runtime").as_deref() {
        Some("walk") => vec![("walk", true)],
        Some("tail") => vec![("tail", false)],
        _ => vec![("walk", true), ("tail", false)],
    };
    let mut rows: Vec<Row> = Vec::new();
    for (hook, hname, fam) in [
        (Hook::Xdp, "xdp", "xdp"),
        (Hook::TcEgress, "tc-egress", "tc"),
    ] {
        for (rt, walk) in &runtimes {
            let family = format!("{fam} {rt}");
            let base = Baseline::new(fam);
            let cs: Vec<Case> = cases(hname)
                .into_iter()
                .filter(|c| only.as_ref().is_none_or(|o| c.label.contains(o.as_str())))
                // past 33 stages a tail-call walk never reaches its end
                .filter(|c| *walk || c.stages <= 33)
                .collect();
            if cs.is_empty() {
                // --only matched no chain of this hook (set_mark is TC only)
                continue;
            }
            let hs: Vec<Harness> = cs
                .iter()
                .map(|c| {
                    let p = Policy::parse(&c.toml, "bench.toml").expect("bench policy");
                    let h = Harness::with_runtime(hook, &p.chains, *walk)
                        .unwrap_or_else(|e| panic!("load bench chain {}: {e:#}", c.label));
                    // set_backup inserts MP_PRIO on this first run; later runs
                    // take the "once" path, as every later packet of the subflow
                    h.run(&pkt).expect("warm-up run");
                    h
                })
                .collect();
            let mut t = vec![Vec::new(); cs.len()];
            let mut b = vec![Vec::new(); cs.len()];
            for _ in 0..rounds {
                for (i, h) in hs.iter().enumerate() {
                    b[i].push(base.time(&pkt, repeat));
                    t[i].push(h.time(&pkt, repeat).expect("time chain").as_nanos() as f64);
                }
            }
            let bmin = min(&b.concat());
            for (i, c) in cs.iter().enumerate() {
                let diffs: Vec<f64> = t[i].iter().zip(&b[i]).map(|(x, y)| x - y).collect();
                rows.push(Row {
                    family: family.clone(),
                    group: c.group,
                    label: c.label.clone(),
                    stages: c.stages,
                    ns: (min(&t[i]), median(&t[i])),
                    over: (min(&t[i]) - bmin, median(&diffs)),
                });
            }
            let bm = median(&b.concat());
            println!("{family}: baseline (empty program) {bmin:.1} ns/packet min, {bm:.1} median");
        }
    }

    let mut out = String::new();
    let sections = [
        (
            Group::Kind,
            "stage kinds (a selector with `pass`; an actor alone)",
        ),
        (Group::Length, "chain length: selectors that hit + pass"),
        (
            Group::Forward,
            "chain length: stages that only step on (the cost of one tail-call stage)",
        ),
        (Group::Combo, "2 selectors + 1 actor"),
    ];
    for (g, title) in sections {
        let _ = writeln!(out, "\n{title}");
        let _ = writeln!(
            out,
            "{:<9} {:<44} {:>8} {:>10} {:>10} {:>10}",
            "hook", "chain", "ns min", "over min", "over med", "per stage"
        );
        for r in rows.iter().filter(|r| r.group == g) {
            // per stage: the marginal cost over the shortest chain of its group
            let first = rows
                .iter()
                .find(|x| x.family == r.family && x.group == g)
                .expect("group row");
            if rows
                .iter()
                .filter(|x| x.family == r.family && x.group == g)
                .count()
                == 0
            {
                continue;
            }
            let per = match g {
                Group::Length | Group::Forward if r.stages > first.stages => format!(
                    "{:>10.1}",
                    (r.over.0 - first.over.0) / (r.stages - first.stages) as f64
                ),
                _ => format!("{:>10}", "-"),
            };
            let _ = writeln!(
                out,
                "{:<9} {:<44} {:>8.1} {:>+10.1} {:>+10.1} {per}",
                r.family, r.label, r.ns.0, r.over.0, r.over.1
            );
        }
    }
    print!("{out}");
    println!(
        "\nover min = min(chain) - min(baseline); over med = median of the paired differences;\n\
         per stage = (over min - over min of the group's shortest chain) / extra stages."
    );

    if let Some(f) = json_out {
        let js: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"hook\":\"{}\",\"chain\":\"{}\",\"stages\":{},\"ns_min\":{:.1},\"ns_median\":{:.1},\"over_min\":{:.1},\"over_median\":{:.1}}}",
                    r.family, r.label, r.stages, r.ns.0, r.ns.1, r.over.0, r.over.1
                )
            })
            .collect();
        std::fs::write(&f, format!("[{}]\n", js.join(",\n"))).expect("write json");
        println!("wrote {f}");
    }
}
