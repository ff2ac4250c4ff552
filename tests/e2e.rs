//! End-to-end tests: the `emptcp` binary on real MPTCP connections between
//! two network namespaces joined by two veth pairs. Every assertion that
//! matters reads the kernel's state (`ss -tni` subflow flags, `nstat`
//! counters, XDP/tcx attachments, bpftool object ids), not emptcp's own
//! counters. Needs root; as a normal user every test prints
//! "SKIPPED: needs root" and passes. On a kernel without MPTCP (Debian
//! 11's 5.10) the tests that need MPTCP end hosts print "SKIPPED: kernel
//! without MPTCP"; the wire test and those of apply/check/detach run.
//!
//! Run: `cargo test --test e2e` (as root).

mod netlib;
#[allow(dead_code)]
mod pktlib;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use netlib::wire::{send_frames, server_addr_on, Capture};
use netlib::*;
use pktlib::build::Pkt;
use pktlib::opts;
use serde_json::Value;

/// A set_backup chain: selects the subflow from `src`, adds MP_PRIO.
fn backup_policy(name: &str, dev: &str, hook: &str, ns: &str, src: IpAddr, backup: bool) -> String {
    format!(
        r#"[[chain]]
name = "{name}"
dev = "{dev}"
hook = "{hook}"
netns = "{ns}"
  [[chain.select]]
  kind = "ip_pair"
  src = "{src}"
  [[chain.act]]
  kind = "set_backup"
  backup = {backup}
"#
    )
}

/// The server's view, for failure messages.
fn server_view(bed: &Testbed) -> String {
    let (_, ss) = ss_tni(&bed.b);
    let n = nstat(&bed.b);
    let pick: Vec<String> = n
        .iter()
        .filter(|(k, v)| **v > 0 && (k.starts_with("MPTcpExt") || k.contains("Csum")))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("ss -tni in {}:\n{ss}\nnstat: {}", bed.b, pick.join(" "))
}

fn assert_no_csum_errors(bed: &Testbed) {
    for ns in [&bed.a, &bed.b] {
        let n = counter(ns, "TcpInCsumErrors");
        assert_eq!(n, 0, "TcpInCsumErrors {n} in {ns}\n{}", server_view(bed));
    }
}

