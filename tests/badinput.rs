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
#[allow(dead_code)]
mod pktlib;

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
        case(
            "a key given twice: the line of the second",
            "[[chain]]\nname = \"a\"\nname = \"b\"\n".into(),
            &["line 3: not valid TOML", "duplicate key"],
        ),
        case(
            "an unquoted string",
            "[[chain]]\nname = \"a\"\ndev = lo\n".into(),
            &["line 3: not valid TOML"],
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

/// A chain of `stages` stages on `hook`: `port` selectors that all match
/// the packet, then a `drop`.
fn walk_chain(hook: &str, stages: usize) -> emptcp::Chain {
    let mut text = format!("[[chain]]\nname = \"walk\"\ndev = \"lo\"\nhook = \"{hook}\"\n");
    for _ in 1..stages {
        text += "[[chain.select]]\nkind = \"port\"\ndport = 5201\n";
    }
    text += "[[chain.act]]\nkind = \"drop\"\n";
    let p = emptcp::Policy::parse(&text, "walk.toml").expect("walk policy");
    p.chains.into_iter().next().expect("one chain")
}

/// capacity::MAX_TAIL_CALLS is the kernel's: through the entry program
/// (BPF_PROG_TEST_RUN, as on the wire) of a point that walks by tail calls
/// (one program per stage, as with a third-party stage), a chain of
/// MAX_TAIL_CALLS stages runs its last stage (the drop) and one of
/// MAX_TAIL_CALLS + 1 never reaches it: its last selector's tail call falls
/// through, counted as a miss. The walk program runs MAX_WALK stages.
#[test]
fn walk_limit_is_what_the_kernel_allows() {
    if !root_or_skip("walk_limit_is_what_the_kernel_allows") {
        return;
    }
    use emptcp::capacity::{MAX_TAIL_CALLS as MAX_WALK, MAX_WALK as MAX_ONE_WALK};
    use emptcp::testrun::Harness;
    let pkt =
        pktlib::build::Pkt::v4("10.1.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap()).build();
    for (hook, drop, pass) in [
        (emptcp::Hook::Xdp, 1, 2),       // XDP_DROP, XDP_PASS
        (emptcp::Hook::TcEgress, 2, -1), // TC_ACT_SHOT, TC_ACT_UNSPEC
    ] {
        for (n, want) in [(MAX_WALK - 1, drop), (MAX_WALK, drop), (MAX_WALK + 1, pass)] {
            let c = walk_chain(hook.as_str(), n);
            let h = Harness::with_runtime(hook, std::slice::from_ref(&c), false)
                .unwrap_or_else(|e| panic!("{hook}: {n} stages: {e:#}"));
            let out = h.run(&pkt).expect("BPF_PROG_TEST_RUN");
            let last_run = h.counter(Some((0, n - 1)), "run");
            eprintln!(
                "{hook}: {n} stages: verdict {}, last stage ran {last_run} times",
                out.ret
            );
            assert_eq!(out.ret, want, "{hook}: {n} stages: verdict");
            assert_eq!(
                last_run,
                u64::from(want == drop),
                "{hook}: {n} stages: drop ran"
            );
            let missed = h.counter(Some((0, n - 1)), "tail_miss");
            assert_eq!(
                missed,
                u64::from(want == pass),
                "{hook}: {n} stages: missed jump"
            );
        }
        // one walk program: MAX_ONE_WALK stages (chains of `port` and
        // `drop`, one per port, the packet's port the last one's)
        let n = MAX_ONE_WALK / 2;
        let mut text = String::new();
        for i in 0..n {
            let port = if i + 1 == n { 5201 } else { 10_000 + i };
            text += &format!(
                "[[chain]]\nname = \"w{i}\"\ndev = \"lo\"\nhook = \"{hook}\"\n\
                 [[chain.select]]\nkind = \"port\"\ndport = {port}\n\
                 [[chain.act]]\nkind = \"drop\"\n"
            );
        }
        let p = emptcp::Policy::parse(&text, "walk.toml").expect("walk policy");
        let h = Harness::new(hook, &p.chains)
            .unwrap_or_else(|e| panic!("{hook}: {MAX_ONE_WALK} stages: {e:#}"));
        let out = h.run(&pkt).expect("BPF_PROG_TEST_RUN");
        assert_eq!(out.ret, drop, "{hook}: walk of {MAX_ONE_WALK}: verdict");
        assert_eq!(
            h.counter(Some((n - 1, 1)), "hit"),
            1,
            "{hook}: walk of {MAX_ONE_WALK}: the last chain's drop ran"
        );
        assert_eq!(
            h.counter(Some((n - 2, 1)), "hit"),
            0,
            "{hook}: walk of {MAX_ONE_WALK}: the other drops did not"
        );
    }
}

/// One hostile-input case: the arguments (a policy case runs with
/// `apply` and with `check`) and the exact line it must give.
struct Hostile {
    what: String,
    args: Vec<String>,
    want: String,
    /// Fails before emptcp touches its state: a state dir that does not
    /// exist yet is not created either.
    early: bool,
}

fn hostile(what: &str, args: &[&str], want: &str) -> Hostile {
    Hostile {
        what: what.to_owned(),
        args: args.iter().map(|s| s.to_string()).collect(),
        want: want.to_owned(),
        early: true,
    }
}

/// The same policy case for `apply` and `check`.
fn hostile_policy(what: &str, path: &Path, want: &str) -> Vec<Hostile> {
    let p = path.to_str().expect("UTF-8 path");
    ["apply", "check"]
        .iter()
        .map(|cmd| hostile(&format!("{what} ({cmd})"), &[cmd, p], want))
        .collect()
}

/// A chain of `select` selectors (bodies) and a pass, as TOML.
fn stages(select: &[&str]) -> String {
    let mut s = String::new();
    for b in select {
        s += &format!("  [[chain.select]]\n{b}\n");
    }
    s + PASS
}

/// Hostile input (issue 11): values that would forge or flood the
/// terminal, files that are not files, objects that are not objects,
/// layouts past the limits, namespace paths. Each gives exactly one line,
/// `emptcp: ` first, exit status 1, the same state as before, and no state
/// directory where there was none.
#[test]
fn hostile_input_one_exact_line_nothing_changed() {
    if !root_or_skip("hostile_input_one_exact_line_nothing_changed") {
        return;
    }
    let mut bed = Testbed::new(Family::V4);
    let fresh = bed.another_state_dir();
    let (a, x1a) = (bed.a.clone(), bed.x1a.clone());
    let base = bed.policy(
        "base",
        &chain_text(
            "base",
            &x1a,
            "tc-egress",
            &a,
            "  [[chain.act]]\n  kind = \"record\"\n",
        ),
    );
    bed.emptcp(&["apply", base.to_str().unwrap()]).expect_ok();
    let before = snapshot(&bed);
    let tmp = bed.tmp.clone();
    let t = tmp.display().to_string();
    let ch = |name: &str, body: &str| chain_text(name, &x1a, "tc-egress", &a, body);
    let pol = |name: &str, text: &str| bed.policy(name, text);
    let shown = |p: &Path| p.display().to_string();
    let mut cases = Vec::new();

    // 1. echoed values: escaped, capped at 64 characters and `…`
    let huge = "a".repeat(10 << 20);
    let p = pol("huge-name", &ch(&huge, PASS));
    cases.extend(hostile_policy(
        "10 MB chain name",
        &p,
        &format!(
            "emptcp: {}: chain \"{}…\": key `name`: must be 1-32 characters of [a-z0-9_-]",
            shown(&p),
            "a".repeat(64)
        ),
    ));
    let p = pol("bidi-name", &ch("evil\\u202Etxt\\n", PASS));
    cases.extend(hostile_policy(
        "bidi override and newline in a chain name",
        &p,
        &format!(
            "emptcp: {}: chain \"evil\\u{{202e}}txt\\n\": key `name`: must be 1-32 characters \
             of [a-z0-9_-]",
            shown(&p)
        ),
    ));
    // the kernel takes a control character in a device name (not white
    // space): the lookup fails, and says so escaped
    let p = pol(
        "ctl-dev",
        &chain_text("c", "eth\\u001B[2J", "tc-egress", &a, PASS),
    );
    cases.push(hostile(
        "terminal escape in a device name",
        &["apply", p.to_str().unwrap()],
        &format!(
            "emptcp: chain \"c\": device \"eth\\u{{1b}}[2J\" not found in network namespace \
             \"{a}\": No such device"
        ),
    ));
    let p = pol("huge-dev", &chain_text("c", &huge, "tc-egress", &a, PASS));
    cases.extend(hostile_policy(
        "10 MB device name",
        &p,
        &format!(
            "emptcp: {}: chain \"c\": key `dev`: \"{}…\" is not a device name",
            shown(&p),
            "a".repeat(64)
        ),
    ));
    let actors: Vec<&str> = emptcp::catalog::CATALOG
        .iter()
        .filter(|e| e.role == emptcp::catalog::StageRole::Actor)
        .map(|e| e.kind)
        .collect();
    let p = pol(
        "bidi-kind",
        &ch("c", "  [[chain.act]]\n  kind = \"pass\\u202E\"\n"),
    );
    cases.extend(hostile_policy(
        "bidi override in a kind",
        &p,
        &format!(
            "emptcp: {}: chain \"c\": act[0]: unknown kind \"pass\\u{{202e}}\" (known: {})",
            shown(&p),
            actors.join(", ")
        ),
    ));
    let key = "k".repeat(1 << 20);
    let p = pol("huge-key", &ch("c", &format!("{PASS}  {key} = 1\n")));
    cases.extend(hostile_policy(
        "1 MB key",
        &p,
        &format!(
            "emptcp: {}: chain \"c\": act[0] (pass): unknown key `{}…` (known: none)",
            shown(&p),
            "k".repeat(64)
        ),
    ));
    let p = pol(
        "bidi-type",
        &ch(
            "c",
            &stages(&["  kind = \"packet_type\"\n  types = [\"syn\\u202E\"]"]),
        ),
    );
    cases.extend(hostile_policy(
        "bidi override in a set value",
        &p,
        &format!(
            "emptcp: {}: chain \"c\": select[0] (packet_type): key `types`: unknown packet type \
             \"syn\\u{{202e}}\" (known: {})",
            shown(&p),
            emptcp::policy::PACKET_TYPES.join(", ")
        ),
    ));
    // one argument may be 128 KiB at most (MAX_ARG_STRLEN)
    let long = "n".repeat(100_000);
    for cmd in ["detach", "show"] {
        cases.push(hostile(
            &format!("100 kB chain name: `{cmd} NAME`"),
            &[cmd, &long],
            &format!(
                "emptcp: no chain called \"{}…\" (chain names are 1-32 characters of [a-z0-9_-])",
                "n".repeat(64)
            ),
        ));
    }
    cases.push(hostile(
        "bidi override in `show NAME`",
        &["show", "x\u{202e}y"],
        "emptcp: no chain called \"x\\u{202e}y\" (chain names are 1-32 characters of [a-z0-9_-])",
    ));
    cases.push(hostile(
        "terminal escape in a policy path",
        &["apply", &format!("{t}/bad\u{1b}[2J.toml")],
        &format!(
            "emptcp: {t}/bad\\u{{1b}}[2J.toml: cannot read: No such file or directory (os error 2)"
        ),
    ));

    // 2. policy files: regular files of at most 16 MiB
    let fifo = tmp.join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let sock = tmp.join("sock.toml");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let big = tmp.join("big.toml");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len((16 << 20) + 1))
        .expect("sparse file");
    for (what, p, why) in [
        (
            "FIFO without a writer",
            fifo.as_path(),
            "not a regular file",
        ),
        ("directory", tmp.as_path(), "not a regular file"),
        ("/dev/zero", Path::new("/dev/zero"), "not a regular file"),
        ("unix socket", sock.as_path(), "not a regular file"),
        ("16 MiB + 1 byte", big.as_path(), "larger than 16 MiB"),
    ] {
        cases.extend(hostile_policy(
            &format!("policy: {what}"),
            p,
            &format!("emptcp: {}: {why}", shown(p)),
        ));
    }

    // 3. custom objects: ELF BPF objects, read like policies
    for (i, (what, obj, why)) in [
        ("a text file", base.clone(), "not an ELF BPF object"),
        ("a FIFO", fifo.clone(), "not a regular file"),
    ]
    .into_iter()
    .enumerate()
    {
        let p = pol(
            &format!("custom{i}"),
            &ch(
                "c",
                &format!(
                    "  [[chain.act]]\n  kind = \"custom\"\n  object = \"{}\"\n  program = \"x\"\n",
                    shown(&obj)
                ),
            ),
        );
        for mut c in hostile_policy(
            &format!("custom object: {what}"),
            &p,
            &format!(
                "emptcp: chain \"c\" stage custom:x (tc): {}: {why}",
                shown(&obj)
            ),
        ) {
            // apply opens the state before it loads objects
            c.early = c.args[0] == "check";
            cases.push(c);
        }
    }

    // 4. capacity: what apply cannot hold, refused by check too
    let port = "  kind = \"port\"\n  dport = 5201";
    let p = pol("walk", &ch("w", &stages(&[port; 512])));
    cases.extend(hostile_policy(
        "513 stages on one attach point",
        &p,
        &format!(
            "emptcp: {}: {x1a} tc-egress (netns {a}): chain w needs a walk of 513 stages; one \
             walk program runs at most 512",
            shown(&p)
        ),
    ));
    let many: String = (0..10_000)
        .map(|i| chain_text(&format!("c{i}"), &x1a, "xdp", &a, PASS))
        .collect();
    let p = pol("many", &many);
    cases.extend(hostile_policy(
        "10,000 chains on one attach point",
        &p,
        &format!(
            "emptcp: {}: {x1a} xdp (netns {a}): chains c0, c1, c2, c3, … (10000 chains) need a \
             walk of 10000 stages; one walk program runs at most 512",
            shown(&p)
        ),
    ));
    let points: String = (0..256)
        .map(|i| chain_text(&format!("c{i}"), &format!("d{i}"), "tc-egress", &a, PASS))
        .collect();
    let p = pol("points", &points);
    cases.extend(hostile_policy(
        "256 attach points",
        &p,
        &format!(
            "emptcp: {}: tc: the chains need 256 attach points (device x hook x netns); emptcp \
             has 255 per hook family",
            shown(&p)
        ),
    ));
    let slots: String = (0..255)
        .map(|i| {
            chain_text(
                &format!("c{i}"),
                &format!("d{i}"),
                "tc-egress",
                &a,
                &stages(&[port; 3]),
            )
        })
        .collect();
    let p = pol("slots", &slots);
    cases.extend(hostile_policy(
        "1020 stages in one hook family",
        &p,
        &format!(
            "emptcp: {}: tc: the chains need 1020 stage slots; emptcp has 767 per hook family",
            shown(&p)
        ),
    ));

    // 5. network namespaces are names, not paths
    let ns_long = "n".repeat(256);
    for (ns, shown_ns) in [
        ("..", "\"..\"".to_owned()),
        ("a/b", "\"a/b\"".to_owned()),
        (ns_long.as_str(), format!("\"{}…\"", "n".repeat(64))),
    ] {
        cases.push(hostile(
            &format!("-n {}", &ns[..ns.len().min(8)]),
            &["-n", ns, "apply", base.to_str().unwrap()],
            &format!("emptcp: -n: network namespace name {shown_ns}: not a name (ip netns list)"),
        ));
    }
    for (i, ns) in ["", "../x", "."].iter().enumerate() {
        let p = pol(
            &format!("netns{i}"),
            &chain_text("n", &x1a, "tc-egress", ns, PASS),
        );
        cases.extend(hostile_policy(
            &format!("netns = {ns:?}"),
            &p,
            &format!(
                "emptcp: {}: chain \"n\": key `netns`: network namespace name {ns:?}: not a \
                 name (ip netns list)",
                shown(&p)
            ),
        ));
    }

    let mut table = String::from("| case | message (stderr, exit status 1) |\n|---|---|\n");
    let mut fails = Vec::new();
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let o = bed.emptcp(&args);
        let took = started.elapsed();
        let mut errs = Vec::new();
        if o.code != Some(1) {
            errs.push(format!("exit status {:?}", o.code));
        }
        if o.stderr != format!("{}\n", c.want) {
            errs.push(format!("stderr is not exactly\n    {}", c.want));
        }
        if o.stderr.len() >= 300 && !c.want.contains("(known: ") {
            errs.push(format!("{} bytes on stderr", o.stderr.len()));
        }
        if !o.stdout.is_empty() {
            errs.push("output on stdout".into());
        }
        if took > std::time::Duration::from_secs(10) {
            errs.push(format!("took {took:?}"));
        }
        let after = snapshot(&bed);
        if after != before {
            errs.push(format!("state changed:\n{before:#?}\n->\n{after:#?}"));
        }
        if c.early {
            let o2 = emptcp_in(&fresh, &args);
            if o2.stderr != o.stderr || o2.code != Some(1) {
                errs.push(format!("with no state: {:?} {}", o2.code, o2.stderr.trim()));
            }
            if fresh.exists() {
                errs.push(format!("created {}", fresh.display()));
                let _ = std::fs::remove_dir_all(&fresh);
            }
        }
        let line = o.stderr.trim_end().replace(&t, "/tmp/x");
        let line = line.replace(&a, "NS").replace(&x1a, "DEV");
        table += &format!("| {} | `{}` |\n", c.what, line);
        if !errs.is_empty() {
            fails.push(format!(
                "{}: {}\n  stderr: {}",
                c.what,
                errs.join("; "),
                o.stderr.trim()
            ));
        }
    }
    eprintln!("{table}");
    assert!(
        fails.is_empty(),
        "hostile input cases:\n{}",
        fails.join("\n\n")
    );
}

