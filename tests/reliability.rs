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