/// The scenario of (a), (b), (c): a set_backup chain applied before the
/// connection; the server must see the joined subflow as backup.
fn backup_scenario(test: &str, fam: Family, hook: &str, mode: Option<&str>, control: bool) {
    if !root_or_skip(test) {
        return;
    }
    let bed = Testbed::new(fam);

    if control {
        // without a policy: two subflows, no backup flag, no MP_PRIO
        let mut t = Transfer::start(&bed, Duration::from_millis(1000));
        t.wait_sent();
        let (socks, _) = ss_tni(&bed.b);
        let j = subflow_from(&socks, bed.client_addr2())
            .unwrap_or_else(|| panic!("control: no joined subflow\n{}", server_view(&bed)));
        assert!(
            j.flags.contains('J') && !j.flags.contains('B'),
            "control: joined subflow flags {:?}\n{}",
            j.flags,
            server_view(&bed)
        );
        assert_complete(t.finish());
        assert_eq!(
            counter(&bed.b, "MPTcpExtMPPrioRx"),
            0,
            "control: MP_PRIO without a policy"
        );
    }

    // XDP runs on the server's ingress (x2b), TC on the client's egress (x2a)
    let (ns, dev) = if hook == "xdp" {
        (&bed.b, &bed.x2b)
    } else {
        (&bed.a, &bed.x2a)
    };
    let pol = bed.policy(
        "backup",
        &backup_policy("t-backup", dev, hook, ns, bed.client_addr2(), true),
    );
    let pol = pol.to_string_lossy().into_owned();
    let mut args = vec!["apply", pol.as_str()];
    if let Some(m) = mode {
        args.extend(["--xdp-mode", m]);
    }
    let o = bed.emptcp(&args).expect_ok();
    assert!(o.stdout.contains("applied t-backup"), "{}", o.stdout);
    match (hook, mode) {
        ("xdp", Some("generic")) => assert_eq!(xdp_mode(ns, dev), Some(2), "not generic XDP"),
        ("xdp", _) => assert_eq!(xdp_mode(ns, dev), Some(1), "not native XDP"),
        ("tc-egress", _) => assert_eq!(tcx_count(ns, dev, true), 1, "no tcx egress program"),
        _ => unreachable!(),
    }

    let prio0 = counter(&bed.b, "MPTcpExtMPPrioRx");
    let mut t = Transfer::start(&bed, Duration::from_millis(2000));
    t.wait_sent();
    let (socks, _) = ss_tni(&bed.b);
    let joined = subflow_from(&socks, bed.client_addr2())
        .unwrap_or_else(|| panic!("no joined subflow\n{}", server_view(&bed)));
    assert!(
        joined.flags.contains('J') && joined.flags.contains('B'),
        "joined subflow not backup: flags {:?}\n{}",
        joined.flags,
        server_view(&bed)
    );
    let first = subflow_from(&socks, bed.client_addr1())
        .unwrap_or_else(|| panic!("no initial subflow\n{}", server_view(&bed)));
    assert!(
        first.flags.contains('M') && !first.flags.contains('B'),
        "initial subflow flags {:?}\n{}",
        first.flags,
        server_view(&bed)
    );
    let prio = counter(&bed.b, "MPTcpExtMPPrioRx");
    assert!(
        prio > prio0,
        "server MPPrioRx {prio0} -> {prio}\n{}",
        server_view(&bed)
    );
    assert_complete(t.finish());
    assert_no_csum_errors(&bed);
    for ns in [&bed.a, &bed.b] {
        let fb: Vec<_> = fallback_counters(ns)
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .collect();
        assert!(fb.is_empty(), "fallback in {ns}: {fb:?}");
    }
    // emptcp's own view agrees (secondary)
    let show = show_json(&bed);
    assert!(
        stage_counter(&show, "t-backup", "set_backup", "hit") >= 1,
        "{show:#}"
    );
}

/// (a) TC egress on the client's second link marks the joined subflow backup.
#[test]
fn tc_egress_set_backup_v4() {
    backup_scenario(
        "tc_egress_set_backup_v4",
        Family::V4,
        "tc-egress",
        None,
        true,
    );
}

/// A frame as the wire test reads it: source port, payload bytes, TCP
/// header bytes, MPTCP subtypes in order, MP_PRIO's backup bit.
type WireRow = (u16, usize, usize, Vec<u8>, Option<bool>);

