//! Selector probes, built on the fixture's `Rig`: every selector on every
//! packet against a model written from its documentation (`run_probe`),
//! and many chains of selectors at once (`run_matrix`).

use std::time::Instant;

use emptcp::Hook;

use crate::fixture::*;
use crate::pktlib::{self, build::*, decode};

/// Runs every packet through "probe" chains that evaluate each selector
/// on its own and checks each selector's hit counter against
/// `want(selector, packet)`. A probe chain is
///   S1, and NEVER, or S2, and NEVER, or S3, ..., and NEVER -> set_backup
/// The always-false AND after each selector resets the result, so the next
/// (OR) selector is always evaluated and its hit counter is its own result;
/// the actor never acts, so the packet must come out unchanged. At most 15
/// selectors a rig (31 stages, under the kernel's 33 tail calls). Each rig
/// runs twice: with set_backup, a heavy stage, which keeps the walk short
/// (unrolled); with `pass`, which lets 8 or more light selectors walk in the
/// loop (walk.bpf.c). Returns the walk programs the rigs ran in.
pub fn run_probe(
    group: &str,
    selectors: &[(String, Stage)],
    packets: &[(String, Pkt)],
    want: &dyn Fn(usize, usize) -> bool,
) -> std::collections::BTreeSet<Option<&'static str>> {
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut checks = 0;
    // set_backup keeps the walk short and unrolled (a heavy stage); with
    // `pass`, a group of more than 8 selectors walks in the loop, whose
    // selectors compare IPv6 addresses inline (walk.bpf.c)
    let actors = [set_backup(true, false), "kind = \"pass\"".to_string()];
    let mut walks = std::collections::BTreeSet::new();
    for (hook, act) in FAMILIES
        .into_iter()
        .flat_map(|h| actors.iter().map(move |a| (h, a)))
    {
        for (k, group_sel) in selectors.chunks(15).enumerate() {
            let base = k * 15;
            let mut sel = Vec::new();
            for (i, (_, s)) in group_sel.iter().enumerate() {
                sel.push(if i == 0 { s.clone() } else { or(s.clone()) });
                sel.push(never());
            }
            let actor = sel.len();
            let rig = Rig::new(hook, &[chain(sel, vec![act.clone()])]);
            walks.insert(rig.h.walk_prog());
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
                        "packet \"{pname}\" ({}) on {hook}, walk {:?}:\n  {}\n{}",
                        decode::summary(&input),
                        rig.h.walk_prog(),
                        errs.join("\n  "),
                        pktlib::diff::hexdump(&input, None)
                    ));
                }
            }
        }
    }
    eprintln!(
        "{group}: {} selectors x {} packets, {runs} runs, {checks} checks, {} failed ({:.2?}; walks {walks:?})",
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
    walks
}

/// A chain of a selector matrix: description and selectors (the actor is
/// always set_backup(backup=true, once=false)).
pub type MatrixChain = (String, Vec<Stage>);

/// Runs every packet through rigs holding all `chains` (packed at most 32
/// stages a rig) and checks, for every (chain, packet), whether the chain
/// selected the packet against `want(chain, packet)`. A chain selected a
/// packet iff its actor counted a hit or a skip: the first selecting chain
/// adds the MP_PRIO (a skip on TC for a data segment), later ones see it
/// and skip. A chain with one selector must also count the selector hit.
/// The output is the input, or the input with one MP_PRIO (B=1).
pub fn run_matrix(
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
