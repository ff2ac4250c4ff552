//! How many events per second the event pipeline carries without a drop:
//! a `get_connect` chain run with BPF_PROG_TEST_RUN on an MP_CAPABLE ACK
//! (one event per call) at rising paced rates, while the real reader,
//! `emptcp events --json`, drains the ring buffer into a pipe that this
//! program counts. Drops are the stage's `error` counter (ring full).
//!
//!     cargo bench --bench events [-- --quick]
//!
//! Needs root.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emptcp::policy::Policy;
use emptcp::testrun::Harness;
use emptcp::Hook;

/// An IPv4 MP_CAPABLE ACK (v1, both keys): what get_connect reports.
fn mpc_ack() -> Vec<u8> {
    let mut opt = vec![30, 20, 0x01, 0x81];
    opt.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    opt.extend_from_slice(&0x1112_1314_1516_1718u64.to_be_bytes());
    let thl = 20 + opt.len();
    let mut p = vec![0u8; 14 + 20 + thl];
    p[12] = 0x08;
    p[14] = 0x45;
    p[16..18].copy_from_slice(&((20 + thl) as u16).to_be_bytes());
    p[22] = 64;
    p[23] = 6;
    p[26..30].copy_from_slice(&[10, 1, 0, 1]);
    p[30..34].copy_from_slice(&[10, 1, 0, 2]);
    p[34..36].copy_from_slice(&40000u16.to_be_bytes());
    p[36..38].copy_from_slice(&5201u16.to_be_bytes());
    p[46] = ((thl / 4) as u8) << 4;
    p[47] = 0x10;
    p[54..].copy_from_slice(&opt);
    p
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("events benchmark: needs root (BPF_PROG_TEST_RUN); SKIPPED");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let step = if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    };
    let toml = "[[chain]]\nname = \"ev\"\ndev = \"x\"\nhook = \"xdp\"\n\
                [[chain.act]]\nkind = \"get_connect\"\n";
    let p = Policy::parse(toml, "bench.toml").expect("bench policy");
    let h = Harness::new(Hook::Xdp, &p.chains).expect("load get_connect chain");
    let pkt = mpc_ack();

    let dir = h.dir().to_string_lossy().into_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_emptcp"))
        .args(["--state-dir", &dir, "events", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start emptcp events");
    let lines = Arc::new(AtomicU64::new(0));
    let reader = {
        let lines = lines.clone();
        let out = child.stdout.take().expect("events stdout");
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 20, out);
            let mut l = String::new();
            while r.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
                if l.contains("\"kind\":\"connect\"") {
                    lines.fetch_add(1, Ordering::Relaxed);
                }
                l.clear();
            }
        })
    };
    // the reader is up when a first event comes through
    let t0 = Instant::now();
    while lines.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(5) {
        h.time(&pkt, 1).expect("test_run");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        lines.load(Ordering::Relaxed) > 0,
        "emptcp events delivered nothing"
    );

    println!(
        "emptcp events pipeline: get_connect (XDP test_run) -> ring buffer (1 MiB) -> `emptcp events --json` -> pipe; {} ms per step",
        step.as_millis()
    );
    println!(
        "{:>12} {:>12} {:>10} {:>10} {:>12}",
        "target ev/s", "produced", "dropped", "delivered", "achieved/s"
    );
    let mut best_clean = 0f64;
    let rates: &[u64] = &[
        25_000, 50_000, 100_000, 200_000, 400_000, 800_000, 1_600_000, 0,
    ];
    for &rate in rates {
        let drops0 = h.counter(Some((0, 0)), "error");
        let got0 = lines.load(Ordering::Relaxed);
        let tick = Duration::from_millis(1);
        let per_tick = (rate / 1000).max(1) as u32;
        let start = Instant::now();
        let mut produced = 0u64;
        while start.elapsed() < step {
            let t = Instant::now();
            // one event per test_run call: with repeat > 1 the kernel's
            // test loop yields to the woken reader and stalls for a time
            // slice, which measures the scheduler, not the pipeline
            let n = if rate == 0 { 256 } else { per_tick };
            for _ in 0..n {
                h.time(&pkt, 1).expect("test_run");
            }
            produced += n as u64;
            if rate != 0 {
                if let Some(rest) = tick.checked_sub(t.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let dropped = h.counter(Some((0, 0)), "error") - drops0;
        // let the reader catch up with what the ring still holds
        let want = produced - dropped;
        let t = Instant::now();
        while lines.load(Ordering::Relaxed) - got0 < want && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let delivered = lines.load(Ordering::Relaxed) - got0;
        let achieved = produced as f64 / secs;
        let label = if rate == 0 {
            "unpaced".to_string()
        } else {
            rate.to_string()
        };
        println!("{label:>12} {produced:>12} {dropped:>10} {delivered:>10} {achieved:>12.0}");
        if dropped == 0 && delivered == produced {
            best_clean = best_clean.max(achieved);
        }
    }
    println!("sustained with no drop: {best_clean:.0} events/s");
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
}