/// The sets and maps of a state: `show`'s "sets and maps" lines (sizes,
/// element counts, users) and every table's elements.
fn tables_snapshot(bed: &Testbed) -> Vec<String> {
    let o = bed.emptcp(&["show"]).expect_ok();
    let mut v: Vec<String> = o
        .stdout
        .lines()
        .skip_while(|l| *l != "sets and maps:")
        .map(str::to_owned)
        .collect();
    for l in v.clone().iter().skip(1) {
        // "  set NAME: …"
        let mut w = l.split_whitespace();
        let (Some(kind), Some(name)) = (w.next(), w.next()) else {
            continue;
        };
        let name = name.trim_end_matches(':');
        let o = bed.emptcp(&[kind, "list", name]).expect_ok();
        v.push(format!(
            "{kind} {name}: {}",
            o.stdout.trim().replace('\n', ", ")
        ));
    }
    v
}

const TABLES: &str = "[[set]]\nname = \"hosts\"\ntype = \"addr\"\n\
    elements = [\"10.1.0.1\", \"fd00:1::1\"]\n\
    [[set]]\nname = \"small\"\ntype = \"addr\"\nsize = 2\nelements = [\"10.0.0.1\"]\n\
    [[set]]\nname = \"ports\"\ntype = \"port\"\nelements = [\"80\"]\n\
    [[map]]\nname = \"marks\"\nkey = \"addr\"\nvalue = \"u32\"\nelements = { \"10.1.0.1\" = 1 }\n\
    [[map]]\nname = \"flags\"\nkey = \"addr\"\nvalue = \"bool\"\nelements = { \"10.1.0.1\" = true }\n\
    [[set]]\nname = \"nets\"\ntype = \"prefix\"\nsize = 3\nelements = [\"10.0.0.0/8\", \"fd00::/16\"]\n";

