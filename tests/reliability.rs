//! Reliability judged on the wire: after every change emptcp makes, a chain
//! acts exactly when emptcp says it is applied ("never say applied when the
//! kernel is not doing it"). A chain here selects one TCP port and drops;
//! netlib::wire probes every port from namespace `a` and sees whether the
//! SYN (or its RST) was dropped. Nothing is judged by emptcp's counters.
//!
//! Topics, one module each: a model-based random walk over apply/replace/
//! move/detach (`model`), SIGKILL in the middle of a command
//! (`crash`), chains changed behind emptcp's back (`drift`), the slot reuse
//! after a detach or a move (`slot_reuse`), state directories emptcp must
//! refuse (`state_dir`), and a policy too large for the state map
//! (`too_large`).
//!
//! Sizes from the environment: EMPTCP_SEED (default 1), EMPTCP_MODEL_SEQS
//! (15), EMPTCP_CRASH_RUNS (15); `scripts/reliability` runs the long ones.
//! Needs root (namespaces, BPF); otherwise prints "SKIPPED: needs root".

mod netlib;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use netlib::wire::*;
use netlib::*;
use serde_json::Value;

/// A number from the environment, or `default`.
fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn seed() -> u64 {
    env_u64("EMPTCP_SEED", 1)
}

/// xorshift64*: small, fixed, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        // splitmix64 of (seed, stream): distinct, non-zero states
        let mut z = seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(stream.wrapping_mul(0xbf58_476d_1ce4_e5b9))
            .wrapping_add(0x94d0_49bb_1331_11eb);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability num/den.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// One chain as `show --json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    name: String,
    dev: String,
    hook: String,
    generation: u64,
    /// The per-chain `status` ("ok" when attached and acting); None when
    /// the runtime does not report one.
    status: Option<String>,
}

fn parse_listed(v: &Value) -> Vec<Listed> {
    let mut out: Vec<Listed> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| Listed {
            name: c["name"].as_str().unwrap_or("?").to_owned(),
            dev: c["dev"].as_str().unwrap_or("?").to_owned(),
            hook: c["hook"].as_str().unwrap_or("?").to_owned(),
            generation: c["generation"].as_u64().unwrap_or(0),
            status: c.get("status").and_then(Value::as_str).map(str::to_owned),
        })
        .collect();
    out.sort();
    out
}

/// `emptcp show --json`, parsed; Err with what it said when it fails.
fn try_listed(bed: &Testbed) -> Result<Vec<Listed>, String> {
    let o = bed.emptcp(&["show", "--json"]);
    if !o.ok() {
        return Err(format!(
            "`show --json` failed ({:?}): {}",
            o.code,
            o.stderr.trim()
        ));
    }
    let v: Value = serde_json::from_str(&o.stdout)
        .map_err(|e| format!("`show --json` does not parse: {e}: {}", o.stdout.trim()))?;
    Ok(parse_listed(&v))
}

fn listed(bed: &Testbed) -> Vec<Listed> {
    try_listed(bed).unwrap_or_else(|e| panic!("{e}"))
}

/// `emptcp show` as text, whatever it says (for failure messages).
fn show_text(bed: &Testbed) -> String {
    let o = bed.emptcp(&["show"]);
    format!(
        "`emptcp show` ({:?}):\n{}{}",
        o.code,
        o.stdout,
        if o.stderr.trim().is_empty() {
            String::new()
        } else {
            format!("stderr: {}\n", o.stderr.trim())
        }
    )
}

/// The point of a listed chain (None when it is not one of ours).
fn point_of(bed: &Testbed, dev: &str, hook: &str) -> Option<Point> {
    ALL_POINTS
        .iter()
        .copied()
        .find(|p| p.dev(bed) == dev && p.hook == hook)
}

/// Writes a policy file of `chains` (name, point, port).
fn policy_of(bed: &Testbed, file: &str, chains: &[(String, Point, u16)]) -> String {
    let text: String = chains
        .iter()
        .map(|(n, p, port)| drop_chain(bed, n, *p, *port))
        .collect::<Vec<_>>()
        .join("\n");
    bed.policy(file, &text).to_string_lossy().into_owned()
}

/// Panics (with `show`) unless every expectation holds on the wire.
fn assert_wire(bed: &Testbed, what: &str, expects: &[Expect]) {
    let j = judge(bed, expects);
    assert!(
        j.ok(),
        "{what}: on the wire:\n  {}\n{}",
        j.mismatches.join("\n  "),
        show_text(bed)
    );
}

fn acts(port: u16, link: u8) -> Expect {
    Expect {
        port,
        link,
        dropped: true,
    }
}

fn passes(port: u16, link: u8) -> Expect {
    Expect {
        port,
        link,
        dropped: false,
    }
}

// ===================================================================
mod slot_reuse {
    //! Chains a and b share a point; a leaves it (detach, or a move to
    //! another hook); more than the 1 s grace later, any other change
    //! frees the old layout's slots. b must go on acting.
    use super::*;

    const P1: Point = Point::new(Side::B, 1, "tc-ingress");
    const P1X: Point = Point::new(Side::B, 1, "xdp");
    const P2X: Point = Point::new(Side::B, 2, "xdp");
    const PA: u16 = 21001;
    const PB: u16 = 21002;
    const PC: u16 = 21003;

    fn run(how: &str) {
        let bed = Testbed::new(Family::V4);
        let ab = policy_of(&bed, "ab", &[("a".into(), P1, PA), ("b".into(), P1, PB)]);
        bed.emptcp(&["apply", &ab]).expect_ok();
        assert_wire(
            &bed,
            "a and b applied",
            &[acts(PA, 1), acts(PB, 1), passes(PC, 2)],
        );
        let a_still = match how {
            "detach" => {
                bed.emptcp(&["detach", "a"]).expect_ok();
                false
            }
            _ => {
                let mv = policy_of(&bed, "a-moved", &[("a".into(), P1X, PA)]);
                bed.emptcp(&["apply", &mv]).expect_ok();
                true
            }
        };
        let pa = Expect {
            port: PA,
            link: 1,
            dropped: a_still,
        };
        assert_wire(&bed, &format!("after the {how} of a"), &[pa, acts(PB, 1)]);
        std::thread::sleep(Duration::from_millis(1200));
        let c = policy_of(&bed, "c", &[("c".into(), P2X, PC)]);
        bed.emptcp(&["apply", &c]).expect_ok();
        assert_wire(
            &bed,
            &format!("{how} of a, 1.2 s, then c applied on {}", P2X.label()),
            &[pa, acts(PB, 1), acts(PC, 2)],
        );
        eprintln!("slot reuse after a {how}: b and c act on the wire");
    }

    #[test]
    fn slot_reuse_after_detach() {
        if !root_or_skip("slot_reuse_after_detach") {
            return;
        }
        run("detach");
    }

    #[test]
    fn slot_reuse_after_move() {
        if !root_or_skip("slot_reuse_after_move") {
            return;
        }
        run("move");
    }
}

// ===================================================================
mod model {
    //! Random sequences of apply (new chains, a replacement with a new
    //! port, a move to another device or hook, several chains on one
    //! point), `detach NAME`, `detach --all` and pauses longer than the
    //! 1 s slot grace; after every step every port the sequence used is
    //! probed over both links and must be dropped exactly where the model
    //! has a chain for it.
    use super::*;

    /// Chain name -> (point, port).
    type Model = BTreeMap<String, (Point, u16)>;

    #[derive(Debug, Clone)]
    enum Step {
        Apply {
            what: &'static str,
            chains: Vec<(String, Point, u16)>,
        },
        Detach(String),
        DetachAll,
        Sleep(u64),
    }