/// The middle node on the wire, on any kernel, MPTCP in it or not (Debian
/// 11's 5.10 has none: there this is the set_backup test that can run).
/// The segments an MPTCP client sends are made here and injected into the
/// client's second link (AF_PACKET: they pass its TC egress hook); what
/// arrives at the far end is captured there and decoded by the test's
/// packet library (etherparse cross-checked, checksums verified):
/// - a pure ACK with a DSS from the selected address arrives with MP_PRIO
///   (backup) after its DSS, 4 bytes longer;
/// - the same from the other address arrives unchanged;
/// - a data segment from the selected address: where the kernel has
///   `bpf_cast_to_kern_ctx` (6.2), a pure ACK with MP_PRIO goes out just
///   before it (the trimmed clone); before 6.2 only the segment itself.
///
/// Without MPTCP in the kernel it also checks what that kernel does: no
/// MPTCP socket (EPROTONOSUPPORT), and `apply` warns in one line.
#[test]
fn tc_egress_set_backup_wire_v4() {
    use pktlib::decode::verify_tcp;
    if !root_only_or_skip("tc_egress_set_backup_wire_v4") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let mptcp = kernel_has_mptcp();
    if !mptcp {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, IPPROTO_MPTCP) };
        let err = std::io::Error::last_os_error().raw_os_error();
        assert!(
            fd < 0 && err == Some(libc::EPROTONOSUPPORT),
            "socket(IPPROTO_MPTCP) on a kernel without net.mptcp: fd {fd}, errno {err:?}"
        );
    }
    let pol = bed.policy(
        "wire",
        &backup_policy(
            "t-wire",
            &bed.x2a,
            "tc-egress",
            &bed.a,
            bed.client_addr2(),
            true,
        ),
    );
    let o = bed.emptcp(&["apply", &pol.to_string_lossy()]).expect_ok();
    assert!(o.stdout.contains("applied t-wire"), "{}", o.stdout);
    if !mptcp {
        let w: Vec<&str> = o
            .stderr
            .lines()
            .filter(|l| l.contains("no net.mptcp sysctls"))
            .collect();
        assert_eq!(w.len(), 1, "one warning line: {}", o.stderr);
    }
    assert_eq!(tcx_count(&bed.a, &bed.x2a, true), 1, "no TC egress program");

    let cap = Capture::start(&bed.b, &bed.x2b);
    let srv = server_addr_on(&bed, 2);
    let ts = opts::nop_nop_ts(1000, 2000);
    let ack = |src: IpAddr, sport: u16| {
        Pkt::ip(src, srv)
            .ports(sport, PORT)
            .opts(opts::cat(&[&ts, &opts::dss_ack(0x5000)]))
            .build()
    };
    let data = Pkt::ip(bed.client_addr2(), srv)
        .ports(40003, PORT)
        .flags(pktlib::build::ACK | pktlib::build::PSH)
        .opts(opts::padded(&[&ts, &opts::dss_map(0x5000, 0x7000, 100)]))
        .payload(100)
        .build();
    let frames = vec![
        ack(bed.client_addr2(), 40001),
        ack(bed.client_addr1(), 40002),
        data,
    ];
    send_frames(&bed.a, &bed.x2a, frames).expect("inject");
    let clone = emptcp::features::get().kern_ctx;
    let expect = if clone { 4 } else { 3 };
    let to_server = |f: &[u8]| {
        let d = pktlib::decode::decode(f);
        d.tcp.is_some() && d.field("tcp.dport") == Some(&PORT.to_string())
    };
    let got = cap.frames(expect, Duration::from_secs(10), to_server);
    let rows: Vec<WireRow> = got
        .iter()
        .map(|f| {
            let d = verify_tcp(f).unwrap_or_else(|p| {
                panic!(
                    "a bad frame on the wire: {p:?}\n{}",
                    pktlib::decode::summary(f)
                )
            });
            let t = d.tcp.as_ref().expect("TCP");
            let sport: u16 = d.field("tcp.sport").unwrap().parse().unwrap();
            let subtypes: Vec<u8> = t.opts.iter().filter_map(|o| o.mptcp_subtype()).collect();
            let backup = t
                .opts
                .iter()
                .find(|o| o.mptcp_subtype() == Some(5))
                .map(|o| o.bytes[2] & 1 == 1);
            (
                sport,
                t.ip_end - t.l4_off - t.hlen,
                t.hlen,
                subtypes,
                backup,
            )
        })
        .collect();
    let shown = format!("{rows:?}");
    assert_eq!(
        rows.len(),
        expect,
        "frames at x2b (port, payload, hdr, subtypes, backup): {shown}"
    );
    let of = |port: u16| rows.iter().filter(|r| r.0 == port).collect::<Vec<_>>();
    // selected pure ACK: 20 + 12 (NOP NOP TS) + 8 (DSS) + 4 (MP_PRIO + NOP)
    let sel = of(40001);
    assert_eq!(sel.len(), 1, "{shown}");
    assert_eq!((sel[0].1, sel[0].2), (0, 44), "{shown}");
    assert_eq!(
        (sel[0].3.as_slice(), sel[0].4),
        (&[2, 5][..], Some(true)),
        "{shown}"
    );
    let other = of(40002);
    assert_eq!(other.len(), 1, "{shown}");
    assert_eq!(
        (other[0].2, other[0].3.as_slice()),
        (40, &[2][..]),
        "{shown}"
    );
    let d = of(40003);
    if clone {
        assert_eq!(d.len(), 2, "clone and segment: {shown}");
        assert!(d.iter().any(|r| r.1 == 0 && r.4 == Some(true)), "{shown}");
        assert!(d.iter().any(|r| r.1 == 100 && r.3 == [2]), "{shown}");
    } else {
        assert_eq!(d.len(), 1, "the segment only: {shown}");
        assert_eq!((d[0].1, d[0].3.as_slice()), (100, &[2][..]), "{shown}");
    }
    // emptcp's own view agrees (secondary)
    let show = show_json(&bed);
    assert!(
        stage_counter(&show, "t-wire", "set_backup", "hit") >= 1,
        "{show:#}"
    );
}