/// `emptcp set|map …` and `[[set]]`/`[[map]]` mistakes: exactly one line,
/// exit status 1, no chain, pin, set or element changed (a `del` naming one
/// missing element deletes none, an `add` that does not fit adds none).
#[test]
fn set_and_map_bad_input_one_exact_line_nothing_changed() {
    if !root_or_skip("set_and_map_bad_input_one_exact_line_nothing_changed") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let (a, x1a) = (bed.a.clone(), bed.x1a.clone());
    let ch = |name: &str, body: &str| chain_text(name, &x1a, "tc-egress", &a, body);
    let uses = ch(
        "uses",
        "  [[chain.select]]\n  kind = \"src\"\n  set = \"hosts\"\n\
         [[chain.act]]\n  kind = \"set_mark\"\n  mark = { map = \"marks\", key = \"src\" }\n",
    );
    let base = bed.policy("base", &format!("{TABLES}{uses}"));
    bed.emptcp(&["apply", base.to_str().unwrap()]).expect_ok();
    let before = (snapshot(&bed), tables_snapshot(&bed));
    assert!(
        before
            .1
            .iter()
            .any(|l| l.contains("set hosts: 10.1.0.1, fd00:1::1")),
        "the base sets are there: {:#?}",
        before.1
    );
    let t = bed.tmp.display().to_string();
    let pol = |name: &str, text: &str| bed.policy(name, text).display().to_string();
    let cli = |args: &[&str], want: &str| -> (Vec<String>, String) {
        (args.iter().map(|s| s.to_string()).collect(), want.into())
    };
    let sel = |body: &str| format!("  [[chain.select]]\n{body}\n{PASS}");
    let mut cases: Vec<(Vec<String>, String)> = vec![
        cli(
            &["set", "add", "hosts", "10.1.0"],
            "set \"hosts\": element \"10.1.0\": \"10.1.0\" is not an IP address",
        ),
        cli(
            &["set", "add", "hosts", "10.2.0.9", "10.1.0.1 . 10.1.0.2"],
            "set \"hosts\": element \"10.1.0.1 . 10.1.0.2\": \"10.1.0.1 . 10.1.0.2\" is not an IP address",
        ),
        cli(
            &["set", "add", "ports", "10.1.0.1"],
            "set \"ports\": element \"10.1.0.1\": \"10.1.0.1\" is not a port (1-65535)",
        ),
        cli(&["set", "add", "nosuch", "10.0.0.1"], "no set or map called \"nosuch\""),
        cli(
            &["set", "add", "small", "10.0.0.2", "10.0.0.3"],
            "set \"small\" is full: 1 elements and 2 new do not fit its size 2",
        ),
        cli(
            &["map", "add", "marks", "10.1.0.2=lots"],
            "map \"marks\": element \"10.1.0.2=lots\": \"lots\" is not a 32-bit number",
        ),
        cli(
            &["map", "add", "flags", "10.1.0.2=maybe"],
            "map \"flags\": element \"10.1.0.2=maybe\": \"maybe\" is not true or false",
        ),
        cli(
            &["map", "add", "marks", "10.1.0.2"],
            "map \"marks\": element \"10.1.0.2\": expected KEY=VALUE",
        ),
        cli(
            &["set", "add", "marks", "10.1.0.2"],
            "\"marks\" is a map: use `emptcp map …`",
        ),
        cli(
            &["set", "del", "hosts", "10.1.0.1", "10.9.9.9"],
            "set \"hosts\": element \"10.9.9.9\" is not in it",
        ),
        // a prefix inside one that is there is not there (a trie's
        // lookup is a longest match)
        cli(
            &["set", "del", "nets", "10.0.0.0/8", "10.1.0.0/24"],
            "set \"nets\": element \"10.1.0.0/24\" is not in it",
        ),
        // the size counts both families' tries
        cli(
            &["set", "add", "nets", "10.2.0.0/16", "fd01::/16"],
            "set \"nets\" is full: 2 elements and 2 new do not fit its size 3",
        ),
        cli(
            &["set", "delete", "hosts"],
            "set \"hosts\" is used by chain uses: detach or change it first",
        ),
        cli(
            &["map", "delete", "marks"],
            "map \"marks\" is used by chain uses: detach or change it first",
        ),
        cli(
            &["set", "add", "-f", &format!("{t}/none.txt"), "hosts"],
            "",
        ),
    ];
    // the file case's message names the path
    let nofile = format!("{t}/none.txt: cannot read: No such file or directory (os error 2)");
    cases.last_mut().expect("the file case").1 = nofile;
    let p_unknown = pol(
        "unknown-set",
        &ch("x", &sel("  kind = \"src\"\n  set = \"nosuch\"")),
    );
    let p_keytype = pol(
        "key-type",
        &format!(
            "{TABLES}{}",
            ch("x", &sel("  kind = \"src\"\n  set = \"ports\""))
        ),
    );
    let p_keytype_applied = pol(
        "key-type-applied",
        &ch("x", &sel("  kind = \"dst\"\n  set = \"ports\"")),
    );
    let p_valtype = pol(
        "value-type",
        &ch(
            "x",
            "  [[chain.act]]\n  kind = \"set_mark\"\n  mark = { map = \"flags\", key = \"src\" }\n",
        ),
    );
    let p_set_as_map = pol(
        "set-as-map",
        &ch(
            "x",
            "  [[chain.act]]\n  kind = \"set_mark\"\n  mark = { map = \"hosts\", key = \"src\" }\n",
        ),
    );
    let p_type = pol("set-type", "[[set]]\nname = \"s\"\ntype = \"mac\"\n");
    let p_elem = pol(
        "set-elem",
        "[[set]]\nname = \"s\"\ntype = \"pair\"\nelements = [\"10.0.0.1\"]\n",
    );
    let p_size = pol(
        "set-size",
        "[[set]]\nname = \"s\"\ntype = \"port\"\nsize = 2\nelements = [\"1\", \"2\", \"3\"]\n",
    );
    let p_mapval = pol(
        "map-value",
        "[[map]]\nname = \"m\"\nkey = \"port\"\nvalue = \"rate\"\nelements = { \"80\" = \"fast\" }\n",
    );
    let p_retype = pol(
        "set-retype",
        "[[set]]\nname = \"hosts\"\ntype = \"prefix\"\n",
    );
    // 40 stages (past the tail calls) looking up addr sets of five sizes:
    // a program binds four
    let mut sizes = String::new();
    for i in 1..=5 {
        sizes += &format!(
            "[[set]]\nname = \"z{i}\"\ntype = \"addr\"\nsize = {}\nelements = [\"10.9.0.{i}\"]\n",
            1000 << i
        );
    }
    let names: Vec<String> = (1..=20).map(|i| format!("w{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        sizes += &chain_text(
            n,
            &x1a,
            "tc-ingress",
            &a,
            &sel(&format!("  kind = \"src\"\n  set = \"z{}\"", i % 5 + 1)),
        );
    }
    let p_sizes = pol("five-sizes", &sizes);
    // 64 chains of one addr-set lookup each on one hook: past tail calls,
    // and too complex for the verifier as one walk
    let mut many =
        String::from("[[set]]\nname = \"one\"\ntype = \"addr\"\nelements = [\"10.9.1.1\"]\n");
    let many_names: Vec<String> = (1..=64).map(|i| format!("t{i}")).collect();
    for n in &many_names {
        many += &chain_text(
            n,
            &x1a,
            "tc-ingress",
            &a,
            &sel("  kind = \"src\"\n  set = \"one\""),
        );
    }
    let p_many = pol("many-lookups", &many);
    let policies: Vec<(String, String)> = vec![
        (p_unknown.clone(), "chain \"x\": select[0] (src): no set or map called \"nosuch\" (declare it with [[set]] or [[map]])".into()),
        (p_keytype.clone(), format!("{p_keytype}: chain \"x\": select[0] (src): set \"ports\" has keys of type port, which `src` cannot look up")),
        (p_keytype_applied.clone(), "chain \"x\": select[0] (dst): set \"ports\" has keys of type port, which `dst` cannot look up".into()),
        (p_valtype.clone(), "chain \"x\": act[0] (set_mark): map \"flags\" has bool values, not u32".into()),
        (p_set_as_map.clone(), "chain \"x\": act[0] (set_mark): \"hosts\" is a set; a map of u32 values is needed".into()),
        (p_type.clone(), format!("{p_type}: set \"s\": key `type`: \"mac\" is not one of addr, prefix, pair, subflow, port")),
        (p_elem.clone(), format!("{p_elem}: set \"s\": element \"10.0.0.1\": \"10.0.0.1\" is not `A . B` (two parts joined by \" . \")")),
        (p_size.clone(), format!("{p_size}: set \"s\": 3 elements do not fit its size 2")),
        (p_mapval.clone(), format!("{p_mapval}: map \"m\": element \"80=fast\": \"fast\" is not a rate (a number with a tc unit: 100kbit, 20mbit, 1gbit, 5MBps)")),
        (p_retype.clone(), "set \"hosts\": exists with addr keys; `emptcp set delete` it first".into()),
        (p_sizes.clone(), format!("the walk of chains {} (tc) looks up addr, prefix, pair and subflow tables of 5 sizes; one program holds 4: give the sets and maps it uses fewer sizes", names.join(", "))),
        (p_many.clone(), format!("failed to load the walk of chains {} (tc): verifier: The sequence of 8193 jumps is too complex: the walk is too complex for the verifier; put fewer chains on this attach point (one chain looking up a set serves many tenants)", many_names.join(", "))),
    ];
    let mut all: Vec<(Vec<String>, String)> = cases
        .into_iter()
        .map(|(a, w)| (a, format!("emptcp: {w}")))
        .collect();
    for (p, w) in policies {
        all.push((vec!["apply".into(), p], format!("emptcp: {w}")));
    }

    let mut table = String::from("| case | message (stderr, exit status 1) |\n|---|---|\n");
    let mut fails = Vec::new();
    for (args, want) in &all {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = bed.emptcp(&argv);
        let mut errs = Vec::new();
        if o.code != Some(1) {
            errs.push(format!("exit status {:?}", o.code));
        }
        if o.stderr != format!("{want}\n") {
            errs.push(format!("stderr is not exactly\n    {want}"));
        }
        if !o.stdout.is_empty() {
            errs.push(format!("output on stdout: {}", o.stdout.trim()));
        }
        let after = (snapshot(&bed), tables_snapshot(&bed));
        if after != before {
            errs.push(format!("state changed:\n{before:#?}\n->\n{after:#?}"));
        }
        let shown_args = args.join(" ").replace(&t, "/tmp/x");
        table += &format!(
            "| `emptcp {shown_args}` | `{}` |\n",
            o.stderr.trim_end().replace(&t, "/tmp/x")
        );
        if !errs.is_empty() {
            fails.push(format!(
                "emptcp {}: {}\n  stderr: {}",
                args.join(" "),
                errs.join("; "),
                o.stderr.trim()
            ));
        }
    }
    eprintln!("{table}");
    assert!(
        fails.is_empty(),
        "set and map bad input:\n{}",
        fails.join("\n\n")
    );
}

