//! Per-packet cost of chains, through BPF_PROG_TEST_RUN (kernel-timed
//! average over `repeat` runs), against an empty program timed in the same
//! run. Rounds alternate baseline and chain; the median is reported.
//!
//!     cargo bench --bench cost [-- --quick] [-- --json FILE]
//!
//! Needs root.

use std::time::Duration;

use emptcp::policy::Policy;
use emptcp::testrun::Harness;
use emptcp::Hook;
use libbpf_rs::{ObjectBuilder, ProgramInput};

/// A 1,086-byte IPv4 data segment as a busy MPTCP subflow carries them:
/// options NOP NOP TS, DSS (data ACK 4 + DSN 4 + SSN 4 + length), NOP NOP.
fn dss_segment() -> Vec<u8> {
    let opts: Vec<u8> = [
        vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
        vec![
            30, 18, 0x20, 0x05, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0x03, 0xe8,
        ],
        vec![1, 1],
    ]
    .concat();
    let payload = 1000;
    let thl = 20 + opts.len();
    let mut p = vec![0u8; 14 + 20 + thl + payload];
    p[12] = 0x08;
    let tot = (20 + thl + payload) as u16;
    p[14] = 0x45;
    p[16..18].copy_from_slice(&tot.to_be_bytes());
    p[22] = 64;
    p[23] = 6;
    p[26..30].copy_from_slice(&[10, 1, 0, 1]);
    p[30..34].copy_from_slice(&[10, 1, 0, 2]);
    p[34..36].copy_from_slice(&40000u16.to_be_bytes());
    p[36..38].copy_from_slice(&5201u16.to_be_bytes());
    p[46] = ((thl / 4) as u8) << 4;
    p[47] = 0x18;
    p[54..54 + opts.len()].copy_from_slice(&opts);
    p
}

fn chain_toml(hook: &str, selectors: usize, actor: &str) -> String {
    let mut s = format!("[[chain]]\nname = \"bench\"\ndev = \"x\"\nhook = \"{hook}\"\n");
    for _ in 0..selectors {
        s.push_str(
            "[[chain.select]]\nkind = \"ip_pair\"\nsrc = \"10.1.0.1\"\ndst = \"10.1.0.2\"\n",
        );
    }
    s.push_str(&format!("[[chain.act]]\nkind = \"{actor}\"\n"));
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
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
    fn time(&self, pkt: &[u8], repeat: u32) -> Duration {
        let prog = self.obj.progs_mut().next().expect("baseline program");
        let mut i = ProgramInput::default();
        i.data_in = Some(pkt);
        i.repeat = repeat;
        prog.test_run(i).expect("test_run baseline").duration
    }
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("cost benchmark: needs root (BPF_PROG_TEST_RUN); SKIPPED");
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let repeat: u32 = if quick { 200_000 } else { 1_000_000 };
    let rounds = if quick { 3 } else { 7 };
    let pkt = dss_segment();

    // (label, selectors, selector source matches?)
    let mut rows = Vec::new();
    println!("emptcp cost benchmark: {}-byte DSS data segment, repeat {repeat}, {rounds} rounds, median ns/packet", pkt.len());
    println!(
        "{:<6} {:<44} {:>9} {:>9} {:>11}",
        "hook", "chain", "ns/pkt", "baseline", "over base"
    );
    for (hook, hname, family) in [
        (Hook::Xdp, "xdp", "xdp"),
        (Hook::TcEgress, "tc-egress", "tc"),
    ] {
        let base = Baseline::new(family);
        let mut cases: Vec<(String, String)> = vec![(
            "ip_pair misses + pass (flow without policy)".into(),
            chain_toml(hname, 1, "pass").replace("src = \"10.1.0.1\"", "src = \"10.9.9.9\""),
        )];
        for n in [1usize, 2, 4, 8, 15] {
            cases.push((
                format!("{n} x ip_pair (hit) + pass ({} stages)", n + 1),
                chain_toml(hname, n, "pass"),
            ));
        }
        cases.push((
            "ip_pair + set_backup (subflow done: once)".into(),
            chain_toml(hname, 1, "set_backup"),
        ));
        cases.push((
            "ip_pair + packet_type (option walk) + pass".into(),
            chain_toml(hname, 1, "pass").replace(
                "[[chain.act]]",
                "[[chain.select]]\nkind = \"packet_type\"\ntypes = [\"dss_data\"]\n[[chain.act]]",
            ),
        ));
        for (label, toml) in cases {
            let p = Policy::parse(&toml, "bench.toml").expect("bench policy");
            let h = Harness::new(hook, &p.chains).expect("load bench chain");
            // the first run inserts MP_PRIO once; later runs take the "once" path
            h.run(&pkt).expect("warm-up run");
            let mut chain = Vec::new();
            let mut basev = Vec::new();
            for _ in 0..rounds {
                basev.push(base.time(&pkt, repeat).as_nanos() as f64);
                chain.push(h.time(&pkt, repeat).expect("time chain").as_nanos() as f64);
            }
            let (c, b) = (median(chain), median(basev));
            println!(
                "{:<6} {:<44} {:>9.0} {:>9.0} {:>+11.0}",
                family,
                label,
                c,
                b,
                c - b
            );
            rows.push(format!(
                "{{\"hook\":\"{family}\",\"chain\":\"{label}\",\"ns\":{c},\"baseline_ns\":{b},\"over_ns\":{}}}",
                c - b
            ));
        }
    }
    if let Some(f) = json_out {
        std::fs::write(&f, format!("[{}]\n", rows.join(",\n"))).expect("write json");
        println!("wrote {f}");
    }
}