/// (b) XDP (generic) on the server's second link: the server's stack sees
/// MP_PRIO in the client's segments.
#[test]
fn xdp_generic_set_backup_v4() {
    backup_scenario(
        "xdp_generic_set_backup_v4",
        Family::V4,
        "xdp",
        Some("generic"),
        false,
    );
}

/// (b) XDP in auto mode, which on veth is native (driver) XDP; nothing is
/// attached to the peer device.
#[test]
fn xdp_native_set_backup_v4() {
    backup_scenario("xdp_native_set_backup_v4", Family::V4, "xdp", None, false);
}

/// (c) IPv6 variant of (a).
#[test]
fn tc_egress_set_backup_v6() {
    backup_scenario(
        "tc_egress_set_backup_v6",
        Family::V6,
        "tc-egress",
        None,
        false,
    );
}

const GOOD: &str = r#"[[chain]]
name = "t-check"
dev = "lo"
hook = "tc-egress"
  [[chain.select]]
  kind = "ip_pair"
  src = "10.2.0.1"
  [[chain.act]]
  kind = "set_backup"
  backup = true
"#;

fn assert_one_line_failure(o: &Out, file: &Path, want: &str) {
    assert!(!o.ok(), "`{}` succeeded", o.cmdline);
    let lines = o.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "`{}`: expected one stderr line, got {:?}",
        o.cmdline,
        o.stderr
    );
    assert!(lines[0].starts_with("emptcp: "), "{:?}", lines[0]);
    assert!(
        lines[0].contains(&*file.to_string_lossy()),
        "error does not name the file: {:?}",
        lines[0]
    );
    assert!(
        lines[0].contains(want),
        "error {:?} lacks {want:?}",
        lines[0]
    );
    assert!(o.stdout.trim().is_empty(), "stdout: {}", o.stdout);
}

/// (d) `check` on wrong policies: one stderr line naming file, chain and
/// key, non-zero exit, nothing created. A good policy passes the verifier.
#[test]
fn check_wrong_policy_one_line() {
    if !root_only_or_skip("check_wrong_policy_one_line") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let cases: &[(&str, String, &str)] = &[
        (
            "hook",
            GOOD.replace("\"tc-egress\"", "\"egress\""),
            "chain \"t-check\": key `hook`: unknown hook \"egress\"",
        ),
        (
            "addr",
            GOOD.replace("\"10.2.0.1\"", "\"10.2.0\""),
            "select[0] (ip_pair): key `src`: \"10.2.0\" is not an IP address",
        ),
        (
            "kind",
            GOOD.replace("\"set_backup\"", "\"set_bakup\""),
            "act[0]: unknown kind \"set_bakup\"",
        ),
        (
            "key",
            GOOD.replace("backup = true", "backup = true\n  speed = 3"),
            "act[0] (set_backup): unknown key `speed`",
        ),
        (
            "noact",
            GOOD.split("  [[chain.act]]").next().unwrap().to_owned(),
            "needs at least one actor",
        ),
        (
            "dup",
            format!("{GOOD}{GOOD}"),
            "chain \"t-check\": duplicate name",
        ),
    ];
    for (name, text, want) in cases {
        let p = bed.policy(&format!("wrong-{name}"), text);
        let o = bed.emptcp(&["check", &p.to_string_lossy()]);
        assert_one_line_failure(&o, &p, want);
    }
    let p = bed.policy("gone", "");
    std::fs::remove_file(&p).unwrap();
    let o = bed.emptcp(&["check", &p.to_string_lossy()]);
    assert_one_line_failure(&o, &p, "cannot read");

    let p = bed.policy("good", GOOD);
    let o = bed.emptcp(&["check", &p.to_string_lossy()]).expect_ok();
    assert!(o.stdout.contains("ok (1 chains"), "{}", o.stdout);
    // the point's walk, assembled as apply will, went through the verifier
    let o = bed
        .emptcp(&["-v", "check", &p.to_string_lossy()])
        .expect_ok();
    assert!(
        o.stderr.contains("stages (Short):") && o.stderr.contains("instructions verified"),
        "{}",
        o.stderr
    );
    assert!(
        !bed.state_dir.exists(),
        "check created {}",
        bed.state_dir.display()
    );
}