    impl std::fmt::Display for Step {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Step::Apply { what, chains } => {
                    let c: Vec<String> = chains
                        .iter()
                        .map(|(n, p, port)| format!("{n}@{}:{port}", p.label()))
                        .collect();
                    write!(f, "apply ({what}) {}", c.join(" "))
                }
                Step::Detach(n) => write!(f, "detach {n}"),
                Step::DetachAll => write!(f, "detach --all"),
                Step::Sleep(ms) => write!(f, "sleep {ms} ms"),
            }
        }
    }

    /// Names and ports of one sequence.
    struct Gen {
        rng: Rng,
        next_name: u32,
        next_port: u16,
    }

    impl Gen {
        fn name(&mut self) -> String {
            self.next_name += 1;
            format!("m{}", self.next_name)
        }
        fn port(&mut self) -> u16 {
            self.next_port += 1;
            self.next_port
        }
        fn point(&mut self) -> Point {
            *self.rng.pick(&SYN_POINTS)
        }
        fn existing(&mut self, m: &Model) -> String {
            let names: Vec<&String> = m.keys().collect();
            (*self.rng.pick(&names)).clone()
        }
        fn several(&mut self) -> Step {
            let p = self.point();
            let n = self.rng.range(2, 3);
            let chains = (0..n).map(|_| (self.name(), p, self.port())).collect();
            Step::Apply {
                what: "several on one point",
                chains,
            }
        }
        /// A random step that makes sense for the model.
        fn step(&mut self, m: &Model) -> Step {
            // weights: new 3, several 2, replace 2, move 2, detach 3, detach --all 1
            let k = if m.is_empty() {
                self.rng.below(5)
            } else {
                self.rng.below(13)
            };
            match k {
                0..=2 => {
                    let n = self.rng.range(1, 3);
                    let chains = (0..n)
                        .map(|_| {
                            let (name, p) = (self.name(), self.point());
                            (name, p, self.port())
                        })
                        .collect();
                    Step::Apply {
                        what: "new chains",
                        chains,
                    }
                }
                3..=4 => self.several(),
                5..=6 => {
                    let n = self.existing(m);
                    let p = m[&n].0;
                    Step::Apply {
                        what: "replace: new port",
                        chains: vec![(n, p, self.port())],
                    }
                }
                7..=8 => {
                    let n = self.existing(m);
                    let (from, port) = m[&n];
                    let others: Vec<Point> =
                        SYN_POINTS.iter().copied().filter(|p| *p != from).collect();
                    let to = *self.rng.pick(&others);
                    Step::Apply {
                        what: "move",
                        chains: vec![(n, to, port)],
                    }
                }
                9..=11 => Step::Detach(self.existing(m)),
                _ => Step::DetachAll,
            }
        }
    }

    /// The steps of sequence `seq`: 4-8 changes, pauses of 1.15-1.3 s
    /// between some, then `detach --all`. Every other sequence has the
    /// slot-reuse pattern somewhere with a change after it: several chains
    /// on one point, `detach` of one of them, a pause.
    fn plan(seed: u64, seq: u64) -> Vec<Step> {
        let mut g = Gen {
            rng: Rng::new(seed, seq),
            next_name: 0,
            next_port: 22000 + (seq % 40) as u16 * 200,
        };
        let n = g.rng.range(4, 8) as usize;
        let pattern_at = (seq % 2 == 0).then(|| g.rng.below((n - 3) as u64) as usize);
        let mut m = Model::new();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < n {
            let mut batch = Vec::new();
            if pattern_at == Some(i) {
                let s = g.several();
                let Step::Apply { chains, .. } = &s else {
                    unreachable!()
                };
                let victim = g.rng.pick(chains).0.clone();
                batch.push(s);
                batch.push(Step::Detach(victim));
                batch.push(Step::Sleep(g.rng.range(1150, 1300)));
                i += 3;
            } else {
                batch.push(g.step(&m));
                i += 1;
                if g.rng.chance(1, 4) {
                    batch.push(Step::Sleep(g.rng.range(1150, 1300)));
                }
            }
            for s in batch {
                apply_to_model(&mut m, &s);
                steps.push(s);
            }
        }
        steps.push(Step::DetachAll);
        steps
    }

    fn apply_to_model(m: &mut Model, s: &Step) {
        match s {
            Step::Apply { chains, .. } => {
                for (n, p, port) in chains {
                    m.insert(n.clone(), (*p, *port));
                }
            }
            Step::Detach(n) => {
                m.remove(n);
            }
            Step::DetachAll => m.clear(),
            Step::Sleep(_) => {}
        }
    }

    #[test]
    fn model_based() {
        if !root_or_skip("model_based") {
            return;
        }
        let seed = seed();
        let seqs = env_u64("EMPTCP_MODEL_SEQS", 15);
        let bed = Testbed::new(Family::V4);
        let start = Instant::now();
        let (mut steps_run, mut probes, mut rechecked, mut patterns) = (0usize, 0usize, 0, 0);
        for seq in 0..seqs {
            let steps = plan(seed, seq);
            patterns += usize::from(seq % 2 == 0);
            let mut m = Model::new();
            let mut ports: BTreeSet<u16> = BTreeSet::new();
            let mut done: Vec<String> = Vec::new();
            for (i, s) in steps.iter().enumerate() {
                let out = match s {
                    Step::Apply { chains, .. } => {
                        let f = policy_of(&bed, &format!("s{seq}-{i}"), chains);
                        Some(bed.emptcp(&["apply", &f]))
                    }
                    Step::Detach(n) => Some(bed.emptcp(&["detach", n])),
                    Step::DetachAll => Some(bed.emptcp(&["detach", "--all"])),
                    Step::Sleep(ms) => {
                        std::thread::sleep(Duration::from_millis(*ms));
                        None
                    }
                };
                done.push(format!("{:>2}. {s}", i + 1));
                steps_run += 1;
                let fail = |what: String| -> ! {
                    panic!(
                        "model_based: seed {seed}, sequence {seq}, step {}: {what}\n\
                         steps so far:\n  {}\n{}\
                         rerun: EMPTCP_SEED={seed} EMPTCP_MODEL_SEQS={} cargo test --release \
                         --locked --test reliability model_based -- --nocapture",
                        i + 1,
                        done.join("\n  "),
                        show_text(&bed),
                        seq + 1
                    )
                };
                if let Some(o) = out {
                    if !o.ok() {
                        fail(format!(
                            "`{}` failed ({:?}): {}",
                            o.cmdline,
                            o.code,
                            o.stderr.trim()
                        ));
                    }
                }
                apply_to_model(&mut m, s);
                if let Step::Apply { chains, .. } = s {
                    ports.extend(chains.iter().map(|c| c.2));
                }
                let acting: BTreeSet<(u16, u8)> =
                    m.values().map(|(p, port)| (*port, p.link)).collect();
                let j = judge(&bed, &expect_both_links(ports.iter().copied(), &acting));
                probes += j.probes;
                rechecked += j.rechecked_ok;
                if !j.ok() {
                    let model: Vec<String> = m
                        .iter()
                        .map(|(n, (p, port))| format!("{n}@{}:{port}", p.label()))
                        .collect();
                    fail(format!(
                        "the wire disagrees with the model\n  {}\nmodel: {}",
                        j.mismatches.join("\n  "),
                        if model.is_empty() {
                            "no chains".into()
                        } else {
                            model.join(" ")
                        }
                    ));
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "model_based: seed {seed}: {seqs} sequences ({patterns} with the slot-reuse \
             pattern), {steps_run} steps, {probes} probes ({rechecked} slow refusals \
             rechecked), {secs:.1} s"
        );
    }
}

// ===================================================================
mod crash {
    //! `emptcp apply` or `detach` killed (SIGKILL) at a random moment of
    //! its run; the same command run again must succeed and leave a state
    //! whose listed chains, and only those, act on the wire. At the end,
    //! `detach --all` leaves nothing of ours in the kernel.
    use super::*;
    use std::process::{Command, Stdio};

    /// The chain names the runs draw from; each keeps one port.
    const NAMES: u16 = 6;

    fn name(i: u16) -> String {
        format!("k{i}")
    }

    fn port(name: &str) -> Option<u16> {
        let i: u16 = name.strip_prefix('k')?.parse().ok()?;
        (i < NAMES).then_some(23000 + i)
    }

    /// Every port over both links, in a fixed order (for before/after).
    fn wire_snapshot(bed: &Testbed) -> Vec<Verdict> {
        let targets: Vec<std::net::SocketAddr> = (0..NAMES)
            .flat_map(|i| {
                [1u8, 2].map(|l| {
                    std::net::SocketAddr::new(server_addr_on(bed, l), port(&name(i)).unwrap())
                })
            })
            .collect();
        probe_from(&bed.a, &targets, PROBE_TIMEOUT)
    }

    fn union(into: &mut BpfIds, more: BpfIds) {
        into.progs.extend(more.progs);
        into.maps.extend(more.maps);
        into.links.extend(more.links);
        into.map_names.extend(more.map_names);
    }

    /// Problems with the state after a successful recovery, one string
    /// each: the listed chains must be the intended ones, on their points.
    fn check_state(bed: &Testbed, intended: &BTreeMap<String, Point>) -> Vec<String> {
        let mut bad = Vec::new();
        let l = match try_listed(bed) {
            Ok(l) => l,
            Err(e) => return vec![e],
        };
        for (n, p) in intended {
            match l.iter().find(|c| c.name == *n) {
                None => bad.push(format!("chain {n} not listed")),
                Some(c) if c.dev != p.dev(bed) || c.hook != p.hook => bad.push(format!(
                    "chain {n} listed on {} {}, applied to {}",
                    c.dev,
                    c.hook,
                    p.label()
                )),
                _ => {}
            }
        }
        for c in &l {
            if !intended.contains_key(&c.name) {
                bad.push(format!("chain {} listed, but detached", c.name));
            }
        }
        let mut acting = BTreeSet::new();
        for c in &l {
            match (port(&c.name), point_of(bed, &c.dev, &c.hook)) {
                (Some(port), Some(p)) => {
                    acting.insert((port, p.link));
                }
                _ => bad.push(format!("unknown chain listed: {c:?}")),
            }
        }
        let j = judge(
            bed,
            &expect_both_links((0..NAMES).filter_map(|i| port(&name(i))), &acting),
        );
        let who = |port: u16| {
            l.iter()
                .find(|c| super::crash::port(&c.name) == Some(port))
                .map(|c| format!("listed {} ({} {})", c.name, c.dev, c.hook))
                .unwrap_or_else(|| "no chain listed for it".into())
        };
        for m in j.mismatches {
            let p: u16 = m
                .split_whitespace()
                .nth(1)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            bad.push(format!("{m} ({})", who(p)));
        }
        bad
    }

    #[test]
    fn crash_injection() {
        if !root_or_skip("crash_injection") {
            return;
        }
        let seed = seed();
        let runs = env_u64("EMPTCP_CRASH_RUNS", 15);
        let bed = Testbed::new(Family::V4);
        let start = Instant::now();
        let sd = bed.state_dir.to_string_lossy().into_owned();

        // the typical duration of an apply: median of five
        let typical = policy_of(
            &bed,
            "typical",
            &[
                (name(0), SYN_POINTS[0], port(&name(0)).unwrap()),
                (name(1), SYN_POINTS[1], port(&name(1)).unwrap()),
                (name(2), SYN_POINTS[5], port(&name(2)).unwrap()),
            ],
        );
        let mut d: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                bed.emptcp(&["apply", &typical]).expect_ok();
                t.elapsed()
            })
            .collect();
        d.sort();
        let median = d[2];
        bed.emptcp(&["detach", "--all"]).expect_ok();

        let mut rng = Rng::new(seed, 0xc4a5);
        // what the commands so far asked for: name -> point
        let mut intended: BTreeMap<String, Point> = BTreeMap::new();
        let mut ids = BpfIds::default();
        let (mut before_fx, mut after_fx, mut finished) = (0, 0, 0);
        let (mut applies, mut detaches) = (0, 0);
        let mut failures: Vec<String> = Vec::new();
        for run in 0..runs {
            let before = try_listed(&bed);
            let wire_before = wire_snapshot(&bed);
            // the command, drawn from the intended state (not from what is
            // seen) so that a seed always gives the same commands: apply a
            // file of 1-4 chains, or detach
            let names: Vec<String> = intended.keys().cloned().collect();
            let mut file: Vec<(String, Point, u16)> = Vec::new();
            let mut detached: Option<String> = None;
            let args: Vec<String> = if !names.is_empty() && rng.chance(2, 5) {
                detaches += 1;
                let what = if rng.chance(1, 4) {
                    "--all".to_owned()
                } else {
                    rng.pick(&names).clone()
                };
                detached = Some(what.clone());
                vec!["detach".into(), what]
            } else {
                applies += 1;
                let mut pool: Vec<u16> = (0..NAMES).collect();
                for _ in 0..rng.range(1, 4) {
                    let i = pool.remove(rng.below(pool.len() as u64) as usize);
                    let n = name(i);
                    let p = *rng.pick(&SYN_POINTS);
                    let port = port(&n).unwrap();
                    file.push((n, p, port));
                }
                vec![
                    "apply".into(),
                    policy_of(&bed, &format!("crash-{run}"), &file),
                ]
            };
            match detached.as_deref() {
                Some("--all") => intended.clear(),
                Some(n) => {
                    intended.remove(n);
                }
                None => intended.extend(file.iter().map(|(n, p, _)| (n.clone(), *p))),
            }
            let what = if let Some(d) = &detached {
                format!("detach {d}")
            } else {
                let c: Vec<String> = file
                    .iter()
                    .map(|(n, p, _)| format!("{n}@{}", p.label()))
                    .collect();
                format!("apply {}", c.join(" "))
            };
            // run it and kill it somewhere in its typical duration
            let delay = median.mul_f64(rng.below(1001) as f64 / 1000.0);
            let mut child = Command::new(EMPTCP)
                .arg("--state-dir")
                .arg(&sd)
                .args(&args)
                .env("EMPTCP_STATE_DIR", &sd)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn emptcp");
            std::thread::sleep(delay);
            let ended = child.try_wait().expect("try_wait");
            if ended.is_none() {
                // SAFETY: our own child, not yet reaped.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            }
            let st = child.wait().expect("wait");
            let after = try_listed(&bed);
            let wire_after = wire_snapshot(&bed);
            let class = if ended.is_some() {
                finished += 1;
                format!("finished before the kill ({st})")
            } else if after.as_ref().ok() != before.as_ref().ok() || wire_after != wire_before {
                after_fx += 1;
                "killed after visible effects".to_owned()
            } else {
                before_fx += 1;
                "killed before visible effects".to_owned()
            };
            let tag = format!(
                "run {run} ({what}, kill at {} ms, {class})",
                delay.as_millis()
            );
            let mut bad: Vec<String> = Vec::new();
            if let Err(e) = &after {
                bad.push(format!("after the kill: {e}"));
            }
            union(&mut ids, owned_ids(&bed.state_dir));
            // the same command again
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = bed.emptcp(&a);
            let retry_ok = o.ok()
                || detached.as_deref().is_some_and(|n| {
                    // the killed detach got there: "no chain called" is the answer
                    n != "--all"
                        && o.stderr_lines().len() == 1
                        && o.stderr.contains("no chain called")
                        && try_listed(&bed).is_ok_and(|l| l.iter().all(|c| c.name != n))
                });
            if !retry_ok {
                bad.push(format!(
                    "`emptcp {}` again failed ({:?}): {}",
                    a.join(" "),
                    o.code,
                    o.stderr.trim().replace('\n', " | ")
                ));
            } else {
                bad.extend(check_state(&bed, &intended));
            }
            if !bad.is_empty() {
                // go on from what is there, so one failure is reported once
                if let Ok(l) = try_listed(&bed) {
                    intended = l
                        .iter()
                        .filter_map(|c| Some((c.name.clone(), point_of(&bed, &c.dev, &c.hook)?)))
                        .collect();
                }
            }
            union(&mut ids, owned_ids(&bed.state_dir));
            eprintln!(
                "{tag}: {}",
                if bad.is_empty() {
                    "ok".to_owned()
                } else {
                    bad.join("; ")
                }
            );
            if !bad.is_empty() {
                failures.push(format!("{tag}: {}", bad.join("; ")));
            }
        }

        // and at the end nothing of ours is left
        let o = bed.emptcp(&["detach", "--all"]);
        if !o.ok() {
            failures.push(format!("final detach --all failed: {}", o.stderr.trim()));
        }
        let mut left_pins = Vec::new();
        let mut stack = vec![bed.state_dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    left_pins.push(e.path().display().to_string());
                }
            }
        }
        if !left_pins.is_empty() {
            failures.push(format!("pins left after detach --all: {left_pins:?}"));
        }
        for (ns, dev) in [
            (&bed.a, &bed.x1a),
            (&bed.a, &bed.x2a),
            (&bed.b, &bed.x1b),
            (&bed.b, &bed.x2b),
        ] {
            if let Some(m) = xdp_mode(ns, dev) {
                failures.push(format!("XDP program (mode {m}) left on {dev}"));
            }
            for eg in [false, true] {
                let n = tcx_count(ns, dev, eg);
                if n > 0 {
                    failures.push(format!(
                        "{n} tcx {} program(s) left on {dev}",
                        if eg { "egress" } else { "ingress" }
                    ));
                }
            }
        }
        let mut still = still_loaded(&ids);
        for _ in 0..30 {
            if still.progs.is_empty() && still.links.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            still = still_loaded(&ids);
        }
        if !still.progs.is_empty() || !still.links.is_empty() {
            let names = loaded_progs();
            let p: Vec<String> = still
                .progs
                .iter()
                .map(|id| format!("{id} {}", names.get(id).map(String::as_str).unwrap_or("?")))
                .collect();
            failures.push(format!(
                "still loaded 3 s after detach --all: programs [{}], links {:?}",
                p.join(", "),
                still.links
            ));
        }
        eprintln!(
            "crash_injection: seed {seed}: {runs} runs ({applies} apply, {detaches} detach; \
             kill within the median apply of {} ms): {before_fx} killed before visible \
             effects, {after_fx} after, {finished} finished first; {} objects of ours \
             followed; {} failures; {:.1} s",
            median.as_millis(),
            ids.progs.len() + ids.maps.len() + ids.links.len(),
            failures.len(),
            start.elapsed().as_secs_f64()
        );
        assert!(
            failures.is_empty(),
            "crash_injection: seed {seed}: {} of {runs} runs (or the end) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
}

