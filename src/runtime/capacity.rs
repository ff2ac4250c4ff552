//! What a layout of chains may hold, checked before anything is loaded:
//! the limits `apply` would otherwise hit half way (stage slots and attach
//! points per hook family, the state document's map value) and the one it
//! would not see at all, the kernel's tail-call limit per packet.
//!
//! Pure code: `check` runs it on a policy file alone; `apply` runs it on
//! the layout it is about to switch to (the applied chains merged with the
//! file's), so both refuse the same files, in one line naming the limit.

use std::path::Path;

use crate::abi::{MAX_ATTACH, MAX_SLOTS, STAGE_SLOTS};
use crate::cli::text::bare;
use crate::kernel::attach::{Attachment, LinkHow, XdpMode};
use crate::policy::model::{Chain, Hook, Policy};
use crate::runtime::chain::stage_count;
use crate::runtime::state::{AttachPoint, ChainState, State, STATE_VALUE_SIZE};
use crate::stages::Runs;

/// The most stages the chains of one attach point may have together.
///
/// Every stage of every chain on a point is one tail call (entry -> head
/// slot = first stage -> next stage ...), and the kernel ends a packet's
/// walk after MAX_TAIL_CALL_CNT (33) of them: the bpf_tail_call() of the
/// 34th stage falls through. Measured through the entry program
/// (tests/badinput.rs `walk_limit_is_what_the_kernel_allows`): a chain of
/// 32 `port` selectors and a `drop` drops, one of 33 selectors and a `drop`
/// passes with its drop stage never run; the same on XDP and TC.
pub const MAX_TAIL_CALLS: usize = 33;

/// The most stages one walk program runs (abi.h EMPTCP_MAX_WALK): the
/// limit of an attach point whose stages are all built in.
pub const MAX_WALK: usize = crate::runtime::store::MAX_WALK;

/// What one program may cost the verifier (BPF_COMPLEXITY_LIMIT_INSNS).
pub const VERIFIER_BUDGET: u64 = 1_000_000;

/// Instructions the verifier processes for one stage of `kind` in the
/// short walk, per hook family: measured on Linux 6.18 with `emptcp -v
/// apply` (a walk of 1, 2 and 3 such stages grows by this much each),
/// rounded up. A walk whose stages add up to more than 90 % of the budget
/// runs one program per stage instead, without a futile load first (one
/// that fails still falls back, after the verifier gave up).
pub fn walk_insns(family: &str, kind: &str) -> u64 {
    let [xdp, tc] = crate::stages::find(kind).map_or([2, 2], |e| e.walk_kinsns);
    1000 * if family == "xdp" { xdp } else { tc }
}

/// Stage slots of one hook family: 1 .. STAGE_SLOTS - 1 (slot 0 is the
/// entry's counters, the last MAX_ATTACH slots are head slots).
pub const FAMILY_STAGES: usize = STAGE_SLOTS as usize - 1;

/// Attach points of one hook family: ids 1 .. MAX_ATTACH - 1.
pub const FAMILY_POINTS: usize = MAX_ATTACH as usize - 1;

/// The limits `check` and `apply` enforce, for `emptcp catalog` and the
/// README.
pub fn limits() -> Vec<(&'static str, String)> {
    vec![
        (
            "stages per attach point (one walk program)",
            MAX_WALK.to_string(),
        ),
        (
            "stages per attach point with a stage that parses options or keeps state",
            format!(
                "{} (one walk, within {VERIFIER_BUDGET} verified instructions), else {MAX_TAIL_CALLS} (tail calls)",
                crate::runtime::store::MAX_SHORT_WALK
            ),
        ),
        (
            "stages per attach point with a third-party stage (tail calls)",
            MAX_TAIL_CALLS.to_string(),
        ),
        (
            "stage slots per hook family (xdp, tc)",
            FAMILY_STAGES.to_string(),
        ),
        ("attach points per hook family", FAMILY_POINTS.to_string()),
        (
            "sets and maps per key type",
            (crate::tables::MAX_TABLES - 1).to_string(),
        ),
        (
            "sizes of addr, prefix, pair and subflow tables one walk looks up (more: a program per stage)",
            crate::abi::TAB_BINDS.to_string(),
        ),
        (
            "elements per set or map (default size)",
            format!(
                "{} ({})",
                crate::tables::MAX_SIZE,
                crate::tables::DEFAULT_SIZE
            ),
        ),
        (
            "kernel memory of a set or map, allocated when it is made",
            format!(
                "addr, pair, subflow: 4 x size slots rounded up to a power of two (32, 48, 56 bytes each); port: {} KiB; prefix: per element, and an IPv4 index of 4 x size slots of 32 bytes",
                crate::tables::slots::PORTS as usize * 8 / 1024
            ),
        ),
        (
            "subflows with state (record, rate_limit, sequence relative), each",
            "65,536 slots in sets of 4: a fifth subflow in a set takes a slot over".to_owned(),
        ),
        (
            "state document (chains, stages, tables)",
            format!("{} bytes", STATE_VALUE_SIZE - 4),
        ),
    ]
}