/// (d) A policy that is not valid TOML: still one stderr line.
#[test]
fn check_invalid_toml_one_line() {
    if !root_only_or_skip("check_invalid_toml_one_line") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let p = bed.policy("not-toml", "[[chain]\nname = \"x\"\n");
    let o = bed.emptcp(&["check", &p.to_string_lossy()]);
    assert_one_line_failure(&o, &p, "line 1: not valid TOML");
}

/// (d) `apply` naming a device (or namespace) that does not exist fails with
/// one line, before anything is loaded: no state dir, no pins, nothing
/// attached to any device, not even for the policy's valid chain.
#[test]
fn apply_missing_device_leaves_nothing() {
    if !root_only_or_skip("apply_missing_device_leaves_nothing") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let good = backup_policy(
        "t-good",
        &bed.x2a,
        "tc-egress",
        &bed.a,
        bed.client_addr2(),
        true,
    );
    let cases = [
        (
            "nodev",
            backup_policy(
                "t-bad",
                "nosuchdev0",
                "xdp",
                &bed.b,
                bed.client_addr2(),
                true,
            ),
            "device \"nosuchdev0\" not found",
        ),
        (
            "nons",
            backup_policy(
                "t-bad",
                &bed.x2b,
                "xdp",
                &format!("{}-nope", bed.b),
                bed.client_addr2(),
                true,
            ),
            "not found",
        ),
    ];
    for (name, bad, want) in cases {
        let p = bed.policy(name, &format!("{good}{bad}"));
        let o = bed.emptcp(&["apply", &p.to_string_lossy()]);
        assert!(!o.ok(), "apply with a missing {name} succeeded");
        let lines = o.stderr_lines();
        assert_eq!(lines.len(), 1, "expected one line: {:?}", o.stderr);
        assert!(
            lines[0].starts_with("emptcp: ") && lines[0].contains(want),
            "{:?}",
            lines[0]
        );
        assert!(
            lines[0].contains("t-bad"),
            "error does not name the chain: {:?}",
            lines[0]
        );
        assert!(
            !bed.state_dir.exists(),
            "failed apply left {} (pins: {:?})",
            bed.state_dir.display(),
            std::fs::read_dir(&bed.state_dir).map(|d| d.count()).ok()
        );
        for (ns, dev) in [
            (&bed.a, &bed.x1a),
            (&bed.a, &bed.x2a),
            (&bed.b, &bed.x1b),
            (&bed.b, &bed.x2b),
        ] {
            assert_nothing_attached(ns, dev);
        }
    }
}

