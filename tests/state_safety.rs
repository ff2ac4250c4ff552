//! State safety of the CLI: concurrent applies on one state dir, a policy
//! file that fails on its third chain (unknown device; a stage the verifier
//! rejects), a device or a whole namespace deleted under an attached
//! chain, and the modes of the state dir and its pins.
//!
//! Needs root (namespaces, BPF); otherwise prints "SKIPPED: needs root".

mod netlib;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use netlib::*;
use serde_json::Value;

fn chain_text(name: &str, dev: &str, hook: &str, ns: &str, body: &str) -> String {
    format!(
        "[[chain]]\nname = \"{name}\"\ndev = \"{dev}\"\nhook = \"{hook}\"\nnetns = \"{ns}\"\n{body}\n"
    )
}

fn act(kind: &str) -> String {
    format!("  [[chain.act]]\n  kind = \"{kind}\"\n")
}

fn show(bed: &Testbed) -> Value {
    let o = bed.emptcp(&["show", "--json"]).expect_ok();
    serde_json::from_str(&o.stdout).expect("show --json")
}

/// (chain name, stage kinds, generation) of every applied chain.
fn chains(v: &Value) -> Vec<(String, Vec<String>, u64)> {
    let mut out: Vec<(String, Vec<String>, u64)> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("?").to_owned(),
                c["stages"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .map(|x| x["kind"].as_str().unwrap_or("?").to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
                c["generation"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

fn pins(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    fn walk(d: &Path, out: &mut Vec<(PathBuf, u32, bool)>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("stat pin");
            out.push((p.clone(), m.permissions().mode() & 0o7777, m.is_dir()));
            if m.is_dir() {
                walk(&p, out);
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, &mut v);
    v.sort();
    v
}

/// Two `emptcp apply` of different files at the same time on one state
/// dir: both finish (one waits for the other's lock), and the state is
/// entirely one file's, never a mix of the two.
#[test]
fn concurrent_applies_never_mix() {
    if !root_or_skip("concurrent_applies_never_mix") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let (a, x1a, x2a) = (bed.a.as_str(), bed.x1a.as_str(), bed.x2a.as_str());
    let text = |k: &str| {
        format!(
            "{}{}{}",
            chain_text("c1", x1a, "tc-egress", a, &act(k)),
            chain_text("c2", x2a, "tc-egress", a, &act(k)),
            chain_text("c3", x1a, "xdp", a, &act(k)),
        )
    };
    let p1 = bed.policy("p1", &text("record"));
    let p2 = bed.policy("p2", &text("get_connect"));
    let d = bed.state_dir.display().to_string();
    let mut waited = 0;
    let rounds = 6;
    for round in 0..rounds {
        let spawn = |p: &Path| {
            Command::new(EMPTCP)
                .args(["--state-dir", &d, "apply", p.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn emptcp")
        };
        // alternate who starts first
        let (x, y) = if round % 2 == 0 {
            (&p1, &p2)
        } else {
            (&p2, &p1)
        };
        let c1 = spawn(x);
        let c2 = spawn(y);
        let o1 = c1.wait_with_output().expect("wait");
        let o2 = c2.wait_with_output().expect("wait");
        for o in [&o1, &o2] {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "apply failed: {err}");
            if err.contains("waiting for another emptcp") {
                waited += 1;
            }
        }
        let got = chains(&show(&bed));
        let kinds: Vec<&Vec<String>> = got.iter().map(|c| &c.1).collect();
        assert_eq!(got.len(), 3, "three chains: {got:?}");
        assert!(
            kinds.iter().all(|k| *k == kinds[0]),
            "round {round}: a mix of the two files: {got:?}"
        );
        // and what is attached is what the state says
        assert_eq!(tcx_count(a, x1a, true), 1);
        assert_eq!(tcx_count(a, x2a, true), 1);
        assert!(xdp_prog_id(a, x1a).is_some());
    }
    eprintln!(
        "concurrent applies: {rounds} rounds, {waited} applies waited for the lock, never a mix"
    );
}

/// Builds a third-party stage the verifier must reject (an unchecked
/// packet read) for the TC family.
fn verifier_reject_object(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = dir.join("unchecked.bpf.c");
    std::fs::write(
        &src,
        r#"#include "vmlinux.h"
#include <emptcp/emptcp.h>

SEC(EMPTCP_SEC)
int unchecked(emptcp_ctx *ctx)
{
	struct emptcp_run r;
	__u8 *p;

	if (emptcp_stage_begin(ctx, &r) < 0)
		return EMPTCP_PASS;
	/* no bounds check before the read: the verifier refuses this */
	p = emptcp_ctx_data(ctx);
	if (p[100] == 7)
		emptcp_count(r.slot, EMPTCP_CNT_HIT);
	return emptcp_next(ctx, &r);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
"#,
    )
    .expect("write source");
    let obj = dir.join("unchecked.tc.o");
    let clang = ["clang-19", "clang"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect("clang");
    let st = Command::new(clang)
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-DEMPTCP_TC",
        ])
        .arg("-I")
        .arg(root.join("include"))
        .arg("-I")
        .arg(root.join("vmlinux/x86"))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("run clang");
    assert!(st.success(), "building {}", src.display());
    obj
}

/// A file whose third chain cannot be applied (an unknown device; a stage
/// the verifier rejects): nothing of the file is attached, the chains
/// applied before stay exactly as they were (same generation, same
/// programs), and the pins are the same.
#[test]
fn third_chain_invalid_nothing_from_the_file() {
    if !root_or_skip("third_chain_invalid_nothing_from_the_file") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let (a, x1a, x2a) = (bed.a.as_str(), bed.x1a.as_str(), bed.x2a.as_str());
    let keep = bed.policy(
        "keep",
        &format!(
            "{}{}",
            chain_text("keep", x2a, "tc-egress", a, &act("record")),
            chain_text("keep-x", x2a, "xdp", a, &act("pass")),
        ),
    );
    bed.emptcp(&["apply", keep.to_str().unwrap()]).expect_ok();
    let obj = verifier_reject_object(&bed.tmp);
    // the first two chains of the file are fine; one of them replaces
    // an applied chain ("keep") in place
    let head = format!(
        "{}{}",
        chain_text("n1", x1a, "tc-egress", a, &act("record")),
        chain_text("keep", x2a, "tc-egress", a, &act("get_connect")),
    );
    let third = [
        (
            "unknown device",
            chain_text("n3", "nosuchdev0", "tc-ingress", a, &act("pass")),
            "nosuchdev0",
        ),
        (
            "verifier reject",
            chain_text(
                "n3",
                x1a,
                "tc-ingress",
                a,
                &format!(
                    "  [[chain.act]]\n  kind = \"custom\"\n  object = \"{}\"\n  program = \"unchecked\"\n",
                    obj.display()
                ),
            ),
            "unchecked",
        ),
    ];
    for (what, t3, want) in third {
        let before = show(&bed);
        let before_pins = pins(&bed.state_dir);
        let tcx_x2a = tcx_count(a, x2a, true);
        let xdp_x2a = xdp_prog_id(a, x2a);
        let p = bed.policy("bad3", &format!("{head}{t3}"));
        let o = bed.emptcp(&["apply", p.to_str().unwrap()]);
        assert!(!o.ok(), "{what}: apply must fail");
        let lines = o.stderr_lines();
        let last = lines.last().copied().unwrap_or("");
        assert!(
            last.starts_with("emptcp: ") && last.contains(want) && last.contains("\"n3\""),
            "{what}: the error names the chain and the cause: {:?}",
            o.stderr
        );
        assert_eq!(show(&bed), before, "{what}: show changed");
        assert_eq!(pins(&bed.state_dir), before_pins, "{what}: pins changed");
        assert_eq!(tcx_count(a, x1a, true), 0, "{what}: n1 left attached");
        assert_eq!(tcx_count(a, x1a, false), 0, "{what}: n3 left attached");
        assert_eq!(tcx_count(a, x2a, true), tcx_x2a, "{what}: keep touched");
        assert_eq!(xdp_prog_id(a, x2a), xdp_x2a, "{what}: keep-x touched");
        eprintln!("third chain invalid ({what}): `{}`; nothing changed", last);
    }
}

/// A device deleted under an attached chain, then the whole namespace:
/// `show` and `detach` still work and leave no pins and no programs.
#[test]
fn device_and_namespace_deleted_under_a_chain() {
    if !root_or_skip("device_and_namespace_deleted_under_a_chain") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let (a, b) = (bed.a.as_str(), bed.b.as_str());
    let p = bed.policy(
        "gone",
        &format!(
            "{}{}{}{}",
            chain_text("dev-tc", &bed.x1a, "tc-egress", a, &act("record")),
            chain_text("dev-xdp", &bed.x1a, "xdp", a, &act("pass")),
            chain_text("ns-tc", &bed.x2b, "tc-egress", b, &act("record")),
            chain_text("ns-xdp", &bed.x1b, "xdp", b, &act("pass")),
        ),
    );
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    let ids = owned_ids(&bed.state_dir);
    assert_eq!(chains(&show(&bed)).len(), 4);

    // 1. the device goes (its veth peer in b, x1b, goes with it)
    sh("ip", &["-n", a, "link", "del", &bed.x1a]);
    let o = bed.emptcp(&["show"]).expect_ok();
    eprintln!(
        "after the device was deleted, show says:\n{}",
        o.stdout.trim_end()
    );
    bed.emptcp(&["detach", "dev-tc"]).expect_ok();
    bed.emptcp(&["detach", "dev-xdp"]).expect_ok();

    // 2. the whole namespace goes
    sh("ip", &["netns", "del", b]);
    let o = bed.emptcp(&["show"]).expect_ok();
    eprintln!(
        "after the namespace was deleted, show says:\n{}",
        o.stdout.trim_end()
    );
    let o = bed.emptcp(&["detach", "--all"]).expect_ok();
    eprintln!("detach --all: {}", o.stdout.trim());
    assert_eq!(chains(&show(&bed)), vec![], "no chains left");
    let left: Vec<_> = pins(&bed.state_dir)
        .into_iter()
        .filter(|(p, _, dir)| !dir && !p.ends_with("state"))
        .map(|(p, _, _)| p)
        .collect();
    assert!(left.is_empty(), "pins left after detach: {left:?}");
    // programs go once nothing holds them (links are released lazily)
    let mut still = still_loaded(&ids);
    for _ in 0..20 {
        if still.progs.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        still = still_loaded(&ids);
    }
    assert!(still.progs.is_empty(), "programs still loaded: {still:?}");
}

/// The state dir and everything in it are root-only: directories 0700,
/// pins 0600, nothing readable or writable by group or others.
#[test]
fn state_dir_and_pins_are_root_only() {
    if !root_or_skip("state_dir_and_pins_are_root_only") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let a = bed.a.as_str();
    let p = bed.policy(
        "modes",
        &format!(
            "{}{}",
            chain_text("m1", &bed.x1a, "tc-egress", a, &act("get_connect")),
            chain_text("m2", &bed.x1a, "xdp", a, &act("record")),
        ),
    );
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    let top = std::fs::metadata(&bed.state_dir).expect("state dir");
    let mut bad = Vec::new();
    if top.permissions().mode() & 0o7777 != 0o700 {
        bad.push(format!(
            "{}: {:o}",
            bed.state_dir.display(),
            top.permissions().mode() & 0o7777
        ));
    }
    let all = pins(&bed.state_dir);
    for (path, mode, dir) in &all {
        let want = if *dir { 0o700 } else { 0o600 };
        if *mode != want {
            bad.push(format!("{}: {mode:o} (want {want:o})", path.display()));
        }
    }
    let files = all.iter().filter(|x| !x.2).count();
    assert!(files > 5, "expected pins, found {all:?}");
    assert!(bad.is_empty(), "modes:\n  {}", bad.join("\n  "));
    // and a normal user cannot get at them, not even by name
    let some_pin = all.iter().find(|x| !x.2).map(|x| x.0.clone()).unwrap();
    let o = run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "bpftool",
            "map",
            "show",
            "pinned",
            some_pin.to_str().unwrap(),
        ],
    );
    assert!(!o.ok(), "a normal user opened {}", some_pin.display());
    eprintln!(
        "modes: {} pins 0600, {} dirs 0700",
        files,
        all.len() - files + 1
    );
}