/// One attach point (device x hook x network namespace) of a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointLoad<'a> {
    pub dev: &'a str,
    pub hook: Hook,
    pub netns: Option<&'a str>,
    /// Its chains in run order: name and number of stages.
    pub chains: Vec<(&'a str, usize)>,
    /// What can run its least capable stage (stages `Runs`).
    pub runs: Runs,
    /// What its stages cost the verifier in a walk (walk_insns).
    pub insns: u64,
}

impl PointLoad<'_> {
    fn walk(&self) -> usize {
        self.chains.iter().map(|(_, n)| n).sum()
    }

    /// "veth1 tc-ingress (netns client)", as `apply` reports a point.
    fn label(&self) -> String {
        format!(
            "{} {}{}",
            bare(self.dev),
            self.hook,
            self.netns
                .map(|n| format!(" (netns {})", bare(n)))
                .unwrap_or_default()
        )
    }
}

/// "a, b, c, d, … (10000 chains)": a few names, then how many in all.
fn chain_list(chains: &[(&str, usize)]) -> String {
    const LISTED: usize = 4;
    let names: Vec<String> = chains
        .iter()
        .take(LISTED)
        .map(|(n, _)| bare(n).to_string())
        .collect();
    if chains.len() > LISTED {
        format!("{}, … ({} chains)", names.join(", "), chains.len())
    } else {
        names.join(", ")
    }
}