/// (d) `detach --all` removes every program, map, link and pin of the state
/// dir (XDP + tcx egress + tcx ingress chains), and the devices are clean.
#[test]
fn detach_all_leaves_nothing() {
    if !root_only_or_skip("detach_all_leaves_nothing") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let pol = [
        backup_policy(
            "t-tc",
            &bed.x2a,
            "tc-egress",
            &bed.a,
            bed.client_addr2(),
            true,
        ),
        backup_policy("t-xdp", &bed.x2b, "xdp", &bed.b, bed.client_addr2(), true),
        backup_policy(
            "t-in",
            &bed.x1b,
            "tc-ingress",
            &bed.b,
            bed.client_addr1(),
            false,
        ),
    ]
    .concat();
    let p = bed.policy("three", &pol);
    let o = bed.emptcp(&["apply", &p.to_string_lossy()]).expect_ok();
    assert_eq!(o.stdout.matches("attached ").count(), 3, "{}", o.stdout);
    assert!(xdp_mode(&bed.b, &bed.x2b).is_some());
    // `show` gives each point the longest walk its stages allow: with
    // set_backup (a stage that keeps state) the short walk's, by tail
    // calls past it, not the light walk's MAX_WALK
    for c in show_json(&bed).as_array().expect("show --json: an array") {
        assert_eq!(
            c["walk_max"],
            emptcp::capacity::MAX_TAIL_CALLS,
            "the longest walk of a point with set_backup: {c}"
        );
    }
    assert_eq!(tcx_count(&bed.a, &bed.x2a, true), 1);
    assert_eq!(tcx_count(&bed.b, &bed.x1b, false), 1);

    let ids = owned_ids(&bed.state_dir);
    let progs = loaded_progs();
    let names: std::collections::BTreeSet<&str> = ids
        .progs
        .iter()
        .map(|id| progs.get(id).map(String::as_str).unwrap_or("?"))
        .collect();
    // the three chains (ip_pair + set_backup) run as short walks
    for want in ["emptcp_entry", "emptcp_walk_short"] {
        assert!(
            names.contains(want),
            "no {want} among the state dir's programs: {names:?}"
        );
    }
    // ... and each device runs its walk program itself: no entry program
    // and no tail call in front of it (XDP here; tcx where the kernel has it)
    let xdp = xdp_prog_id(&bed.b, &bed.x2b).expect("an XDP program on x2b");
    assert_eq!(
        progs.get(&xdp).map(String::as_str),
        Some("emptcp_walk_short"),
        "the program on {}'s XDP hook",
        bed.x2b
    );
    if emptcp::features::get().tcx {
        for (ns, dev, egress) in [(&bed.a, &bed.x2a, true), (&bed.b, &bed.x1b, false)] {
            let on: Vec<&str> = wire::tcx_prog_ids(ns, dev, egress)
                .iter()
                .map(|id| progs.get(&(*id as u64)).map(String::as_str).unwrap_or("?"))
                .collect();
            assert_eq!(on, ["emptcp_walk_short"], "the program on {dev}'s tcx hook");
        }
    }
    assert!(
        names.iter().all(|n| PROG_NAMES.contains(n)),
        "unexpected program names {names:?}"
    );
    // XDP, tcx egress, tcx ingress; without tcx (Linux < 6.6) the TC
    // chains are clsact filters, which are no links
    let links = if emptcp::features::get().tcx { 3 } else { 1 };
    assert_eq!(ids.links.len(), links, "links: {ids:?}");

    let o = bed.emptcp(&["detach", "--all"]).expect_ok();
    assert!(o.stdout.contains("detached 3 chains"), "{}", o.stdout);
    assert!(
        !bed.state_dir.exists(),
        "state dir left: {}",
        bed.state_dir.display()
    );
    // the kernel frees programs and maps asynchronously (RCU, workqueues)
    let t0 = Instant::now();
    let left = wait_for(Duration::from_secs(15), || {
        let l = still_loaded(&ids);
        (l.progs.is_empty() && l.maps.is_empty() && l.links.is_empty()).then_some(())
    });
    if left.is_none() {
        let l = still_loaded(&ids);
        let progs = loaded_progs();
        let users = progs_using(&l.maps);
        let only_maps = l.progs.is_empty() && l.links.is_empty() && users.is_empty();
        panic!(
            "still loaded 15 s after detach --all: progs {:?} maps {:?} links {:?}; \
             programs using those maps: {users:?}{}",
            l.progs
                .iter()
                .map(|i| format!("{i} {}", progs.get(i).cloned().unwrap_or_default()))
                .collect::<Vec<_>>(),
            l.maps
                .iter()
                .map(|i| format!("{i} {}", ids.map_names.get(i).cloned().unwrap_or_default()))
                .collect::<Vec<_>>(),
            l.links,
            if only_maps {
                " (only unused maps left: see netlib::object_exists on the kernel's \
                 prog_array reference leak when maps are opened by id meanwhile)"
            } else {
                ""
            }
        );
    }
    eprintln!(
        "detach_all_leaves_nothing: objects freed after {:?}",
        t0.elapsed()
    );
    for (ns, dev) in [
        (&bed.a, &bed.x1a),
        (&bed.a, &bed.x2a),
        (&bed.b, &bed.x1b),
        (&bed.b, &bed.x2b),
    ] {
        assert_nothing_attached(ns, dev);
    }
    let o = bed.emptcp(&["show"]).expect_ok();
    assert_eq!(o.stdout.trim(), "no chains");
    let o = bed.emptcp(&["detach", "--all"]).expect_ok();
    assert!(o.stdout.contains("detached 0 chains"), "{}", o.stdout);
}

