//! Bad input and missing privileges: every case gives one line on stderr
//! naming what is wrong and where, a non-zero exit, and changes nothing —
//! `emptcp show --json` (counters aside), the pins under the state dir and
//! their modes, and what is attached to the device are compared before and
//! after. A chain applied first must stay exactly as it was.
//!
//! Run with `--nocapture` to get the table of cases and messages that the
//! README's troubleshooting section quotes.
//!
//! Needs root (namespaces, BPF); otherwise prints "SKIPPED: needs root".

mod netlib;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use netlib::*;
use serde_json::Value;

/// What an applied state looks like from outside.
#[derive(Debug, PartialEq)]
struct Snapshot {
    show: Value,
    pins: Vec<(String, u32)>,
    tcx_egress: u32,
    xdp: Option<u64>,
}

fn strip_counters(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("counters");
            m.values_mut().for_each(strip_counters);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_counters),
        _ => {}
    }
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, u32)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let mode = e.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
        out.push((
            p.strip_prefix(base).unwrap().display().to_string(),
            mode & 0o7777,
        ));
        if p.is_dir() {
            walk(&p, base, out);
        }
    }
}

fn snapshot(bed: &Testbed) -> Snapshot {
    let o = bed.emptcp(&["show", "--json"]).expect_ok();
    let mut show: Value = serde_json::from_str(&o.stdout).expect("show --json");
    strip_counters(&mut show);
    let mut pins = Vec::new();
    walk(&bed.state_dir, &bed.state_dir, &mut pins);
    pins.sort();
    Snapshot {
        show,
        pins,
        tcx_egress: tcx_count(&bed.a, &bed.x1a, true),
        xdp: xdp_prog_id(&bed.a, &bed.x1a),
    }
}

fn chain_text(name: &str, dev: &str, hook: &str, ns: &str, body: &str) -> String {
    format!(
        "[[chain]]\nname = \"{name}\"\ndev = \"{dev}\"\nhook = \"{hook}\"\nnetns = \"{ns}\"\n{body}"
    )
}

const PASS: &str = "  [[chain.act]]\n  kind = \"pass\"\n";

/// One bad-input case: a policy text (or None: `args` alone) and the
/// fragments its one-line message must contain.
struct Case {
    what: &'static str,
    policy: Option<String>,
    args: Vec<String>,
    env_unprivileged: bool,
    want: Vec<String>,
}

fn case(what: &'static str, policy: String, want: &[&str]) -> Case {
    Case {
        what,
        policy: Some(policy),
        args: Vec::new(),
        env_unprivileged: false,
        want: want.iter().map(|s| s.to_string()).collect(),
    }
}

/// `setpriv` to nobody: no capabilities, no groups.
fn as_nobody(dir: &Path, args: &[&str]) -> Out {
    let d = dir.to_string_lossy().into_owned();
    let mut a = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        EMPTCP,
        "--state-dir",
        d.as_str(),
    ];
    a.extend_from_slice(args);
    run("setpriv", &a)
}