// ===================================================================
mod drift {
    //! The kernel changed behind emptcp's back: a link detached by another
    //! tool, the device deleted (and made again), the namespace deleted.
    //! `show` must stop calling such a chain "ok", and `apply` of the same
    //! file must repair it (say so) so that it acts on the wire again.
    use super::*;

    const T: Point = Point::new(Side::B, 1, "tc-ingress");
    const X: Point = Point::new(Side::B, 1, "xdp");
    const U: Point = Point::new(Side::B, 2, "tc-ingress");
    const PT: u16 = 24001;
    const PX: u16 = 24002;
    const PU: u16 = 24003;

    fn file(bed: &Testbed) -> String {
        policy_of(
            bed,
            "drift",
            &[
                ("t".into(), T, PT),
                ("x".into(), X, PX),
                ("u".into(), U, PU),
            ],
        )
    }

    /// `show --json` says chain `name` is not acting, and its line in the
    /// text `show` says why (`phrase`).
    fn assert_not_ok(bed: &Testbed, name: &str, phrase: &str) {
        let l = listed(bed);
        let c = l
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("chain {name} no longer listed:\n{}", show_text(bed)));
        match c.status.as_deref() {
            None => panic!(
                "chain {name} ({phrase}): `show --json` has no \"status\" field\n{}",
                show_text(bed)
            ),
            Some("ok") => panic!(
                "chain {name} ({phrase}): `show --json` says status \"ok\"\n{}",
                show_text(bed)
            ),
            Some(_) => {}
        }
        let text = bed.emptcp(&["show"]).expect_ok().stdout;
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no line for {name} in `emptcp show`:\n{text}"));
        assert!(
            line.contains(phrase),
            "the `emptcp show` line of {name} does not say {phrase:?}: {line:?}"
        );
    }

    /// `show --json` says status "ok" for each of `names`.
    fn assert_ok(bed: &Testbed, names: &[&str]) {
        let l = listed(bed);
        for n in names {
            let s = l.iter().find(|c| c.name == *n).map(|c| c.status.clone());
            assert_eq!(
                s,
                Some(Some("ok".to_owned())),
                "chain {n}: status\n{}",
                show_text(bed)
            );
        }
    }

    /// `apply` of `file` exits 0 and says "repaired".
    fn repair(bed: &Testbed, file: &str) {
        let o = bed.emptcp(&["apply", file]).expect_ok();
        assert!(
            o.stdout.lines().any(|l| l.contains("repaired")),
            "`apply` repaired nothing it said: stdout {:?} stderr {:?}",
            o.stdout,
            o.stderr
        );
        eprintln!("apply: {}", o.stdout.trim().replace('\n', " | "));
    }

    /// The id of our link at point `p` (a pin under the state dir).
    fn our_link(bed: &Testbed, p: Point) -> u64 {
        pinned_link_at(&bed.state_dir, p.ns(bed), p.dev(bed), p.hook).unwrap_or_else(|| {
            panic!(
                "no link pinned under {} is attached at {}",
                bed.state_dir.display(),
                p.label()
            )
        })
    }

    /// (a) `bpftool link detach` of our tcx link, then of our XDP link.
    #[test]
    fn drift_link_detached_by_another_tool() {
        if !root_or_skip("drift_link_detached_by_another_tool") {
            return;
        }
        let bed = Testbed::new(Family::V4);
        let f = file(&bed);
        bed.emptcp(&["apply", &f]).expect_ok();
        assert_wire(&bed, "applied", &[acts(PT, 1), acts(PX, 1), acts(PU, 2)]);
        for (p, name, port) in [(T, "t", PT), (X, "x", PX)] {
            let id = our_link(&bed, p);
            sh("bpftool", &["link", "detach", "id", &id.to_string()]);
            assert_wire(
                &bed,
                &format!("link {id} of {name} detached by bpftool"),
                &[passes(port, 1), acts(PU, 2)],
            );
            assert_not_ok(&bed, name, "detached by someone else");
            assert_ok(&bed, &["u"]);
        }
        repair(&bed, &f);
        assert_wire(
            &bed,
            "after the repair",
            &[acts(PT, 1), acts(PX, 1), acts(PU, 2)],
        );
        assert_ok(&bed, &["t", "x", "u"]);
    }

    /// (b) the device deleted ("device gone"), then made again with the
    /// same name and address ("device replaced").
    #[test]
    fn drift_device_deleted_and_recreated() {
        if !root_or_skip("drift_device_deleted_and_recreated") {
            return;
        }
        let bed = Testbed::new(Family::V4);
        let f = file(&bed);
        bed.emptcp(&["apply", &f]).expect_ok();
        assert_wire(&bed, "applied", &[acts(PT, 1), acts(PX, 1), acts(PU, 2)]);
        bed.delete_link(1);
        for n in ["t", "x"] {
            assert_not_ok(&bed, n, "device gone");
        }
        assert_ok(&bed, &["u"]);
        bed.recreate_link(1);
        assert_wire(
            &bed,
            "link 1 made again",
            &[passes(PT, 1), passes(PX, 1), acts(PU, 2)],
        );
        for n in ["t", "x"] {
            assert_not_ok(&bed, n, "device replaced");
        }
        assert_ok(&bed, &["u"]);
        repair(&bed, &f);
        assert_wire(
            &bed,
            "after the repair",
            &[acts(PT, 1), acts(PX, 1), acts(PU, 2)],
        );
        assert_ok(&bed, &["t", "x", "u"]);
    }

    /// (c) the namespace of two chains deleted ("netns gone"): apply
    /// fails naming it until it is made again, then repairs.
    #[test]
    fn drift_netns_deleted() {
        if !root_or_skip("drift_netns_deleted") {
            return;
        }
        let mut bed = Testbed::new(Family::V4);
        let c = bed.extra_netns("C");
        let (x3a, x3c) = (bed.dev_name("x3a"), bed.dev_name("x3c"));
        let link3 = |bed: &Testbed| {
            bed.add_veth(&bed.a, &x3a, "10.3.0.1/24", &c, &x3c, "10.3.0.2/24");
        };
        link3(&bed);
        let (p1, p2) = (24011u16, 24012u16);
        let chain = |name: &str, hook: &str, port: u16| {
            format!(
                "[[chain]]\nname = \"{name}\"\ndev = \"{x3c}\"\nhook = \"{hook}\"\nnetns = \"{c}\"\n  \
                 [[chain.select]]\n  kind = \"port\"\n  dport = {port}\n  [[chain.act]]\n  kind = \"drop\"\n"
            )
        };
        let text = format!(
            "{}\n{}\n{}",
            chain("n1", "tc-ingress", p1),
            chain("n2", "xdp", p2),
            drop_chain(&bed, "u", U, PU)
        );
        let f = bed.policy("drift-ns", &text).to_string_lossy().into_owned();
        let to_c = |p: u16| std::net::SocketAddr::new("10.3.0.2".parse().unwrap(), p);
        let wire_c = |bed: &Testbed| probe_from(&bed.a, &[to_c(p1), to_c(p2)], PROBE_TIMEOUT);
        bed.emptcp(&["apply", &f]).expect_ok();
        assert_eq!(
            wire_c(&bed),
            vec![Verdict::Dropped, Verdict::Dropped],
            "n1, n2 act in {c}"
        );
        assert_wire(&bed, "u applied", &[acts(PU, 2)]);

        bed.delete_netns(&c);
        for n in ["n1", "n2"] {
            assert_not_ok(&bed, n, "netns gone");
        }
        assert_ok(&bed, &["u"]);
        let o = bed.emptcp(&["apply", &f]);
        let lines = o.stderr_lines();
        assert!(
            !o.ok()
                && lines.len() == 1
                && lines[0].starts_with("emptcp: ")
                && lines[0].contains(&c),
            "apply with {c} gone: must fail in one line naming it: {:?} stdout {:?} stderr {:?}",
            o.code,
            o.stdout,
            o.stderr
        );
        eprintln!("apply with the namespace gone: {}", lines[0]);
        assert_wire(&bed, "after the failed apply", &[acts(PU, 2)]);

        bed.remake_netns(&c);
        link3(&bed);
        assert_eq!(
            wire_c(&bed),
            vec![Verdict::Passed, Verdict::Passed],
            "{c} made again: nothing in it yet"
        );
        repair(&bed, &f);
        assert_eq!(
            wire_c(&bed),
            vec![Verdict::Dropped, Verdict::Dropped],
            "n1, n2 act again in {c}\n{}",
            show_text(&bed)
        );
        assert_wire(&bed, "u after the repair", &[acts(PU, 2)]);
        assert_ok(&bed, &["n1", "n2", "u"]);
    }
}