/// A set whose array emptcp cannot map (here: an address-space limit
/// below the 64 MiB array of a set of size 400,000; in life, memory
/// pressure) refuses `set add` in one line naming the set and adds none.
#[test]
fn a_table_that_cannot_be_mapped_is_one_line_nothing_changed() {
    use std::os::unix::process::CommandExt as _;
    if !root_or_skip("a_table_that_cannot_be_mapped_is_one_line_nothing_changed") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let base = bed.policy(
        "big",
        "[[set]]\nname = \"bigs\"\ntype = \"addr\"\nsize = 400000\nelements = [\"10.88.0.1\"]\n",
    );
    bed.emptcp(&["apply", base.to_str().unwrap()]).expect_ok();
    // enough keys that `add` maps the whole array at once
    let file = bed.tmp.join("many.txt");
    let many: String = (0..2000u32)
        .map(|i| format!("10.90.{}.{}\n", i / 250, i % 250))
        .collect();
    std::fs::write(&file, many).expect("write the element file");
    let limit = 64u64 << 20;
    let mut cmd = std::process::Command::new(EMPTCP);
    cmd.arg("--state-dir")
        .arg(&bed.state_dir)
        .args(["set", "add", "-f"])
        .arg(&file)
        .arg("bigs")
        .env("EMPTCP_STATE_DIR", &bed.state_dir)
        .stdin(std::process::Stdio::null());
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe,
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd
        .output()
        .expect("run emptcp under an address-space limit");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "exit status; stderr: {stderr}");
    assert!(
        stderr.starts_with("emptcp: set \"bigs\": failed to map the table's array")
            && stderr.lines().count() == 1,
        "one line naming the set: {stderr:?}"
    );
    let list = bed.emptcp(&["set", "list", "bigs"]).expect_ok();
    assert_eq!(list.stdout.trim(), "10.88.0.1", "no element was added");
}