/// (d) An apply whose second attach fails (XDP already taken by another
/// program) undoes the first attach: no tcx program is left, the other XDP
/// program is untouched, no chain is recorded.
#[test]
fn apply_failed_attach_rolls_back() {
    if !root_only_or_skip("apply_failed_attach_rolls_back") {
        return;
    }
    let mut bed = Testbed::new(Family::V4);
    // someone else's XDP program on x2b (an emptcp of another state dir)
    let other = bed.another_state_dir();
    let p = bed.policy(
        "other",
        &backup_policy("t-other", &bed.x2b, "xdp", &bed.b, bed.client_addr2(), true),
    );
    emptcp_in(&other, &["apply", &p.to_string_lossy()]).expect_ok();
    let other_prog = xdp_prog_id(&bed.b, &bed.x2b).expect("other XDP program");

    let pol = [
        backup_policy(
            "t-tc",
            &bed.x2a,
            "tc-egress",
            &bed.a,
            bed.client_addr2(),
            true,
        ),
        backup_policy("t-xdp", &bed.x2b, "xdp", &bed.b, bed.client_addr2(), true),
    ]
    .concat();
    let p = bed.policy("two", &pol);
    let o = bed.emptcp(&["apply", &p.to_string_lossy()]);
    assert!(!o.ok(), "apply onto a taken XDP hook succeeded");
    let lines = o.stderr_lines();
    assert_eq!(lines.len(), 1, "expected one line: {:?}", o.stderr);
    assert!(lines[0].contains("busy"), "{:?}", lines[0]);
    assert_eq!(
        tcx_count(&bed.a, &bed.x2a, true),
        0,
        "first chain's tcx attach not undone"
    );
    assert_eq!(
        xdp_prog_id(&bed.b, &bed.x2b),
        Some(other_prog),
        "the other XDP program changed"
    );
    let show = show_json(&bed);
    assert_eq!(
        show,
        Value::Array(vec![]),
        "chains recorded after a failed apply"
    );
    if bed.state_dir.exists() {
        let ids = owned_ids(&bed.state_dir);
        eprintln!(
            "note: failed apply left {} with {} pinned maps and {} unattached programs (freed by the next apply/detach)",
            bed.state_dir.display(),
            ids.maps.len(),
            ids.progs.len()
        );
    }
}