#[test]
fn bad_input_one_line_nothing_changed() {
    if !root_or_skip("bad_input_one_line_nothing_changed") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    // scratch files readable by the unprivileged runs
    std::fs::set_permissions(&bed.tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (a, x1a) = (bed.a.as_str(), bed.x1a.as_str());
    let base = bed.policy(
        "base",
        &chain_text(
            "base",
            x1a,
            "tc-egress",
            a,
            "  [[chain.act]]\n  kind = \"record\"\n",
        ),
    );
    bed.emptcp(&["apply", base.to_str().unwrap()]).expect_ok();
    let before = snapshot(&bed);
    assert_eq!(before.tcx_egress, 1, "the base chain is attached");

    let sel = |body: &str| format!("  [[chain.select]]\n{body}\n{PASS}");
    let ch = |name: &str, body: &str| chain_text(name, x1a, "xdp", a, body);
    let mut cases = vec![
        case(
            "not TOML",
            "this is [ not toml\n".into(),
            &["line 1", "not valid TOML"],
        ),
        case("empty file", String::new(), &["no [[chain]]"]),
        case(
            "unknown key in a chain",
            ch("k", &format!("colour = \"red\"\n{PASS}")),
            &["chain \"k\"", "unknown key `colour`"],
        ),
        case(
            "unknown key in a stage",
            ch("k", &format!("{PASS}  dport = 1\n")),
            &["chain \"k\"", "act[0] (pass)", "unknown key `dport`"],
        ),
        case(
            "unknown stage kind",
            ch("k", "  [[chain.act]]\n  kind = \"teleport\"\n"),
            &["chain \"k\"", "act[0]", "unknown kind \"teleport\""],
        ),
        case(
            "duplicate chain names",
            format!("{}\n{}", ch("dup", PASS), ch("dup", PASS)),
            &["chain \"dup\"", "duplicate name"],
        ),
        case(
            "bad chain name",
            ch("Not OK", PASS),
            &["chain \"Not OK\"", "key `name`"],
        ),
        case(
            "port out of range",
            ch("r", &sel("  kind = \"port\"\n  dport = 70000")),
            &["chain \"r\"", "select[0] (port)", "key `dport`", "70000"],
        ),
        case(
            "prefix length out of range",
            ch("r", &sel("  kind = \"src\"\n  addr = \"10.0.0.0/33\"")),
            &["chain \"r\"", "select[0] (src)", "key `addr`", "/33"],
        ),
        case(
            "rate not a rate",
            ch(
                "r",
                "  [[chain.act]]\n  kind = \"rate_limit\"\n  rate = \"-5mbit\"\n",
            ),
            &["chain \"r\"", "act[0] (rate_limit)", "key `rate`"],
        ),
        case(
            "sequence range reversed",
            ch(
                "r",
                &sel("  kind = \"sequence\"\n  field = \"dsn\"\n  from = 100\n  to = 10"),
            ),
            &["chain \"r\"", "select[0] (sequence)"],
        ),
        case(
            "IPv6 address where the pair is IPv4",
            ch(
                "f",
                &sel("  kind = \"ip_pair\"\n  src = \"10.1.0.1\"\n  dst = \"fd00::1\""),
            ),
            &["chain \"f\"", "select[0] (ip_pair)", "key `dst`", "fd00::1"],
        ),
        case(
            "IPv6 address in a 4-tuple with an IPv4 source",
            ch(
                "f",
                &sel("  kind = \"subflow\"\n  saddr = \"10.1.0.1\"\n  daddr = \"fd00::2\""),
            ),
            &["chain \"f\"", "select[0] (subflow)", "fd00::2"],
        ),
        case(
            "not an address",
            ch("f", &sel("  kind = \"ip_pair\"\n  src = \"10.1.0\"")),
            &["chain \"f\"", "key `src`", "10.1.0"],
        ),
        case(
            "actor not available on the hook",
            ch("h", "  [[chain.act]]\n  kind = \"set_mark\"\n  mark = 1\n"),
            &["chain \"h\"", "act[0] (set_mark)", "tc hook"],
        ),
        case(
            "unknown device",
            chain_text("d", "nosuchdev0", "xdp", a, PASS),
            &["chain \"d\"", "device \"nosuchdev0\" not found", a],
        ),
        case(
            "unknown network namespace",
            chain_text("n", x1a, "xdp", "nosuchns-emptcp", PASS),
            &[
                "chain \"n\"",
                "network namespace \"nosuchns-emptcp\" not found",
            ],
        ),
        Case {
            what: "policy file missing",
            policy: None,
            args: vec!["apply".into(), "/nonexistent/emptcp.toml".into()],
            env_unprivileged: false,
            want: vec!["/nonexistent/emptcp.toml".into(), "cannot read".into()],
        },
        Case {
            what: "state dir not on bpffs (`--state-dir /tmp/x/state`)",
            policy: None,
            args: vec!["apply".into(), base.display().to_string()],
            env_unprivileged: false,
            want: vec!["is not on a bpffs mount".into(), "state directory".into()],
        },
    ];
    for (what, args) in [
        ("not root: apply", vec!["apply", base.to_str().unwrap()]),
        ("not root: check", vec!["check", base.to_str().unwrap()]),
        ("not root: detach", vec!["detach", "base"]),
        ("not root: show", vec!["show"]),
        ("not root: stats", vec!["stats"]),
    ] {
        cases.push(Case {
            what,
            policy: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            env_unprivileged: true,
            want: vec![if what.ends_with("apply")
                || what.ends_with("check")
                || what.ends_with("detach")
            {
                "needs root".into()
            } else {
                "root-only".into()
            }],
        });
    }

    let mut table = String::from("| case | message (stderr, exit status 1) |\n|---|---|\n");
    let mut fails = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let o = if c.env_unprivileged {
            let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            as_nobody(&bed.state_dir, &args)
        } else if let Some(text) = &c.policy {
            let p = bed.policy(&format!("bad{i}"), text);
            bed.emptcp(&["apply", p.to_str().unwrap()])
        } else if c.what.starts_with("state dir") {
            let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            emptcp_in(&bed.tmp.join("state"), &args)
        } else {
            let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            bed.emptcp(&args)
        };
        let lines = o.stderr_lines();
        let mut errs = Vec::new();
        if o.ok() {
            errs.push("exit status 0".to_owned());
        }
        if lines.len() != 1 {
            errs.push(format!("{} stderr lines", lines.len()));
        }
        let line = lines.first().copied().unwrap_or("");
        if !line.starts_with("emptcp: ") {
            errs.push("the line does not start with `emptcp: `".into());
        }
        for w in &c.want {
            if !line.contains(w.as_str()) {
                errs.push(format!("no {w:?} in the message"));
            }
        }
        if c.policy.is_some() {
            let name = format!("bad{i}.toml");
            if !line.contains(&name) && !line.contains("chain \"") {
                errs.push(format!("names neither {name} nor the chain"));
            }
        }
        let after = snapshot(&bed);
        if after != before {
            errs.push(format!("state changed:\n{before:#?}\n->\n{after:#?}"));
        }
        // the table shows the file as the user named it
        let shown = line.replace(&format!("{}/", bed.tmp.display()), "");
        let shown = shown.replace(&bed.tmp.display().to_string(), "/tmp/x");
        let shown = shown.replace(a, "NS").replace(x1a, "DEV");
        table += &format!("| {} | `{}` |\n", c.what, shown);
        if !errs.is_empty() {
            fails.push(format!(
                "{}: {}\n  stdout: {}\n  stderr: {}",
                c.what,
                errs.join("; "),
                o.stdout.trim(),
                o.stderr.trim()
            ));
        }
    }
    eprintln!("{table}");
    assert!(fails.is_empty(), "bad input cases:\n{}", fails.join("\n\n"));
}