/// Sets and maps belong to the state directory, not to the chains that
/// use them: detaching one user leaves them to the other, detaching the
/// last leaves them in place (elements and all), until `set delete` or
/// `detach --all`.
#[test]
fn sets_outlive_the_chains_that_use_them() {
    if !root_or_skip("sets_outlive_the_chains_that_use_them") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let (a, x1a, x2a) = (bed.a.clone(), bed.x1a.clone(), bed.x2a.clone());
    let user = |name: &str, dev: &str| {
        chain_text(
            name,
            dev,
            "tc-egress",
            &a,
            "  [[chain.select]]\n  kind = \"src\"\n  set = \"hosts\"\n\
             [[chain.act]]\n  kind = \"set_mark\"\n  mark = { map = \"marks\", key = \"src\" }\n",
        )
    };
    let p = bed.policy(
        "two",
        &format!("{TABLES}{}{}", user("one", &x1a), user("two", &x2a)),
    );
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    bed.emptcp(&["set", "add", "hosts", "10.7.0.1"]).expect_ok();
    // one new element given twice fills the last place of a set of 2
    bed.emptcp(&["set", "add", "small", "10.0.0.2", "10.0.0.2"])
        .expect_ok();
    assert_eq!(
        bed.emptcp(&["set", "list", "small"]).expect_ok().stdout,
        "10.0.0.1\n10.0.0.2\n"
    );
    let list = |what: &str, name: &str| bed.emptcp(&[what, "list", name]);
    let hosts = "10.1.0.1\n10.7.0.1\nfd00:1::1\n";
    assert_eq!(list("set", "hosts").expect_ok().stdout, hosts);
    let used_by = |name: &str| -> String {
        let o = bed.emptcp(&["show"]).expect_ok();
        o.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("set {name}:")))
            .unwrap_or_else(|| panic!("no set {name} in show:\n{}", o.stdout))
            .to_owned()
    };
    assert!(
        used_by("hosts").contains("one, two"),
        "{}",
        used_by("hosts")
    );

    // one user detached: the other still uses the set, elements unchanged
    bed.emptcp(&["detach", "one"]).expect_ok();
    assert_eq!(
        list("set", "hosts").expect_ok().stdout,
        hosts,
        "after detach one"
    );
    assert_eq!(list("map", "marks").expect_ok().stdout, "10.1.0.1 = 1\n");
    let line = used_by("hosts");
    assert!(line.contains("two") && !line.contains("one"), "{line}");
    let o = bed.emptcp(&["set", "delete", "hosts"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            Some(1),
            "emptcp: set \"hosts\" is used by chain two: detach or change it first\n"
        ),
        "still in use by two"
    );
    // the last user detached: the set stays, unused, and changes still work
    bed.emptcp(&["detach", "two"]).expect_ok();
    assert_eq!(
        list("set", "hosts").expect_ok().stdout,
        hosts,
        "after detach two"
    );
    bed.emptcp(&["set", "del", "hosts", "10.7.0.1"]).expect_ok();
    assert_eq!(
        list("set", "hosts").expect_ok().stdout,
        "10.1.0.1\nfd00:1::1\n"
    );
    // and a chain applied later finds it as it was
    let p1 = bed.policy("again", &user("one", &x1a));
    bed.emptcp(&["apply", p1.to_str().unwrap()]).expect_ok();
    assert_eq!(
        list("set", "hosts").expect_ok().stdout,
        "10.1.0.1\nfd00:1::1\n"
    );
    bed.emptcp(&["detach", "one"]).expect_ok();
    // set delete removes one table; detach --all the rest
    bed.emptcp(&["set", "delete", "hosts"]).expect_ok();
    let o = list("set", "hosts");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (Some(1), "emptcp: no set or map called \"hosts\"\n")
    );
    assert_eq!(list("map", "marks").expect_ok().stdout, "10.1.0.1 = 1\n");
    bed.emptcp(&["detach", "--all"]).expect_ok();
    let o = list("map", "marks");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (Some(1), "emptcp: no set or map called \"marks\"\n"),
        "detach --all removes the tables"
    );
    let left: Vec<_> = std::fs::read_dir(&bed.state_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "detach --all leaves {left:?}");
}