/// Checks a whole layout, every attach point as it will be after the
/// change (chains already applied and new ones together), against the
/// walk of one packet (MAX_WALK), the stage slots (FAMILY_STAGES) and the
/// attach points (FAMILY_POINTS) of each hook family. Returns the first
/// limit exceeded, as one line.
///
/// `apply` also needs free slots for a new layout while the old one still
/// runs (it swaps, then retires); that transient need is its own check.
pub fn check_layout(points: &[PointLoad<'_>]) -> Result<(), String> {
    for p in points {
        let walk = p.walk();
        let max = crate::runtime::store::walk_limit(p.runs, p.insns);
        let why = if max >= MAX_WALK {
            format!("one walk program runs at most {MAX_WALK}")
        } else if p.runs == Runs::TailCalls || !crate::runtime::store::walk_allowed() {
            format!("the kernel allows {MAX_TAIL_CALLS} tail calls per packet (third-party stages walk by tail calls)")
        } else if max == MAX_TAIL_CALLS && p.insns > VERIFIER_BUDGET * 9 / 10 {
            format!(
                "its stages that parse options or keep state cost the verifier about {} instructions in one walk program, more than it allows ({VERIFIER_BUDGET}), and by tail calls the kernel allows {MAX_TAIL_CALLS} per packet",
                p.insns
            )
        } else {
            format!(
                "stages that parse options or keep state run in a walk of at most {} stages, or by tail calls, which the kernel allows {MAX_TAIL_CALLS} per packet",
                crate::runtime::store::MAX_SHORT_WALK
            )
        };
        if walk > max {
            return Err(format!(
                "{}: chain{} {} need{} a walk of {walk} stages; {why}",
                p.label(),
                if p.chains.len() == 1 { "" } else { "s" },
                chain_list(&p.chains),
                if p.chains.len() == 1 { "s" } else { "" },
            ));
        }
    }
    for family in ["xdp", "tc"] {
        let fam: Vec<&PointLoad> = points
            .iter()
            .filter(|p| p.hook.family() == family)
            .collect();
        if fam.len() > FAMILY_POINTS {
            return Err(format!(
                "{family}: the chains need {} attach points (device x hook x netns); \
                 emptcp has {FAMILY_POINTS} per hook family",
                fam.len()
            ));
        }
        let stages: usize = fam.iter().map(|p| p.walk()).sum();
        if stages > FAMILY_STAGES {
            return Err(format!(
                "{family}: the chains need {stages} stage slots; emptcp has \
                 {FAMILY_STAGES} per hook family"
            ));
        }
    }
    Ok(())
}

/// Checks that a state document fits the state map's value (state.rs).
pub fn check_state(st: &State) -> Result<(), String> {
    let mut n = Counter(0);
    serde_json::to_writer(&mut n, st).map_err(|e| format!("state document: {e}"))?;
    // the map value holds a 4-byte length, then the document
    let max = STATE_VALUE_SIZE as usize - 4;
    if n.0 > max {
        return Err(format!(
            "the chains need a state document of {} bytes; emptcp keeps at most {max}",
            n.0
        ));
    }
    Ok(())
}

/// Counts what serde_json writes.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a chain's stages cost the verifier in a walk (walk_insns).
pub fn chain_insns(c: &Chain) -> u64 {
    crate::runtime::chain::stage_labels(c)
        .iter()
        .map(|k| walk_insns(c.hook.family(), k))
        .sum()
}

/// The attach points of a policy's chains (`netns`: the `-n` default for
/// chains naming none), in the order they first appear.
pub fn policy_points<'a>(policy: &'a Policy, netns: Option<&'a str>) -> Vec<PointLoad<'a>> {
    let mut points: Vec<PointLoad<'a>> = Vec::new();
    for c in &policy.chains {
        let ns = c.netns.as_deref().or(netns);
        let load = (c.name.as_str(), stage_count(c));
        let runs = c.runs();
        let insns = chain_insns(c);
        match points
            .iter_mut()
            .find(|p| p.dev == c.dev && p.hook == c.hook && p.netns == ns)
        {
            Some(p) => {
                p.chains.push(load);
                p.runs = p.runs.max(runs);
                p.insns += insns;
            }
            None => points.push(PointLoad {
                dev: &c.dev,
                hook: c.hook,
                netns: ns,
                chains: vec![load],
                runs,
                insns,
            }),
        }
    }
    points
}

/// The state document a policy alone would leave, with the widest numbers
/// apply could write (ids, slots, inodes), so that a file passing here
/// cannot fail at `sd.save` for size.
fn policy_state(policy: &Policy, points: &[PointLoad<'_>], dir: &Path) -> State {
    let spec = |name: &str| -> &Chain {
        policy
            .chains
            .iter()
            .find(|c| c.name == name)
            .expect("a chain of the policy")
    };
    let st_points = points
        .iter()
        .map(|p| {
            let family = p.hook.family();
            AttachPoint {
                id: MAX_ATTACH - 1,
                netns: p.netns.map(str::to_owned),
                netns_ino: u64::MAX,
                netns_cookie: Some(u64::MAX),
                dev: p.dev.to_owned(),
                ifindex: u32::MAX,
                hook: p.hook,
                xdp_mode: XdpMode::Generic,
                attachment: Attachment::Link {
                    pin: dir
                        .join(family)
                        .join(format!("link-{}", MAX_ATTACH - 1))
                        .display()
                        .to_string(),
                    how: LinkHow::XdpGeneric,
                },
                gen: u32::MAX,
                walk: true,
                walk_slot: u16::MAX,
                hook_walk: true,
                chains: p
                    .chains
                    .iter()
                    .map(|(name, n)| {
                        let mut spec = spec(name).clone();
                        spec.netns = p.netns.map(str::to_owned);
                        let kinds = crate::runtime::chain::stage_labels(&spec);
                        ChainState {
                            id: u16::MAX,
                            spec,
                            slots: vec![MAX_SLOTS - 1; *n],
                            kinds,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    State {
        version: u32::MAX,
        next_chain_id: u16::MAX,
        points: st_points,
        retired: Vec::new(),
        pending: None,
        cleanup: Vec::new(),
        tables: Vec::new(),
    }
}

/// The capacity check of a policy file on its own (`check`, and `apply`
/// before it reads the applied state): its attach points, stage slots and
/// state document. `dir` is the state directory (its path is part of the
/// state document).
pub fn check_policy(policy: &Policy, netns: Option<&str>, dir: &Path) -> Result<(), String> {
    let points = policy_points(policy, netns);
    check_layout(&points)?;
    check_state(&policy_state(policy, &points, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chains(n: usize, stages: usize, dev: impl Fn(usize) -> String) -> String {
        let mut s = String::new();
        for i in 0..n {
            s += &format!(
                "[[chain]]\nname = \"c{i}\"\ndev = \"{}\"\nhook = \"tc-egress\"\n",
                dev(i)
            );
            for _ in 1..stages {
                s += "[[chain.select]]\nkind = \"port\"\ndport = 80\n";
            }
            s += "[[chain.act]]\nkind = \"drop\"\n";
        }
        s
    }

    fn check(text: &str) -> Result<(), String> {
        let p = Policy::parse(text, "p.toml").expect("valid policy");
        check_policy(&p, None, Path::new("/sys/fs/bpf/emptcp"))
    }

    /// The same chains with a third-party stage first: the point walks by
    /// tail calls.
    fn custom_chains(n: usize, stages: usize) -> String {
        chains(n, stages, |_| "veth1".into()).replace(
            "[[chain.select]]\nkind = \"port\"\ndport = 80\n",
            "[[chain.select]]\nkind = \"custom\"\nobject = \"/x.o\"\nprogram = \"p\"\n",
        )
    }

    #[test]
    fn walks_up_to_the_limit_pass() {
        assert_eq!(check(&chains(1, MAX_WALK, |_| "veth1".into())), Ok(()));
        assert_eq!(check(&chains(3, MAX_WALK / 3, |_| "veth1".into())), Ok(()));
        // two devices: two walks (within the slots of a family)
        assert_eq!(check(&chains(2, 300, |i| format!("veth{i}"))), Ok(()));
        assert_eq!(check(&custom_chains(1, MAX_TAIL_CALLS)), Ok(()));
    }

    #[test]
    fn a_walk_past_the_limit_names_the_point_and_chains() {
        let e = check(&chains(1, MAX_WALK + 1, |_| "veth1".into())).unwrap_err();
        assert_eq!(
            e,
            "veth1 tc-egress: chain c0 needs a walk of 513 stages; one walk program runs at \
             most 512"
        );
        let e = check(&custom_chains(1, MAX_TAIL_CALLS + 1)).unwrap_err();
        assert_eq!(
            e,
            "veth1 tc-egress: chain c0 needs a walk of 34 stages; the kernel allows 33 tail \
             calls per packet (third-party stages walk by tail calls)"
        );
        let e = check(&custom_chains(2, 20)).unwrap_err();
        assert_eq!(
            e,
            "veth1 tc-egress: chains c0, c1 need a walk of 40 stages; the kernel allows 33 tail \
             calls per packet (third-party stages walk by tail calls)"
        );
        // a stage that keeps state: the short walk (32), else tail calls (33)
        let stateful = |n, k| {
            chains(n, k, |_| "veth1".into()).replace(
                "[[chain.act]]\nkind = \"drop\"\n",
                "[[chain.act]]\nkind = \"record\"\n",
            )
        };
        assert_eq!(check(&stateful(1, 33)), Ok(()));
        let e = check(&stateful(2, 20)).unwrap_err();
        assert_eq!(
            e,
            "veth1 tc-egress: chains c0, c1 need a walk of 40 stages; stages that parse options \
             or keep state run in a walk of at most 32 stages, or by tail calls, which the kernel \
             allows 33 per packet"
        );
        let p = Policy::parse(&chains(10_000, 1, |_| "veth1".into()), "p.toml").expect("valid");
        let e = check_policy(&p, Some("client"), Path::new("/x")).unwrap_err();
        assert_eq!(
            e,
            "veth1 tc-egress (netns client): chains c0, c1, c2, c3, … (10000 chains) need a \
             walk of 10000 stages; one walk program runs at most 512"
        );
    }

    #[test]
    fn slots_and_points_per_family() {
        // 256 devices, one stage each: one attach point too many
        let e = check(&chains(FAMILY_POINTS + 1, 1, |i| format!("d{i}"))).unwrap_err();
        assert_eq!(
            e,
            "tc: the chains need 256 attach points (device x hook x netns); emptcp has 255 \
             per hook family"
        );
        assert_eq!(
            check(&chains(FAMILY_POINTS, 3, |i| format!("d{i}"))),
            Ok(())
        );
        // 255 points of 4 stages: 1020 stages, 767 slots
        let e = check(&chains(FAMILY_POINTS, 4, |i| format!("d{i}"))).unwrap_err();
        assert_eq!(
            e,
            "tc: the chains need 1020 stage slots; emptcp has 767 per hook family"
        );
    }

    #[test]
    fn state_document_size() {
        // long custom object paths: few stages, a big document
        let path = format!("/{}", "p".repeat(4000));
        let mut s = String::new();
        for i in 0..FAMILY_POINTS {
            s += &format!(
                "[[chain]]\nname = \"c{i}\"\ndev = \"d{i}\"\nhook = \"xdp\"\n\
                 [[chain.act]]\nkind = \"custom\"\nobject = \"{path}\"\nprogram = \"x\"\n"
            );
        }
        let e = check(&s).unwrap_err();
        assert!(
            e.starts_with("the chains need a state document of ")
                && e.ends_with(" bytes; emptcp keeps at most 1048572"),
            "{e}"
        );
        let small = chains(FAMILY_POINTS, 3, |i| format!("d{i}"));
        let p = Policy::parse(&small, "p.toml").expect("valid");
        let points = policy_points(&p, None);
        let st = policy_state(&p, &points, Path::new("/sys/fs/bpf/emptcp"));
        assert_eq!(check_state(&st), Ok(()));
        assert_eq!(st.points.len(), FAMILY_POINTS);
        assert_eq!(st.points[0].chains[0].kinds, ["port", "port", "drop"]);
    }
}