// ===================================================================
mod state_dir {
    //! `--state-dir` pointing where emptcp must not work: each command
    //! exits 1 with one line `emptcp: ...` and touches nothing (entries,
    //! contents, modes, owners; no xdp/tc subdirectories; nothing
    //! attached).
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    /// Removes what a case made, also when the test panics.
    struct Cleanup(Vec<PathBuf>);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in self.0.iter().rev() {
                match std::fs::symlink_metadata(p) {
                    Ok(m) if m.is_dir() => {
                        let _ = std::fs::remove_dir_all(p);
                    }
                    Ok(_) => {
                        let _ = std::fs::remove_file(p);
                    }
                    Err(_) => {}
                }
            }
        }
    }

    fn on_bpffs(p: &Path) -> bool {
        nix::sys::statfs::statfs(p)
            .map(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
            .unwrap_or(false)
    }

    /// A pinned one-entry array map holding 7 (a foreign pin on bpffs).
    fn sentinel_pin(path: &Path) {
        let p = path.to_str().unwrap();
        sh(
            "bpftool",
            &[
                "map",
                "create",
                p,
                "type",
                "array",
                "key",
                "4",
                "value",
                "4",
                "entries",
                "1",
                "name",
                "rel_sentinel",
            ],
        );
        sh(
            "bpftool",
            &[
                "map", "update", "pinned", p, "key", "0", "0", "0", "0", "value", "7", "0", "0",
                "0",
            ],
        );
    }

    /// Everything under `root` (root included, symlinks not followed):
    /// path, type, mode, owner, link target, and the content (files) or
    /// map id and value (bpffs pins).
    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                out.push(format!("{} missing", p.display()));
                continue;
            };
            let ft = m.file_type();
            let mut line = format!(
                "{} {} {:o} {}:{}",
                p.display(),
                if ft.is_dir() {
                    "dir"
                } else if ft.is_symlink() {
                    "symlink"
                } else {
                    "file"
                },
                m.permissions().mode() & 0o7777,
                m.uid(),
                m.gid()
            );
            if ft.is_symlink() {
                line += &format!(" -> {:?}", std::fs::read_link(&p).ok());
            } else if ft.is_dir() {
                for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                    stack.push(e.path());
                }
            } else if on_bpffs(&p) {
                line += &format!(" {}", pin_id(&p));
            } else {
                line += &format!(" {:?}", std::fs::read(&p).ok());
            }
            out.push(line);
        }
        out.sort();
        out
    }

    /// What a bpffs pin holds: "map 12", "prog 40", "link 7"; for our
    /// sentinel maps also the value.
    fn pin_id(p: &Path) -> String {
        let ps = p.to_str().unwrap();
        for kind in ["map", "prog", "link"] {
            let o = run("bpftool", &["-j", kind, "show", "pinned", ps]);
            let Ok(v) = serde_json::from_str::<Value>(&o.stdout) else {
                continue;
            };
            if !o.ok() || v["id"].is_null() {
                continue;
            }
            let mut d = format!("{kind} {}", v["id"]);
            if v["name"] == "rel_sentinel" {
                let look = run(
                    "bpftool",
                    &[
                        "-j", "map", "lookup", "pinned", ps, "key", "0", "0", "0", "0",
                    ],
                );
                let lv: Value = serde_json::from_str(&look.stdout).unwrap_or(Value::Null);
                d += &format!(" value {}", lv["value"]);
            }
            return d;
        }
        "unreadable pin".into()
    }

    /// The lines of `after` that differ from `before`, shortly.
    fn diff(before: &[String], after: &[String]) -> Option<String> {
        if before == after {
            return None;
        }
        let short = |v: Vec<&String>| {
            let n = v.len();
            let mut s: Vec<String> = v.into_iter().take(6).cloned().collect();
            if n > 6 {
                s.push(format!("... {} more", n - 6));
            }
            s
        };
        let gone = short(before.iter().filter(|l| !after.contains(l)).collect());
        let new = short(after.iter().filter(|l| !before.contains(l)).collect());
        Some(format!("touched: was {gone:?}, now {new:?}"))
    }

    /// One fixture: the `--state-dir` argument and the trees that must
    /// stay as they are.
    struct Fixture {
        arg: PathBuf,
        roots: Vec<PathBuf>,
        _cleanup: Cleanup,
    }

    fn bpffs_dir(what: &str) -> PathBuf {
        let d = PathBuf::from("/sys/fs/bpf").join(scratch_name(what));
        std::fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        d
    }

    fn fixture(case: &str, bed: &Testbed) -> Fixture {
        let scratch_in = |base: &Path| {
            let d = base.join(scratch_name("-sd"));
            std::fs::create_dir(&d).expect("mkdir");
            std::fs::write(d.join("sentinel"), "keep me\n").expect("sentinel");
            std::fs::set_permissions(d.join("sentinel"), PermissionsExt::from_mode(0o640))
                .expect("chmod");
            std::fs::set_permissions(&d, PermissionsExt::from_mode(0o755)).expect("chmod");
            d
        };
        match case {
            "ordinary dir on tmpfs" | "ordinary dir on ext4" => {
                let base = if case.ends_with("tmpfs") {
                    PathBuf::from("/dev/shm")
                } else {
                    bed.tmp.clone()
                };
                let d = scratch_in(&base);
                Fixture {
                    arg: d.clone(),
                    roots: vec![d.clone()],
                    _cleanup: Cleanup(vec![d]),
                }
            }
            "plain file" => {
                let d = scratch_in(&bed.tmp);
                Fixture {
                    arg: d.join("sentinel"),
                    roots: vec![d.clone()],
                    _cleanup: Cleanup(vec![d]),
                }
            }
            "symlink to a fresh bpffs dir" => {
                let t = bpffs_dir("-t");
                let l = PathBuf::from("/sys/fs/bpf").join(scratch_name("-l"));
                std::os::unix::fs::symlink(&t, &l).expect("symlink");
                Fixture {
                    arg: l.clone(),
                    roots: vec![t.clone(), l.clone()],
                    _cleanup: Cleanup(vec![t, l]),
                }
            }
            "state dir whose parent is a symlink" => {
                let t = bpffs_dir("-p");
                sentinel_pin(&t.join("sentinel"));
                let l = bed.tmp.join(scratch_name("-pl"));
                std::os::unix::fs::symlink(&t, &l).expect("symlink");
                Fixture {
                    arg: l.join("state"),
                    roots: vec![t.clone(), l.clone()],
                    _cleanup: Cleanup(vec![t, l]),
                }
            }
            "bpffs dir owned by uid 1000, mode 0777" => {
                let d = bpffs_dir("-u");
                sentinel_pin(&d.join("sentinel"));
                std::os::unix::fs::chown(&d, Some(1000), Some(1000)).expect("chown");
                std::fs::set_permissions(&d, PermissionsExt::from_mode(0o777)).expect("chmod");
                Fixture {
                    arg: d.clone(),
                    roots: vec![d.clone()],
                    _cleanup: Cleanup(vec![d]),
                }
            }
            "non-empty bpffs dir of another tool" => {
                let d = bpffs_dir("-f");
                std::fs::set_permissions(&d, PermissionsExt::from_mode(0o700)).expect("chmod");
                sentinel_pin(&d.join("sentinel"));
                std::fs::create_dir(d.join("other")).expect("mkdir");
                sentinel_pin(&d.join("other").join("pin"));
                Fixture {
                    arg: d.clone(),
                    roots: vec![d.clone()],
                    _cleanup: Cleanup(vec![d]),
                }
            }
            _ => panic!("unknown case {case}"),
        }
    }

    /// Checks one command's answer: exit 1, one line `emptcp: ...`.
    fn refused(o: &Out) -> Vec<String> {
        let mut bad = Vec::new();
        if o.code != Some(1) {
            bad.push(format!(
                "exit {:?} (stdout {:?})",
                o.code,
                o.stdout.trim().chars().take(120).collect::<String>()
            ));
        }
        let lines = o.stderr_lines();
        if lines.len() != 1 || !lines[0].starts_with("emptcp: ") {
            bad.push(format!("stderr is not one `emptcp: ` line: {:?}", o.stderr));
        }
        bad
    }

    const LIVE: Point = Point::new(Side::B, 1, "tc-ingress");
    const INTRUDER: Point = Point::new(Side::A, 2, "tc-egress");
    const P_LIVE: u16 = 25001;
    const P_INTRUDER: u16 = 25002;

    #[test]
    fn state_dir_safety() {
        if !root_or_skip("state_dir_safety") {
            return;
        }
        let bed = Testbed::new(Family::V4);
        let intruder = policy_of(
            &bed,
            "intruder",
            &[("intruder".into(), INTRUDER, P_INTRUDER)],
        );
        let cmds: [Vec<&str>; 3] = [
            vec!["detach", "--all"],
            vec!["apply", intruder.as_str()],
            vec!["show"],
        ];
        let mut failures: Vec<String> = Vec::new();
        let mut checked = 0;
        // the intruder chain of `apply` must not be attached (checked
        // right after the command); after the fixture is gone it must be
        // off for sure, or later checks would see it
        let intruder_on = |bed: &Testbed| -> Vec<String> {
            let mut bad = Vec::new();
            if tcx_count(&bed.a, &bed.x2a, true) != 0 {
                bad.push(format!("a tcx program was attached to {}", bed.x2a));
            }
            bad.extend(judge(bed, &[passes(P_INTRUDER, 2)]).mismatches);
            bad
        };
        let intruder_gone = |bed: &Testbed| {
            let gone = wait_for(Duration::from_secs(3), || {
                (tcx_count(&bed.a, &bed.x2a, true) == 0).then_some(())
            });
            assert!(
                gone.is_some(),
                "the intruder chain stays attached to {} after its pins were removed",
                bed.x2a
            );
        };
        for case in [
            "ordinary dir on tmpfs",
            "ordinary dir on ext4",
            "plain file",
            "symlink to a fresh bpffs dir",
            "state dir whose parent is a symlink",
            "bpffs dir owned by uid 1000, mode 0777",
            "non-empty bpffs dir of another tool",
        ] {
            for cmd in &cmds {
                let fx = fixture(case, &bed);
                let before: Vec<String> = fx.roots.iter().flat_map(|r| listing(r)).collect();
                let o = emptcp_in(&fx.arg, cmd);
                let mut bad = refused(&o);
                let after: Vec<String> = fx.roots.iter().flat_map(|r| listing(r)).collect();
                bad.extend(diff(&before, &after));
                bad.extend(intruder_on(&bed));
                drop(fx);
                intruder_gone(&bed);
                checked += 1;
                let line = format!("{case}: `{}`", cmd.join(" "));
                eprintln!(
                    "{line}: {}",
                    if bad.is_empty() {
                        o.stderr.trim().to_owned()
                    } else {
                        bad.join("; ")
                    }
                );
                if !bad.is_empty() {
                    failures.push(format!("{line}: {}", bad.join("; ")));
                }
            }
        }

        // the bpffs mount root itself, in a private mount namespace with a
        // bpffs of its own: the machine's /sys/fs/bpf holds other people's
        // pins, which today's `detach --all` would remove
        for cmd in [&cmds[0], &cmds[2]] {
            let out = bed.tmp.join(scratch_name("-root"));
            std::fs::create_dir(&out).expect("mkdir");
            let script = format!(
                r#"set -u
mount -t bpf bpf /sys/fs/bpf || exit 90
bpftool map create /sys/fs/bpf/sentinel type array key 4 value 4 entries 1 name rel_sentinel
bpftool map update pinned /sys/fs/bpf/sentinel key 0 0 0 0 value 7 0 0 0
mkdir -m 0755 /sys/fs/bpf/othertool
bpftool map create /sys/fs/bpf/othertool/m type array key 4 value 4 entries 1 name rel_other
list() {{
	find /sys/fs/bpf -printf '%p %y %m %U:%G %l\n' | sort
	for f in /sys/fs/bpf/sentinel /sys/fs/bpf/othertool/m; do
		echo "$f $(bpftool -j map show pinned $f 2>&1 | head -c 60) $(bpftool -j map lookup pinned $f key 0 0 0 0 2>&1)"
	done
}}
list > {o}/before
EMPTCP_STATE_DIR=/sys/fs/bpf {e} --state-dir /sys/fs/bpf {c} > {o}/stdout 2> {o}/stderr
echo $? > {o}/rc
list > {o}/after
"#,
                o = out.display(),
                e = EMPTCP,
                c = cmd.join(" ")
            );
            let r = run(
                "unshare",
                &["--mount", "--propagation", "private", "bash", "-c", &script],
            );
            let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
            let line = format!("the bpffs mount root /sys/fs/bpf: `{}`", cmd.join(" "));
            let mut bad = Vec::new();
            if !r.ok() {
                bad.push(format!("private bpffs set-up failed: {}", r.stderr.trim()));
            } else {
                let o = Out {
                    code: read("rc").trim().parse().ok(),
                    stdout: read("stdout"),
                    stderr: read("stderr"),
                    cmdline: line.clone(),
                };
                bad.extend(refused(&o));
                let (b, a) = (read("before"), read("after"));
                let lines = |t: &str| t.lines().map(str::to_owned).collect::<Vec<_>>();
                bad.extend(diff(&lines(&b), &lines(&a)).map(|d| format!("/sys/fs/bpf {d}")));
                if bad.is_empty() {
                    eprintln!("{line}: {}", o.stderr.trim());
                }
            }
            let _ = std::fs::remove_dir_all(&out);
            checked += 1;
            if !bad.is_empty() {
                eprintln!("{line}: {}", bad.join("; "));
                failures.push(format!("{line}: {}", bad.join("; ")));
            }
        }

        // A/tc of a live state dir A
        let live = policy_of(&bed, "live", &[("live".into(), LIVE, P_LIVE)]);
        let a_dir = bed.state_dir.clone();
        for cmd in &cmds {
            let _ = bed.emptcp(&["detach", "--all"]);
            let _ = std::fs::remove_dir_all(&a_dir);
            bed.emptcp(&["apply", &live]).expect_ok();
            let before = listing(&a_dir);
            let o = emptcp_in(&a_dir.join("tc"), cmd);
            let mut bad = refused(&o);
            let after = listing(&a_dir);
            bad.extend(diff(&before, &after).map(|d| format!("A {d}")));
            bad.extend(judge(&bed, &[acts(P_LIVE, 1)]).mismatches);
            match try_listed(&bed) {
                Ok(l) if l.iter().any(|c| c.name == "live") => {}
                Ok(l) => bad.push(format!("`--state-dir A show` lists {l:?}, not live")),
                Err(e) => bad.push(e),
            }
            bad.extend(intruder_on(&bed));
            let _ = bed.emptcp(&["detach", "--all"]);
            let _ = std::fs::remove_dir_all(&a_dir);
            intruder_gone(&bed);
            checked += 1;
            let line = format!("A/tc of a live state dir A: `{}`", cmd.join(" "));
            eprintln!(
                "{line}: {}",
                if bad.is_empty() {
                    o.stderr.trim().to_owned()
                } else {
                    bad.join("; ")
                }
            );
            if !bad.is_empty() {
                failures.push(format!("{line}: {}", bad.join("; ")));
            }
        }
        eprintln!(
            "state_dir_safety: {checked} case x command checks, {} failed",
            failures.len()
        );
        assert!(
            failures.is_empty(),
            "state_dir_safety: {} of {checked} checks failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
}

// ===================================================================
mod too_large {
    //! A policy whose state document does not fit the 1 MiB state map:
    //! `apply` must fail and leave nothing acting, nothing attached, and
    //! `show` with no chains.
    use super::*;
    use std::path::{Path, PathBuf};

    /// Custom stages per chain (each with a ~4000-byte object path) and
    /// extra devices (veth pairs in `a`) that hold more chains: 24 stages per chain stay well
    /// inside a walk of 33 tail calls; 18 chains x 22 paths x ~4 KB is
    /// ~1.6 MB of state.
    const CUSTOM_PER_CHAIN: usize = 22;
    const DUMMIES: usize = 2;
    const PATH_LEN: usize = 4000;

    fn build_examples() -> PathBuf {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let o = run(
            root.join("scripts/build-example").to_str().unwrap(),
            &[out.to_str().unwrap()],
        );
        assert!(o.ok(), "scripts/build-example failed: {}", o.stderr);
        out
    }

    /// `dir/././…/min_payload.FAM.o`, about PATH_LEN bytes (one file).
    fn long_path(dir: &Path, fam: &str) -> String {
        let head = format!("{}/", dir.display());
        let tail = format!("min_payload.{fam}.o");
        let n = (PATH_LEN - head.len() - tail.len()) / 2;
        format!("{head}{}{tail}", "./".repeat(n))
    }

    fn chain(
        name: &str,
        dev: &str,
        hook: &str,
        ns: &str,
        key: &str,
        port: u16,
        obj: &str,
    ) -> String {
        let mut t = format!(
            "[[chain]]\nname = \"{name}\"\ndev = \"{dev}\"\nhook = \"{hook}\"\nnetns = \"{ns}\"\n  \
             [[chain.select]]\n  kind = \"port\"\n  {key} = {port}\n"
        );
        for _ in 0..CUSTOM_PER_CHAIN {
            t += &format!(
                "  [[chain.select]]\n  kind = \"custom\"\n  object = \"{obj}\"\n  \
                 program = \"min_payload\"\n  params = [0]\n"
            );
        }
        t + "  [[chain.act]]\n  kind = \"drop\"\n"
    }

    #[test]
    fn state_too_large() {
        if !root_or_skip("state_too_large") {
            return;
        }
        let bed = Testbed::new(Family::V4);
        let start = Instant::now();
        let ex = build_examples();
        let obj = |hook: &str| long_path(&ex, if hook == "xdp" { "xdp" } else { "tc" });
        // one such chain alone acts (so "nothing acts" below means something)
        let one = ALL_POINTS[4];
        let t = chain(
            "alone",
            one.dev(&bed),
            one.hook,
            one.ns(&bed),
            one.port_key(),
            26100,
            &obj(one.hook),
        );
        let f = bed.policy("alone", &t).to_string_lossy().into_owned();
        bed.emptcp(&["apply", &f]).expect_ok();
        assert_wire(&bed, "one long chain alone", &[acts(26100, one.link)]);
        bed.emptcp(&["detach", "--all"]).expect_ok();

        let mut text = String::new();
        let mut expects = Vec::new();
        for (i, p) in ALL_POINTS.iter().enumerate() {
            let port = 26000 + i as u16;
            text += &chain(
                &format!("big{i}"),
                p.dev(&bed),
                p.hook,
                p.ns(&bed),
                p.port_key(),
                port,
                &obj(p.hook),
            );
            expects.push(passes(port, 1));
            expects.push(passes(port, 2));
        }
        let mut dummies = Vec::new();
        for k in 0..DUMMIES {
            let d = bed.dev_name(&format!("d{k}"));
            // a veth pair inside `a` (this kernel has no dummy driver)
            let peer = bed.dev_name(&format!("d{k}p"));
            sh(
                "ip",
                &[
                    "-n", &bed.a, "link", "add", &d, "type", "veth", "peer", "name", &peer,
                ],
            );
            for x in [&d, &peer] {
                sh("ip", &["-n", &bed.a, "link", "set", x, "up"]);
            }
            for hook in ["xdp", "tc-ingress", "tc-egress"] {
                text += &chain(
                    &format!("dummy{k}-{hook}"),
                    &d,
                    hook,
                    &bed.a,
                    "dport",
                    26200,
                    &obj(hook),
                );
            }
            dummies.push(d);
        }
        let f = bed
            .policy("too-large", &text)
            .to_string_lossy()
            .into_owned();
        let chains = ALL_POINTS.len() + 3 * DUMMIES;
        let t0 = Instant::now();
        let o = bed.emptcp(&["apply", &f]);
        let took = t0.elapsed();
        let lines = o.stderr_lines();
        eprintln!(
            "apply of {chains} chains x {} stages ({} KB of object paths): {:?} in {:.1} s: {}",
            CUSTOM_PER_CHAIN + 2,
            chains * CUSTOM_PER_CHAIN * PATH_LEN / 1024,
            o.code,
            took.as_secs_f64(),
            lines.last().unwrap_or(&"")
        );
        assert!(
            o.code == Some(1) && lines.len() == 1 && lines[0].starts_with("emptcp: "),
            "apply of a state larger than the map must fail in one line: {:?}\nstdout {}\nstderr {}",
            o.code,
            o.stdout,
            o.stderr
        );
        let j = judge(&bed, &expects);
        assert!(
            j.ok(),
            "after the failed apply chains act on the wire:\n  {}\n{}",
            j.mismatches.join("\n  "),
            show_text(&bed)
        );
        for (ns, dev) in [
            (&bed.a, &bed.x1a),
            (&bed.a, &bed.x2a),
            (&bed.b, &bed.x1b),
            (&bed.b, &bed.x2b),
        ]
        .into_iter()
        .chain(dummies.iter().map(|d| (&bed.a, d)))
        {
            assert_nothing_attached(ns, dev);
        }
        let s = bed.emptcp(&["show"]).expect_ok();
        assert_eq!(s.stdout.trim(), "no chains", "show after the failed apply");
        assert!(
            listed(&bed).is_empty(),
            "show --json after the failed apply"
        );
        eprintln!("state_too_large: {:.1} s", start.elapsed().as_secs_f64());
    }
}

// ===================================================================
mod long_walks {
    //! The layouts the tail-call walk cut short (after 33 stages a packet
    //! went on untouched while `apply` said "applied"): 200 chains on one
    //! attach point, one per port, and one chain of 64 stages, judged on
    //! the wire. Both run as one walk program.
    use super::*;

    const P: Point = Point::new(Side::B, 1, "tc-ingress");
    const PX: Point = Point::new(Side::B, 2, "xdp");
    const BASE: u16 = 24000;

    #[test]
    fn two_hundred_chains_on_one_hook_act() {
        if !root_or_skip("two_hundred_chains_on_one_hook_act") {
            return;
        }
        let bed = Testbed::new(Family::V4);
        let chains: Vec<(String, Point, u16)> = (0..200u16)
            .map(|i| (format!("t{i}"), P, BASE + i))
            .collect();
        let p = policy_of(&bed, "two-hundred", &chains);
        let o = bed.emptcp(&["apply", &p]).expect_ok();
        assert!(o.stdout.contains("applied t0, t1"), "{}", o.stdout);
        // every chain's port dropped, among them the first, the 34th and
        // the last; a port no chain names passes
        let mut want: Vec<Expect> = (0..200u16).map(|i| acts(BASE + i, 1)).collect();
        want.push(passes(BASE + 200, 1));
        assert_wire(&bed, "200 chains of port + drop on one hook", &want);
        let show = show_json(&bed);
        let first = &show.as_array().expect("array")[0];
        assert_eq!(first["runtime"], "walk", "{first}");
        assert_eq!(first["walk"], 400, "{first}");
        assert_eq!(first["walk_max"], emptcp::capacity::MAX_WALK, "{first}");
        eprintln!("200 chains on one hook: all 200 ports dropped on the wire");
    }

    #[test]
    fn a_chain_of_64_stages_acts() {
        if !root_or_skip("a_chain_of_64_stages_acts") {
            return;
        }
        let bed = Testbed::new(Family::V4);
        let port = BASE + 500;
        let mut text = format!(
            "[[chain]]\nname = \"long\"\ndev = \"{}\"\nhook = \"{}\"\nnetns = \"{}\"\n",
            PX.dev(&bed),
            PX.hook,
            PX.ns(&bed)
        );
        // 63 selectors that all hold for the probe, then the drop
        for _ in 0..63 {
            text += &format!("  [[chain.select]]\n  kind = \"port\"\n  dport = {port}\n");
        }
        text += "  [[chain.act]]\n  kind = \"drop\"\n";
        let p = bed.policy("long", &text);
        bed.emptcp(&["apply", &p.to_string_lossy()]).expect_ok();
        assert_wire(
            &bed,
            "one chain of 63 port selectors and a drop",
            &[acts(port, 2), passes(port + 1, 2)],
        );
        eprintln!("a chain of 64 stages: its drop acts on the wire");
    }

    /// IPv6 through the loop walk, which compares IPv6 addresses inline
    /// (walk.bpf.c): 12 chains of ip_pair or dst (prefix) + port + drop,
    /// 36 stages on one hook. The chains whose addresses are the probes'
    /// drop them; one whose source differs from the client's only in the
    /// last word, one of IPv4 addresses and one whose prefix is another
    /// network let theirs pass.
    #[test]
    fn ipv6_selectors_act_in_a_long_walk() {
        if !root_or_skip("ipv6_selectors_act_in_a_long_walk") {
            return;
        }
        let bed = Testbed::new(Family::V6);
        let base = BASE + 2000;
        let (client, server) = (bed.client_addr1(), server_addr_on(&bed, 1));
        // (selector, selects the probes)
        let mut sels: Vec<(String, bool)> = Vec::new();
        for _ in 0..3 {
            sels.push((
                format!("kind = \"ip_pair\"\nsrc = \"{client}\"\ndst = \"{server}\""),
                true,
            ));
            sels.push((
                format!("kind = \"ip_pair\"\nsrc = \"{server}\"\nbidir = true"),
                true,
            ));
            sels.push(("kind = \"dst\"\naddr = \"fd00:1::/64\"".into(), true));
        }
        sels.push(("kind = \"ip_pair\"\nsrc = \"fd00:1::99\"".into(), false));
        sels.push((
            "kind = \"ip_pair\"\nsrc = \"10.1.0.1\"\ndst = \"10.1.0.2\"".into(),
            false,
        ));
        sels.push(("kind = \"dst\"\naddr = \"fd00:2::/64\"".into(), false));
        let text: String = sels
            .iter()
            .enumerate()
            .map(|(i, (sel, _))| {
                format!(
                    "[[chain]]\nname = \"v6-{i}\"\ndev = \"{}\"\nhook = \"{}\"\nnetns = \"{}\"\n  \
                     [[chain.select]]\n  {}\n  [[chain.select]]\n  kind = \"port\"\n  {} = {}\n  \
                     [[chain.act]]\n  kind = \"drop\"\n",
                    P.dev(&bed),
                    P.hook,
                    P.ns(&bed),
                    sel.replace('\n', "\n  "),
                    P.port_key(),
                    base + i as u16
                )
            })
            .collect();
        let p = bed.policy("v6-long", &text);
        bed.emptcp(&["apply", &p.to_string_lossy()]).expect_ok();
        let show = show_json(&bed);
        let first = &show.as_array().expect("array")[0];
        assert_eq!(first["runtime"], "walk", "{first}");
        assert_eq!(first["walk"], 36, "{first}");
        let want: Vec<Expect> = sels
            .iter()
            .enumerate()
            .map(|(i, (_, hit))| {
                let port = base + i as u16;
                if *hit {
                    acts(port, 1)
                } else {
                    passes(port, 1)
                }
            })
            .collect();
        assert_wire(&bed, "12 IPv6 chains in one loop walk", &want);
    }

    /// The stages of chain `name` in `show --json`: (slot, hit counter).
    fn stages_of(show: &Value, name: &str) -> Vec<(u64, u64)> {
        let c = show
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no chain {name} in {show}"));
        c["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|s| {
                (
                    s["slot"].as_u64().unwrap(),
                    s["counters"]["hit"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    #[test]
    fn replacing_one_chain_of_a_hundred_keeps_the_others() {
        if !root_or_skip("replacing_one_chain_of_a_hundred_keeps_the_others") {
            return;
        }
        let bed = Testbed::new(Family::V4);
        let base = BASE + 1000;
        let mut chains: Vec<(String, Point, u16)> = (0..100u16)
            .map(|i| (format!("r{i}"), P, base + i))
            .collect();
        let p = policy_of(&bed, "hundred", &chains);
        bed.emptcp(&["apply", &p]).expect_ok();
        assert_wire(&bed, "100 chains", &[acts(base, 1), acts(base + 99, 1)]);
        let before = stages_of(&show_json(&bed), "r0");
        assert!(before[0].1 > 0, "r0's selector counted nothing: {before:?}");
        // six replacements of r50 in a row: 6 x 200 fresh slots would
        // overrun the 767 a family has and wait for retired ones
        for k in 1..=6u16 {
            chains[50].2 = base + 200 + k;
            let one = policy_of(&bed, "one", &chains[50..51]);
            bed.emptcp(&["apply", &one]).expect_ok();
        }
        assert_wire(
            &bed,
            "r50 replaced six times",
            &[
                acts(base, 1),
                acts(base + 206, 1),
                passes(base + 50, 1),
                passes(base + 205, 1),
            ],
        );
        let after = stages_of(&show_json(&bed), "r0");
        // r0 kept its slots, and its counters went on counting
        assert_eq!(
            after.iter().map(|s| s.0).collect::<Vec<_>>(),
            before.iter().map(|s| s.0).collect::<Vec<_>>(),
            "r0's slots changed"
        );
        assert!(
            after[0].1 > before[0].1,
            "r0's hits: {before:?} then {after:?}"
        );
        let r50 = stages_of(&show_json(&bed), "r50");
        assert!(r50[0].1 > 0, "r50's new selector counted nothing: {r50:?}");
        eprintln!(
            "r50 replaced 6 times among 100: r0 kept slots {:?}, hits {} -> {}",
            after.iter().map(|s| s.0).collect::<Vec<_>>(),
            before[0].1,
            after[0].1
        );
    }

    /// Applying the same file again, as a controller or `emptcp run`'s
    /// reload does, loads and swaps nothing: the point keeps its
    /// generation and its program on the hook. One chain changed in the
    /// file rewrites its point once, and acts.
    #[test]
    fn applying_the_same_file_again_loads_nothing() {
        if !root_or_skip("applying_the_same_file_again_loads_nothing") {
            return;
        }
        let bed = Testbed::new(Family::V4);
        let base = BASE + 1400;
        let mut chains: Vec<(String, Point, u16)> =
            (0..20u16).map(|i| (format!("s{i}"), P, base + i)).collect();
        let p = policy_of(&bed, "twenty", &chains);
        bed.emptcp(&["apply", &p]).expect_ok();
        let gen = |bed: &Testbed| show_json(bed)[0]["generation"].as_u64();
        // the programs the state holds: links' and pinned ones, slots'
        let progs = |bed: &Testbed| owned_ids(&bed.state_dir).progs;
        let (g1, h1) = (gen(&bed), progs(&bed));
        assert!(!h1.is_empty(), "no programs in the state");
        for _ in 0..2 {
            let o = bed.emptcp(&["apply", &p]).expect_ok();
            assert!(o.stdout.contains("applied s0, s1"), "{}", o.stdout);
        }
        assert_eq!(gen(&bed), g1, "the same file again rewrote the point");
        assert_eq!(progs(&bed), h1, "the same file again loaded programs");
        chains[7].2 = base + 100;
        let p2 = policy_of(&bed, "changed", &chains);
        bed.emptcp(&["apply", &p2]).expect_ok();
        assert_eq!(gen(&bed), g1.map(|g| g + 1), "one chain changed");
        assert_ne!(progs(&bed), h1, "one chain changed: the same programs");
        assert_wire(
            &bed,
            "s7 changed among 20",
            &[acts(base, 1), acts(base + 100, 1), passes(base + 7, 1)],
        );
    }
}