/// A state directory made by applying one plain chain, with its pin of
/// `map` taken away for the test to put an older emptcp's map there.
fn state_with_an_older(test: &str, map: &str) -> Option<(Testbed, std::path::PathBuf)> {
    if !root_or_skip(test) {
        return None;
    }
    let bed = Testbed::new(Family::V4);
    let plain = chain_text("plain", &bed.x1a, "tc-egress", &bed.a, PASS);
    let p = bed.policy("plain", &plain);
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    let pin = bed.state_dir.join(map);
    let _ = std::fs::remove_file(&pin);
    Some((bed, pin))
}

/// A state directory whose table maps an older emptcp made (the outer map
/// of `addr` tables holding kernel hash maps, as before tables became
/// arrays): apply, `set add` and `set list` refuse in one line naming the
/// map and the way out, and after `detach --all` the same policy applies.
#[test]
fn tables_of_an_older_emptcp_are_refused_in_one_line() {
    use libbpf_rs::{MapCore, MapHandle, MapType};
    use std::os::fd::{AsFd, AsRawFd};

    let Some((bed, pin)) = state_with_an_older(
        "tables_of_an_older_emptcp_are_refused_in_one_line",
        // the outer map of addr tables of the default size (65,536
        // elements: 2^18 slots)
        "emptcp_g_tab_addr_18",
    ) else {
        return;
    };
    let (a, x1a) = (bed.a.clone(), bed.x1a.clone());

    // the outer map as the older emptcp made it: a hash map template
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: libbpf_sys::BPF_F_NO_PREALLOC,
        ..Default::default()
    };
    let tmpl = MapHandle::create(MapType::Hash, Some("old_tmpl"), 16, 8, 1, &opts).unwrap();
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        inner_map_fd: tmpl.as_fd().as_raw_fd() as u32,
        ..Default::default()
    };
    let mut outer = MapHandle::create(
        MapType::ArrayOfMaps,
        Some("emptcp_g_tab_addr_18"),
        4,
        4,
        emptcp::tables::MAX_TABLES,
        &opts,
    )
    .unwrap();
    outer.pin(&pin).unwrap();

    let with_set = format!(
        "[[set]]\nname = \"hosts\"\ntype = \"addr\"\nelements = [\"10.1.0.1\"]\n{}",
        chain_text(
            "uses",
            &x1a,
            "tc-egress",
            &a,
            &format!("  [[chain.select]]\n  kind = \"src\"\n  set = \"hosts\"\n{PASS}"),
        )
    );
    let p = bed.policy("with_set", &with_set);
    let want = format!(
        "emptcp: {} holds addr (2^18 slots) tables of an older emptcp (another table type): remove the old \
         state with `emptcp detach --all`, then apply again",
        pin.display()
    );
    for args in [
        vec!["apply", p.to_str().unwrap()],
        vec!["set", "add", "hosts", "10.1.0.2"],
        vec!["set", "list", "hosts"],
    ] {
        let o = bed.emptcp(&args);
        assert_eq!(o.code, Some(1), "{}: {}", o.cmdline, o.stderr);
        let lines = o.stderr_lines();
        assert!(
            lines.len() == 1 && (lines[0] == want || args[0] == "set"),
            "{}: {:?}",
            o.cmdline,
            lines
        );
    }
    bed.emptcp(&["detach", "--all"]).expect_ok();
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    assert_eq!(
        bed.emptcp(&["set", "list", "hosts"]).expect_ok().stdout,
        "10.1.0.1\n"
    );
    // made by today's emptcp, the outer map carries a name of its own, so
    // that later commands take it without the probe (two RCU waits)
    let made = MapHandle::from_pinned_path(&pin).unwrap();
    assert_eq!(made.info().unwrap().name().unwrap(), "emptcp_t3_a18");
}

