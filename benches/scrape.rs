//! What a `/metrics` scrape costs the data path. A policy is applied to a
//! veth in a scratch namespace exactly as `emptcp run` applies it (8
//! chains on one tc-ingress point: 7 that miss, then ip_pair -> record ->
//! set_mark that hits); its pinned entry program is timed with
//! BPF_PROG_TEST_RUN (`bpftool prog run`, kernel-timed average over
//! `repeat` packets) while a thread renders the `/metrics` page
//! (metrics::page: the state, every per-CPU counter, the flow map) in a
//! loop with no pause, and without it, alternating which goes first in
//! each round. The scrape is all user space (map lookups by syscall); what
//! it can cost the data path is the cache lines of the per-CPU counters
//! and the flow record it reads, and the CPU it takes on a 2-core machine.
//!
//!     cargo bench --bench scrape -- [--rounds N] [--repeat N]
//!
//! Needs root and bpftool.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emptcp::metrics::{self, Health};
use emptcp::policy::Policy;
use emptcp::runtime::Runtime;

#[path = "common/packet.rs"]
mod packet;
use packet::dss_segment;

fn sh(args: &[&str]) {
    let s = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("run");
    assert!(s.success(), "{args:?} failed");
}

/// Removes the namespace and the state directory however the bench ends.
struct Scratch {
    ns: String,
    rt: Runtime,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.rt.detach_all();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn policy(ns: &str) -> String {
    let mut p = String::new();
    for i in 0..7 {
        p.push_str(&format!(
            "[[chain]]\nname = \"miss{i}\"\ndev = \"sa\"\nhook = \"tc-ingress\"\nnetns = \"{ns}\"\n\
             [[chain.select]]\nkind = \"ip_pair\"\nsrc = \"10.9.9.{i}\"\n\
             [[chain.act]]\nkind = \"pass\"\n"
        ));
    }
    p.push_str(&format!(
        "[[chain]]\nname = \"hit\"\ndev = \"sa\"\nhook = \"tc-ingress\"\nnetns = \"{ns}\"\n\
         [[chain.select]]\nkind = \"ip_pair\"\nsrc = \"10.1.0.1\"\ndst = \"10.1.0.2\"\n\
         [[chain.act]]\nkind = \"record\"\nmetrics = [\"packets\", \"bytes\"]\n\
         [[chain.act]]\nkind = \"set_mark\"\nmark = 7\n"
    ));
    p
}

/// The pinned entry program of the one attach point.
fn entry_pin(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("tc"))
        .expect("tc dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("entry-"))
        })
        .expect("an entry pin")
}

/// ns per packet, kernel-timed.
fn time_run(entry: &Path, pkt: &Path, repeat: u32) -> f64 {
    let o = Command::new("bpftool")
        .args(["prog", "run", "pinned"])
        .arg(entry)
        .arg("data_in")
        .arg(pkt)
        .args(["repeat", &repeat.to_string()])
        .output()
        .expect("bpftool");
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    text.split("duration (average):")
        .nth(1)
        .and_then(|r| {
            r.trim()
                .trim_end_matches("ns")
                .split_whitespace()
                .next()?
                .trim_end_matches("ns")
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("bpftool prog run: {text}"))
}

fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut rounds, mut repeat) = (7u32, 2_000_000u32);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds N")
            }
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--repeat N")
            }
            "--bench" => {}
            _ => {}
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("scrape bench: SKIPPED: needs root");
        return;
    }
    let pid = std::process::id();
    let ns = format!("emptcp-bench-scrape-{pid}");
    let dir = PathBuf::from(format!("/sys/fs/bpf/emptcp-bench-scrape-{pid}"));
    let rt = Runtime {
        dir: dir.clone(),
        ..Default::default()
    };
    sh(&["ip", "netns", "add", &ns]);
    let scratch = Scratch {
        ns: ns.clone(),
        rt: rt.clone(),
    };
    sh(&[
        "ip", "-n", &ns, "link", "add", "sa", "type", "veth", "peer", "name", "sb",
    ]);
    sh(&["ip", "-n", &ns, "link", "set", "sa", "up"]);
    let p = Policy::parse(&policy(&ns), "scrape.toml").expect("policy");
    rt.apply_desired(&p).expect("apply");
    let entry = entry_pin(&dir);
    let pkt = std::env::temp_dir().join(format!("emptcp-bench-scrape-{pid}.pkt"));
    std::fs::write(&pkt, dss_segment()).expect("write packet");
    let health = Arc::new(Mutex::new(Health {
        generation: 1,
        last_ok: true,
        ..Default::default()
    }));
    let page = metrics::page(&rt, &health);
    let samples = metrics::lint(&page).expect("valid page");

    let (mut idle, mut busy) = (Vec::new(), Vec::new());
    let (mut scrapes, mut scrape_wall, mut scrape_cpu) = (0u64, Duration::ZERO, Duration::ZERO);
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for scraping in order {
            if !scraping {
                idle.push(time_run(&entry, &pkt, repeat));
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let (s2, rt2, h2) = (stop.clone(), rt.clone(), health.clone());
            let t = std::thread::spawn(move || {
                let (t0, c0) = (Instant::now(), thread_cpu());
                let mut n = 0u64;
                while !s2.load(Ordering::Relaxed) {
                    std::hint::black_box(metrics::page(&rt2, &h2));
                    n += 1;
                }
                (n, t0.elapsed(), thread_cpu() - c0)
            });
            busy.push(time_run(&entry, &pkt, repeat));
            stop.store(true, Ordering::Relaxed);
            let (n, w, c) = t.join().expect("scraper");
            scrapes += n;
            scrape_wall += w;
            scrape_cpu += c;
        }
    }
    let page = metrics::page(&rt, &health);
    assert!(
        page.contains("emptcp_subflow_packets{"),
        "record's flow is on the page: {page}"
    );
    let (mi, mb) = (median(&mut idle), median(&mut busy));
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!("scrape bench: {rounds} rounds x {repeat} packets, 8 chains on one tc point, {samples} samples per page ({} bytes); machine shared", page.len());
    println!(
        "  entry program, no scrape:        median {mi:.1} ns/pkt (min {:.1})",
        min(&idle)
    );
    println!(
        "  entry program, scraping nonstop: median {mb:.1} ns/pkt (min {:.1})",
        min(&busy)
    );
    println!("  ratio (scraping / not):          {:.3}", mb / mi);
    println!(
        "  a scrape: {:.2} ms wall, {:.2} ms CPU ({scrapes} scrapes)",
        scrape_wall.as_secs_f64() * 1e3 / scrapes.max(1) as f64,
        scrape_cpu.as_secs_f64() * 1e3 / scrapes.max(1) as f64
    );
    let _ = std::fs::remove_file(&pkt);
    drop(scratch);
}