/// MPTCP switched off in the chain's namespace: apply goes ahead (the
/// chains act on MPTCP packets passing through, as on a router) and says
/// so in one warning line naming the namespace.
#[test]
fn mptcp_disabled_in_the_namespace_warns() {
    if !root_or_skip("mptcp_disabled_in_the_namespace_warns") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    sh(
        "ip",
        &[
            "netns",
            "exec",
            &bed.a,
            "sysctl",
            "-qw",
            "net.mptcp.enabled=0",
        ],
    );
    let p = bed.policy(
        "off",
        &chain_text("off", &bed.x1a, "tc-egress", &bed.a, PASS),
    );
    let o = bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    let lines = o.stderr_lines();
    let warn: Vec<&&str> = lines.iter().filter(|l| l.contains("mptcp")).collect();
    assert_eq!(warn.len(), 1, "one MPTCP warning line: {:?}", o.stderr);
    assert!(
        warn[0].starts_with("emptcp: warning: net.mptcp.enabled is 0 in network namespace")
            && warn[0].contains(&bed.a),
        "warning names the setting and the namespace: {}",
        warn[0]
    );
    eprintln!(
        "| `net.mptcp.enabled=0` in the chain's namespace (applied, exit 0) | `{}` |",
        warn[0].replace(&bed.a, "NS")
    );
    assert_eq!(
        tcx_count(&bed.a, &bed.x1a, true),
        1,
        "the chain is attached"
    );
    // and with MPTCP on, no warning
    sh(
        "ip",
        &[
            "netns",
            "exec",
            &bed.a,
            "sysctl",
            "-qw",
            "net.mptcp.enabled=1",
        ],
    );
    let o = bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    assert!(
        !o.stderr.contains("mptcp"),
        "no MPTCP warning with MPTCP on: {}",
        o.stderr
    );
}

/// No bpffs at /sys/fs/bpf (a private mount namespace where it is
/// unmounted; the host's mount is not touched): emptcp mounts it and says
/// so in one line, and `check` works.
#[test]
fn bpffs_not_mounted_is_mounted() {
    if !root_or_skip("bpffs_not_mounted_is_mounted") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let p = bed.policy("m", &chain_text("m", &bed.x1a, "tc-egress", &bed.a, PASS));
    // apply, show and detach inside that namespace: the pins live in the
    // bpffs emptcp mounted there
    let script = format!(
        "umount /sys/fs/bpf && ! mountpoint -q /sys/fs/bpf && \
         {EMPTCP} --state-dir /sys/fs/bpf/emptcp apply {} >/dev/null && \
         stat -f -c %T /sys/fs/bpf && \
         {EMPTCP} --state-dir /sys/fs/bpf/emptcp show && \
         {EMPTCP} --state-dir /sys/fs/bpf/emptcp detach --all",
        p.display()
    );
    // private propagation: the umount and mount stay in that namespace
    let o = run(
        "unshare",
        &["--mount", "--propagation", "private", "sh", "-c", &script],
    );
    assert!(o.ok(), "check without bpffs: {o:?}");
    let lines = o.stderr_lines();
    assert_eq!(
        lines,
        vec!["emptcp: mounting bpffs at /sys/fs/bpf"],
        "one line saying what it did"
    );
    assert!(o.stdout.contains("bpf_fs"), "bpffs mounted: {}", o.stdout);
    assert!(
        o.stdout.contains("m: "),
        "the chain was applied: {}",
        o.stdout
    );
    assert!(
        o.stdout.contains("detached 1"),
        "and detached: {}",
        o.stdout
    );
    assert_nothing_attached(&bed.a, &bed.x1a);
    eprintln!(
        "| bpffs not mounted at /sys/fs/bpf (goes ahead) | `{}` |",
        lines[0]
    );
}
