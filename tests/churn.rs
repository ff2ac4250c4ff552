//! Changes under load: while a bulk MPTCP transfer (two subflows) runs
//! through rewriting chains, `emptcp apply` swaps two different versions of
//! them N times, alternating, then detaches and re-applies them M times.
//! Expected: no reset (TcpEstabResets, MPTcpExt MP_RST / FASTCLOSE), no
//! MPTCP fallback counter moves, no stall over 1 s (server bytes acked,
//! sampled every 100 ms), every byte delivered, no TCP checksum error;
//! throughput before and during the churn is printed.
//!
//!   EMPTCP_CHURN_APPLIES   alternating applies (default 20)
//!   EMPTCP_CHURN_DETACHES  detach + re-apply cycles (default 5)
//!   EMPTCP_CHURN_BULK      1: the server writes as fast as it can (default:
//!                          16 KiB every 5 ms, light on a shared machine)
//! `scripts/churn` runs 1000 and 100, bulk.
//!
//! Needs root; otherwise prints "SKIPPED: needs root".

mod netlib;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use netlib::*;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes the server's subflows have had acknowledged, in all.
fn acked(ns: &str) -> u64 {
    let (socks, _) = ss_tni(ns);
    socks
        .iter()
        .filter(|s| s.is_subflow())
        .map(|s| s.field("bytes_acked"))
        .sum()
}

/// Counters that say a connection was reset.
fn resets(ns: &str) -> BTreeMap<String, u64> {
    nstat(ns)
        .into_iter()
        .filter(|(k, _)| {
            k == "TcpEstabResets"
                || k == "TcpExtTCPAbortOnData"
                || k == "TcpExtTCPAbortOnClose"
                || (k.starts_with("MPTcpExt") && (k.contains("Rst") || k.contains("Fastclose")))
        })
        .collect()
}

fn policy(bed: &Testbed, version: u32) -> String {
    let (a, b) = (bed.a.as_str(), bed.b.as_str());
    let (tc, xdp) = if version == 0 {
        (
            // client egress: every ACK of the first subflow gets MP_PRIO B=0
            "  [[chain.select]]\n  kind = \"packet_type\"\n  types = [\"dss_ack\"]\n\
             [[chain.act]]\n  kind = \"set_backup\"\n  backup = false\n  once = false\n\
             [[chain.act]]\n  kind = \"record\"\n",
            "  [[chain.act]]\n  kind = \"record\"\n",
        )
    } else {
        (
            "  [[chain.act]]\n  kind = \"record\"\n  [[chain.act]]\n  kind = \"get_subflow\"\n",
            // server ingress: a window clamp far above the link's rate
            "  [[chain.select]]\n  kind = \"port\"\n  dport = 5201\n\
             [[chain.act]]\n  kind = \"rate_limit\"\n  rate = \"100gbit\"\n\
             [[chain.act]]\n  kind = \"get_connect\"\n",
        )
    };
    format!(
        "[[chain]]\nname = \"churn-tc\"\ndev = \"{}\"\nhook = \"tc-egress\"\nnetns = \"{a}\"\n{tc}\n\
         [[chain]]\nname = \"churn-xdp\"\ndev = \"{}\"\nhook = \"xdp\"\nnetns = \"{b}\"\n{xdp}\n",
        bed.x1a, bed.x1b
    )
}