/// (e) Atomic replacement while traffic flows: chain "t-swap" on the
/// client's first link (where all data, so all client ACKs, flow) first
/// says backup = false, then is applied again saying backup = true. The
/// connection goes on (every byte, no fallback, no checksum error), the
/// tcx link stays the same (no detach/attach window), the new version acts
/// at once (the server's initial subflow turns backup, MPPrioRx rises, the
/// server moves its data to the joined subflow) and `show` reports
/// generation 2.
#[test]
fn replace_chain_under_traffic() {
    if !root_or_skip("replace_chain_under_traffic") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let pol = |backup| {
        backup_policy(
            "t-swap",
            &bed.x1a,
            "tc-egress",
            &bed.a,
            bed.client_addr1(),
            backup,
        )
    };
    let v1 = bed.policy("v1", &pol(false));
    let v2 = bed.policy("v2", &pol(true));
    bed.emptcp(&["apply", &v1.to_string_lossy()]).expect_ok();
    let gen = |bed: &Testbed| show_json(bed)[0]["generation"].as_u64();
    assert_eq!(gen(&bed), Some(1));
    let links_before = owned_ids(&bed.state_dir).links;
    // without tcx (Linux < 6.6): a clsact filter, no link; it must stay too
    let tcx = emptcp::features::get().tcx;
    assert_eq!(links_before.len(), usize::from(tcx), "{links_before:?}");
    let filter = |bed: &Testbed| {
        run(
            "tc",
            &["-n", &bed.a, "filter", "show", "dev", &bed.x1a, "egress"],
        )
        .stdout
    };
    let filter_before = filter(&bed);
    let fb0 = (fallback_counters(&bed.a), fallback_counters(&bed.b));

    // writes for at most 20 s (an emulated guest: 120 s, its apply alone
    // takes 10 s and more); stopped once the swap has been seen to act
    let most = if emulated() { 120 } else { 20 };
    let mut t = Transfer::start(&bed, Duration::from_secs(most));
    // v1 is live (it sent MP_PRIO backup=0): both subflows up, none backup
    let up = wait_for(Duration::from_secs(3), || {
        let (socks, _) = ss_tni(&bed.b);
        let first = subflow_from(&socks, bed.client_addr1())?.flags.clone();
        let joined = subflow_from(&socks, bed.client_addr2())?.flags.clone();
        (counter(&bed.b, "MPTcpExtMPPrioRx") >= 1).then_some((first, joined))
    })
    .unwrap_or_else(|| panic!("v1 not seen acting on two subflows\n{}", server_view(&bed)));
    assert!(
        !up.0.contains('B') && !up.1.contains('B'),
        "backup before the swap: {up:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let prio_before = counter(&bed.b, "MPTcpExtMPPrioRx");

    let t0 = Instant::now();
    let o = bed.emptcp(&["apply", &v2.to_string_lossy()]).expect_ok();
    let took = t0.elapsed();
    assert!(o.stdout.contains("applied t-swap"), "{}", o.stdout);
    assert!(
        !o.stdout.contains("attached"),
        "replacement re-attached: {}",
        o.stdout
    );
    assert!(
        !t.done_sending(),
        "transfer ended before the swap finished (apply took {took:?})"
    );

    // the new version acts on the running connection
    let flipped = wait_for(Duration::from_secs(3), || {
        let (socks, _) = ss_tni(&bed.b);
        subflow_from(&socks, bed.client_addr1()).and_then(|s| s.flags.contains('B').then_some(()))
    });
    assert!(
        flipped.is_some(),
        "initial subflow not backup after the swap\n{}",
        server_view(&bed)
    );
    // the server now sends on the joined (non-backup) subflow
    let joined_sent = || {
        let (socks, _) = ss_tni(&bed.b);
        subflow_from(&socks, bed.client_addr2()).map_or(0, |s| s.field("bytes_sent"))
    };
    let js0 = joined_sent();
    std::thread::sleep(Duration::from_millis(500));
    let js1 = joined_sent();
    assert!(
        js1 > js0,
        "no data moved to the joined subflow ({js0} -> {js1})\n{}",
        server_view(&bed)
    );
    let swapped_while_sending = !t.done_sending();
    t.stop();
    let sent = t.wait_sent();
    eprintln!(
        "replace_chain_under_traffic: apply took {took:?}, {sent} bytes in {:?}",
        t.started.elapsed()
    );
    let prio_after = counter(&bed.b, "MPTcpExtMPPrioRx");
    assert!(
        prio_after > prio_before,
        "MPPrioRx {prio_before} -> {prio_after}"
    );
    let (socks, _) = ss_tni(&bed.b);
    let joined = subflow_from(&socks, bed.client_addr2()).expect("joined subflow");
    assert!(
        !joined.flags.contains('B'),
        "joined subflow became backup: {}",
        joined.flags
    );
    assert_complete(t.finish());
    assert!(
        swapped_while_sending,
        "the swap was not seen before the transfer ended"
    );
    assert_eq!(
        (fallback_counters(&bed.a), fallback_counters(&bed.b)),
        fb0,
        "an MPTCP fallback counter rose"
    );
    assert_no_csum_errors(&bed);

    let show = show_json(&bed);
    assert_eq!(gen(&bed), Some(2), "{show:#}");
    let kinds: Vec<&str> = show[0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["ip_pair", "set_backup"]);
    assert!(
        stage_counter(&show, "t-swap", "set_backup", "hit") >= 1,
        "{show:#}"
    );
    assert_eq!(
        owned_ids(&bed.state_dir).links,
        links_before,
        "the tcx link was replaced"
    );
    assert_eq!(
        filter(&bed),
        filter_before,
        "the clsact filter was replaced"
    );
}