/// A state directory whose per-subflow records are the older LRU maps:
/// `apply` of a chain with `record` and `stats` each say so in one line,
/// nothing is applied, and `detach --all` clears the way.
#[test]
fn flow_records_of_an_older_emptcp_are_refused_in_one_line() {
    use libbpf_rs::{MapCore, MapHandle, MapType};

    let Some((bed, pin)) = state_with_an_older(
        "flow_records_of_an_older_emptcp_are_refused_in_one_line",
        "emptcp_g_flows",
    ) else {
        return;
    };
    let (a, x1a) = (bed.a.clone(), bed.x1a.clone());

    // the records as the older emptcp kept them: an LRU hash of 152-byte values
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let mut old = MapHandle::create(
        MapType::LruHash,
        Some("emptcp_g_flows"),
        40,
        152,
        1024,
        &opts,
    )
    .unwrap();
    old.pin(&pin).unwrap();
    old.update(&[7u8; 40], &[1u8; 152], libbpf_rs::MapFlags::ANY)
        .unwrap();

    let rec = chain_text(
        "oldrec",
        &x1a,
        "tc-egress",
        &a,
        "  [[chain.act]]\n  kind = \"record\"\n",
    );
    let p = bed.policy("rec", &rec);
    let o = bed.emptcp(&["apply", p.to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{}: {}", o.cmdline, o.stderr);
    let lines = o.stderr_lines();
    assert!(
        lines.len() == 1
            && lines[0].contains("emptcp_g_flows")
            && lines[0].contains("emptcp detach --all"),
        "{}: {:?}",
        o.cmdline,
        lines
    );
    let shown = bed.emptcp(&["show"]).expect_ok().stdout;
    assert!(
        !shown.contains("oldrec"),
        "nothing of the refused apply is shown:\n{shown}"
    );

    let o = bed.emptcp(&["stats"]);
    assert_eq!(o.code, Some(1), "{}: {}", o.cmdline, o.stderr);
    assert_eq!(
        o.stderr_lines(),
        vec![
            "emptcp: emptcp_g_flows holds the per-subflow records of an older emptcp (LruHash): \
             `emptcp detach --all`"
                .to_owned()
        ],
        "{}",
        o.cmdline
    );

    bed.emptcp(&["detach", "--all"]).expect_ok();
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    bed.emptcp(&["stats"]).expect_ok();
}

/// A state directory an emptcp of another state version wrote (version
/// 1: one prefix trie for both families, which today's stages would miss
/// IPv4 in): `apply` refuses in one line, and the `detach --all` the line
/// asks for removes it, so that the same policy applies again.
#[test]
fn a_state_of_another_version_is_refused_and_detach_all_clears_it() {
    let test = "a_state_of_another_version_is_refused_and_detach_all_clears_it";
    if !root_or_skip(test) {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let plain = chain_text("plain", &bed.x1a, "tc-egress", &bed.a, PASS);
    let p = bed.policy("plain", &plain);
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    assert_eq!(
        tcx_count(&bed.a, &bed.x1a, true),
        1,
        "the chain is attached"
    );
    let sd = emptcp::state::StateDir::open(&bed.state_dir, false)
        .unwrap()
        .expect("the state dir");
    let mut st = sd.load().unwrap();
    st.version = 1;
    sd.save(&st).unwrap();
    drop(sd);

    let o = bed.emptcp(&["apply", p.to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{}: {}", o.cmdline, o.stderr);
    assert_eq!(
        o.stderr_lines(),
        ["emptcp: state written by another emptcp version (1); `emptcp detach --all` first"],
        "{}",
        o.cmdline
    );
    // the refused apply changed nothing in the kernel
    assert_eq!(
        tcx_count(&bed.a, &bed.x1a, true),
        1,
        "after the refused apply"
    );
    bed.emptcp(&["detach", "--all"]).expect_ok();
    assert!(
        !bed.state_dir.exists(),
        "detach --all left {}",
        bed.state_dir.display()
    );
    // the kernel's tcx list of the device, not emptcp's word
    assert_eq!(
        tcx_count(&bed.a, &bed.x1a, true),
        0,
        "detach --all left a program"
    );
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    assert_eq!(tcx_count(&bed.a, &bed.x1a, true), 1, "applied again");
}