#[test]
fn apply_churn_under_load() {
    if !root_or_skip("apply_churn_under_load") {
        return;
    }
    let applies = env_n("EMPTCP_CHURN_APPLIES", 20);
    let detaches = env_n("EMPTCP_CHURN_DETACHES", 5);
    let bulk = env_n("EMPTCP_CHURN_BULK", 0) != 0;
    let bed = Testbed::new(Family::V4);
    // checksums computed for real on the wire (veth trusts PARTIAL otherwise)
    for (ns, dev) in [
        (&bed.a, &bed.x1a),
        (&bed.a, &bed.x2a),
        (&bed.b, &bed.x1b),
        (&bed.b, &bed.x2b),
    ] {
        sh(
            "ip",
            &["netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
        );
    }
    let p = [
        bed.policy("v0", &policy(&bed, 0)),
        bed.policy("v1", &policy(&bed, 1)),
    ];
    let p: Vec<String> = p.iter().map(|x| x.display().to_string()).collect();
    bed.emptcp(&["apply", &p[0]]).expect_ok();
    let fb0 = (fallback_counters(&bed.a), fallback_counters(&bed.b));
    let rs0 = (resets(&bed.a), resets(&bed.b));
    let csum0 = counter(&bed.b, "TcpInCsumErrors") + counter(&bed.a, "TcpInCsumErrors");

    let mut t = if bulk {
        Transfer::start_bulk(&bed, Duration::from_secs(3600))
    } else {
        Transfer::start(&bed, Duration::from_secs(3600))
    };
    // both subflows up
    let t_up = Instant::now();
    loop {
        let (socks, _) = ss_tni(&bed.b);
        if socks
            .iter()
            .filter(|s| s.state == "ESTAB" && s.is_subflow())
            .count()
            >= 2
        {
            break;
        }
        assert!(
            t_up.elapsed() < Duration::from_secs(5),
            "second subflow not up"
        );
        thread::sleep(Duration::from_millis(50));
    }

    // sampler: (time, bytes acked) every 100 ms
    let stop = Arc::new(AtomicBool::new(false));
    let ns_b = bed.b.clone();
    let stop2 = stop.clone();
    let sampler = thread::spawn(move || {
        let mut v = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            v.push((Instant::now(), acked(&ns_b)));
            thread::sleep(Duration::from_millis(100));
        }
        v
    });

    // baseline: 2 s with the chains in place, no change
    thread::sleep(Duration::from_secs(2));
    let t_churn = Instant::now();
    let mut apply_times = Vec::new();
    for i in 0..applies {
        let t0 = Instant::now();
        bed.emptcp(&["apply", &p[(i + 1) % 2]]).expect_ok();
        apply_times.push(t0.elapsed());
        assert!(!t.done_sending(), "transfer ended during the churn");
    }
    for i in 0..detaches {
        let t0 = Instant::now();
        bed.emptcp(&["detach", "--all"]).expect_ok();
        bed.emptcp(&["apply", &p[i % 2]]).expect_ok();
        apply_times.push(t0.elapsed());
    }
    let churn_end = Instant::now();
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    t.stop();
    let r = t.finish();

    // throughput before / during, and the longest time without progress
    let rate = |from: Instant, to: Instant| {
        let pts: Vec<&(Instant, u64)> = samples
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .collect();
        match (pts.first(), pts.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                (b.1 - a.1) as f64 * 8.0 / (b.0 - a.0).as_secs_f64() / 1e6
            }
            _ => 0.0,
        }
    };
    let before = rate(samples[0].0, t_churn);
    let during = rate(t_churn, churn_end);
    let mut stall = Duration::ZERO;
    let mut last_progress = samples[0].0;
    for w in samples.windows(2) {
        if w[1].1 > w[0].1 {
            last_progress = w[1].0;
        } else {
            stall = stall.max(w[1].0 - last_progress);
        }
    }
    apply_times.sort();
    let med = apply_times[apply_times.len() / 2];
    let max = *apply_times.last().unwrap();
    let fb1 = (fallback_counters(&bed.a), fallback_counters(&bed.b));
    let rs1 = (resets(&bed.a), resets(&bed.b));
    let csum1 = counter(&bed.b, "TcpInCsumErrors") + counter(&bed.a, "TcpInCsumErrors");
    let moved = |a: &(BTreeMap<String, u64>, BTreeMap<String, u64>),
                 b: &(BTreeMap<String, u64>, BTreeMap<String, u64>)| {
        let mut v = Vec::new();
        for (x, y) in [(&a.0, &b.0), (&a.1, &b.1)] {
            for (k, n) in y {
                let d = n - x.get(k).copied().unwrap_or(0);
                if d != 0 {
                    v.push(format!("{k} +{d}"));
                }
            }
        }
        if v.is_empty() {
            "0".to_owned()
        } else {
            v.join(", ")
        }
    };
    eprintln!(
        "churn ({}): {applies} alternating applies + {detaches} detach/re-apply in {:.1?} \
         (apply median {med:.0?}, max {max:.0?}); throughput before {before:.0} Mbit/s, \
         during {during:.0} Mbit/s; longest stall {stall:.0?}; {} bytes sent, {} received; \
         resets {}; fallbacks {}; TCP checksum errors +{}",
        if bulk { "bulk" } else { "paced 16 KiB / 5 ms" },
        churn_end - t_churn,
        r.sent,
        r.received,
        moved(&rs0, &rs1),
        moved(&fb0, &fb1),
        csum1 - csum0
    );
    assert_eq!(r.sent, r.received, "bytes lost");
    assert_eq!(rs1, rs0, "a reset counter moved");
    assert_eq!(fb1, fb0, "an MPTCP fallback counter moved");
    assert_eq!(csum1, csum0, "TCP checksum errors");
    assert!(stall <= Duration::from_secs(1), "stalled for {stall:?}");
    assert!(during > 0.0, "no progress during the churn");
}
