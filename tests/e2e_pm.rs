//! End-to-end tests of the path-management stages on real MPTCP between
//! two namespaces: `blk_subflow` (ADD_ADDR taken out, MP_JOIN SYNs
//! dropped), `sequence` + `add_subflow` (the kept ADD_ADDR put back after
//! the first megabyte). Every assertion reads the kernel: subflows in
//! `ss -tni`, the MPTcpExt MIB counters (AddAddr, EchoAdd, fallbacks,
//! MPJoin*), checksum errors, and the bytes each subflow carried. Needs
//! root; otherwise every test prints "SKIPPED: needs root" and passes.
//!
//! Topology (tests/netlib): client namespace `a`, server namespace `b`,
//! links 1 (initial subflow) and 2. The default endpoints are replaced per
//! test: the server announces its link-2 address (`signal`), or the client
//! has a `subflow` endpoint on link 2.
//!
//! Run: `cargo test --release --test e2e_pm -- --test-threads=1` (as root).

mod netlib;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use netlib::*;

/// Server link-2 address (announced) and client link-2 address.
fn link2(bed: &Testbed) -> (IpAddr, IpAddr) {
    match bed.fam {
        Family::V4 => ("10.2.0.2".parse().unwrap(), bed.client_addr2()),
        Family::V6 => ("fd00:2::2".parse().unwrap(), bed.client_addr2()),
    }
}

/// Endpoints for the scenario: `signal` = the server announces its link-2
/// address; else the client opens a subflow from its link-2 address.
fn endpoints(bed: &Testbed, signal: bool) {
    for ns in [&bed.a, &bed.b] {
        sh("ip", &["-n", ns, "mptcp", "endpoint", "flush"]);
    }
    let (s2, c2) = link2(bed);
    let (ns, addr, dev, flag) = if signal {
        (&bed.b, s2, &bed.x2b, "signal")
    } else {
        (&bed.a, c2, &bed.x2a, "subflow")
    };
    sh(
        "ip",
        &[
            "-n",
            ns,
            "mptcp",
            "endpoint",
            "add",
            &addr.to_string(),
            "dev",
            dev,
            flag,
        ],
    );
}

/// MPTcpExt counters of a namespace that are not zero.
fn mib(ns: &str) -> BTreeMap<String, u64> {
    nstat(ns)
        .into_iter()
        .filter(|(k, v)| k.starts_with("MPTcpExt") && *v > 0)
        .collect()
}

fn mib_line(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{}={v}", k.trim_start_matches("MPTcpExt")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Both ends' view, for failure messages and the test log.
fn view(bed: &Testbed) -> String {
    let (_, ssa) = ss_tni(&bed.a);
    let (_, ssb) = ss_tni(&bed.b);
    format!(
        "client MIB: {}\nserver MIB: {}\nclient ss -tni:\n{ssa}\nserver ss -tni:\n{ssb}",
        mib_line(&mib(&bed.a)),
        mib_line(&mib(&bed.b))
    )
}

/// Established MPTCP subflows in a namespace (listeners excluded).
fn subflows(ns: &str) -> Vec<Sock> {
    let (socks, _) = ss_tni(ns);
    socks
        .into_iter()
        .filter(|s| s.state == "ESTAB" && s.is_subflow())
        .collect()
}

fn mib_of(m: &BTreeMap<String, u64>, name: &str) -> u64 {
    m.get(&format!("MPTcpExt{name}")).copied().unwrap_or(0)
}

/// Whether the kernel has an MPTCP MIB counter at all: Linux 6.1 has no
/// AddAddrTx and no MPJoinSynTx (it counts what it receives, not what it
/// sends); 6.12 has both.
fn has_mib(ns: &str, name: &str) -> bool {
    nstat(ns).contains_key(&format!("MPTcpExt{name}"))
}

/// blk_subflow's `hit` counter over all chains (emptcp's own view).
fn blk_hits(bed: &Testbed) -> u64 {
    let show: serde_json::Value =
        serde_json::from_str(&bed.emptcp(&["show", "--json"]).expect_ok().stdout).expect("json");
    show.as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["stages"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["kind"] == "blk_subflow")
        .filter_map(|s| s["counters"]["hit"].as_u64())
        .sum()
}

fn assert_no_fallback(bed: &Testbed, what: &str) {
    for ns in [&bed.a, &bed.b] {
        let f = fallback_counters(ns);
        assert!(
            f.values().all(|v| *v == 0),
            "{what}: fallback counters in {ns}: {f:?}\n{}",
            view(bed)
        );
        let n = counter(ns, "TcpInCsumErrors");
        assert_eq!(n, 0, "{what}: TcpInCsumErrors {n} in {ns}\n{}", view(bed));
    }
}

fn assert_complete(r: TransferResult, what: &str) {
    assert!(r.sent > 0, "{what}: nothing was sent");
    assert_eq!(
        r.received, r.sent,
        "{what}: received {} of {} bytes",
        r.received, r.sent
    );
}

fn apply(bed: &Testbed, name: &str, text: &str) {
    let pol = bed.policy(name, text);
    bed.emptcp(&["apply", pol.to_str().unwrap()]).expect_ok();
}

fn chain(name: &str, dev: &str, hook: &str, ns: &str, body: &str) -> String {
    format!("[[chain]]\nname = \"{name}\"\ndev = \"{dev}\"\nhook = \"{hook}\"\nnetns = \"{ns}\"\n{body}")
}

const BLK: &str = "  [[chain.act]]\n  kind = \"blk_subflow\"\n";

/// Where blk_subflow runs: on the server's TC egress of link 1, or on the
/// client's XDP ingress of link 1. Both see the server's ADD_ADDR.
#[derive(Clone, Copy, Debug)]
enum At {
    ServerTcEgress,
    ClientXdp,
}

fn at_chain(bed: &Testbed, at: At, name: &str, body: &str) -> String {
    match at {
        At::ServerTcEgress => chain(name, &bed.x1b, "tc-egress", &bed.b, body),
        At::ClientXdp => chain(name, &bed.x1a, "xdp", &bed.a, body),
    }
}

/// blk_subflow (add_addr) on: the server announces, the client never
/// learns the address, both stay MPTCP, the transfer completes, in both
/// traffic directions.
fn blocks_add_addr(test: &str, fam: Family, at: At, upload: bool) {
    if !root_or_skip(test) {
        return;
    }
    let bed = Testbed::new(fam);
    endpoints(&bed, true);
    apply(&bed, "blk", &at_chain(&bed, at, "blk", BLK));
    let what = format!(
        "{test} ({at:?}, {})",
        if upload { "upload" } else { "download" }
    );
    let (subs, r) = if upload {
        let mut t = Upload::start(&bed, Duration::from_millis(2500));
        t.wait_sent();
        (subflows(&bed.a), t.finish())
    } else {
        let mut t = Transfer::start(&bed, Duration::from_millis(2500));
        t.wait_sent();
        (subflows(&bed.a), t.finish())
    };
    let (ma, mb) = (mib(&bed.a), mib(&bed.b));
    eprintln!(
        "{what}: client MIB: {}\n{what}: server MIB: {}",
        mib_line(&ma),
        mib_line(&mb)
    );
    assert_complete(r, &what);
    assert_eq!(
        subs.len(),
        1,
        "{what}: expected only the initial subflow\n{}",
        view(&bed)
    );
    if has_mib(&bed.b, "AddAddrTx") {
        assert!(
            mib_of(&mb, "AddAddrTx") >= 1,
            "{what}: the server never announced\n{}",
            view(&bed)
        );
    } else {
        // no AddAddrTx (Linux 6.1): the ADD_ADDR blk_subflow took out
        assert!(
            blk_hits(&bed) >= 1,
            "{what}: the server never announced (no AddAddrTx on this kernel, and blk_subflow took none out)\n{}",
            view(&bed)
        );
    }
    assert_eq!(
        mib_of(&ma, "AddAddr"),
        0,
        "{what}: client learnt the address"
    );
    assert_eq!(mib_of(&mb, "EchoAdd"), 0, "{what}: server got an echo");
    assert_eq!(mib_of(&ma, "MPJoinSynTx"), 0, "{what}: client tried a join");
    assert!(
        mib_of(&ma, "MPCapableSYNACKRX") == 1 && mib_of(&mb, "MPCapableACKRX") == 1,
        "{what}: not an MPTCP connection\n{}",
        view(&bed)
    );
    assert_no_fallback(&bed, &what);
    let show = bed.emptcp(&["show", "--json"]).expect_ok().stdout;
    assert!(show.contains("blk_subflow"), "{what}: show: {show}");
}

#[test]
fn blk_subflow_keeps_add_addr_from_the_client_v4_tc_upload() {
    blocks_add_addr(
        "blk_subflow_keeps_add_addr_from_the_client_v4_tc_upload",
        Family::V4,
        At::ServerTcEgress,
        true,
    );
}

#[test]
fn blk_subflow_keeps_add_addr_from_the_client_v4_xdp_download() {
    blocks_add_addr(
        "blk_subflow_keeps_add_addr_from_the_client_v4_xdp_download",
        Family::V4,
        At::ClientXdp,
        false,
    );
}

#[test]
fn blk_subflow_keeps_add_addr_from_the_client_v6_xdp_upload() {
    blocks_add_addr(
        "blk_subflow_keeps_add_addr_from_the_client_v6_xdp_upload",
        Family::V6,
        At::ClientXdp,
        true,
    );
}

#[test]
fn blk_subflow_keeps_add_addr_from_the_client_v4_tc_download() {
    blocks_add_addr(
        "blk_subflow_keeps_add_addr_from_the_client_v4_tc_download",
        Family::V4,
        At::ServerTcEgress,
        false,
    );
}

/// blk_subflow keeps the ADD_ADDR; after the first MB of data ACKed
/// (`sequence` on the server's DSS data ACKs of an upload) add_subflow
/// puts it back on a pure ACK: the client learns the address (its HMAC
/// checks out: AddAddr, not AddAddrDrop), echoes it, joins, and the new
/// subflow carries data.
fn releases_after_one_megabyte(test: &str, fam: Family, at: At) {
    if !root_or_skip(test) {
        return;
    }
    let bed = Testbed::new(fam);
    endpoints(&bed, true);
    let release =
        "  [[chain.select]]\n  kind = \"sequence\"\n  field = \"data_ack\"\n  from = \"1MiB\"\n\
                   \x20 [[chain.act]]\n  kind = \"add_subflow\"\n";
    let text = format!(
        "{}{}",
        at_chain(&bed, at, "blk", BLK),
        at_chain(&bed, at, "release", release)
    );
    apply(&bed, "pm", &text);
    let what = format!("{test} ({at:?})");
    let mut t = Upload::start(&bed, Duration::from_millis(3000));
    let (s2, c2) = link2(&bed);
    let joined = wait_for(Duration::from_secs(10), || {
        subflows(&bed.a)
            .into_iter()
            .find(|s| s.peer_ip() == Some(s2) && s.field("bytes_acked") > 0)
    });
    t.wait_sent();
    let subs = subflows(&bed.a);
    let (ma, mb) = (mib(&bed.a), mib(&bed.b));
    eprintln!(
        "{what}: client MIB: {}\n{what}: server MIB: {}",
        mib_line(&ma),
        mib_line(&mb)
    );
    let joined =
        joined.unwrap_or_else(|| panic!("{what}: no subflow to {s2} carried data\n{}", view(&bed)));
    assert!(
        joined.local.starts_with(&c2.to_string()) || joined.local.contains(&c2.to_string()),
        "{what}: joined subflow {} is not from {c2}",
        joined.local
    );
    assert_eq!(subs.len(), 2, "{what}: subflows\n{}", view(&bed));
    let r = t.finish();
    assert_complete(r, &what);
    assert_eq!(
        mib_of(&ma, "AddAddr"),
        1,
        "{what}: client AddAddr\n{}",
        view(&bed)
    );
    assert_eq!(mib_of(&ma, "AddAddrDrop"), 0, "{what}: HMAC rejected");
    assert!(
        mib_of(&mb, "EchoAdd") >= 1,
        "{what}: no echo\n{}",
        view(&bed)
    );
    assert_eq!(
        mib_of(&mb, "MPJoinAckRx"),
        1,
        "{what}: join\n{}",
        view(&bed)
    );
    assert_no_fallback(&bed, &what);
    // the stages' own counters agree: one put back, after the first MB
    let show: serde_json::Value =
        serde_json::from_str(&bed.emptcp(&["show", "--json"]).expect_ok().stdout).expect("json");
    let hits = |kind: &str| -> u64 {
        show.as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["stages"].as_array().cloned().unwrap_or_default())
            .filter(|s| s["kind"] == kind)
            .filter_map(|s| s["counters"]["hit"].as_u64())
            .sum()
    };
    assert_eq!(hits("add_subflow"), 1, "{what}: add_subflow hits\n{show:#}");
    assert!(
        hits("blk_subflow") >= 1,
        "{what}: blk_subflow hits\n{show:#}"
    );
}

#[test]
fn add_subflow_after_one_megabyte_v4_xdp() {
    releases_after_one_megabyte(
        "add_subflow_after_one_megabyte_v4_xdp",
        Family::V4,
        At::ClientXdp,
    );
}

#[test]
fn add_subflow_after_one_megabyte_v4_tc() {
    releases_after_one_megabyte(
        "add_subflow_after_one_megabyte_v4_tc",
        Family::V4,
        At::ServerTcEgress,
    );
}

/// IPv6: the ADD_ADDR (28 bytes) does not fit beside the TS and DSS of the
/// server's pure ACKs; add_subflow puts it in the DSS's place.
#[test]
fn add_subflow_after_one_megabyte_v6_xdp() {
    releases_after_one_megabyte(
        "add_subflow_after_one_megabyte_v6_xdp",
        Family::V6,
        At::ClientXdp,
    );
}

#[test]
fn add_subflow_after_one_megabyte_v6_tc() {
    releases_after_one_megabyte(
        "add_subflow_after_one_megabyte_v6_tc",
        Family::V6,
        At::ServerTcEgress,
    );
}

/// blk_subflow mode=join with a client `subflow` endpoint: the client's
/// MP_JOIN SYNs are dropped, no second subflow forms, the connection stays
/// MPTCP and the transfer completes.
fn blocks_joins(test: &str, fam: Family, hook: &str) {
    if !root_or_skip(test) {
        return;
    }
    let bed = Testbed::new(fam);
    endpoints(&bed, false);
    let body = "  [[chain.act]]\n  kind = \"blk_subflow\"\n  mode = \"join\"\n";
    // the join SYN leaves the client on link 2 and reaches the server there
    let text = if hook == "xdp" {
        chain("nojoin", &bed.x2b, "xdp", &bed.b, body)
    } else {
        chain("nojoin", &bed.x2a, "tc-egress", &bed.a, body)
    };
    apply(&bed, "nojoin", &text);
    let what = format!("{test} ({hook})");
    let mut t = Transfer::start(&bed, Duration::from_millis(2500));
    t.wait_sent();
    let subs = subflows(&bed.a);
    let r = t.finish();
    let (ma, mb) = (mib(&bed.a), mib(&bed.b));
    eprintln!(
        "{what}: client MIB: {}\n{what}: server MIB: {}",
        mib_line(&ma),
        mib_line(&mb)
    );
    assert_complete(r, &what);
    assert_eq!(subs.len(), 1, "{what}: subflows\n{}", view(&bed));
    // no MPJoinSynTx on Linux 6.1: blk_subflow's hit count below says it
    assert!(
        mib_of(&ma, "MPJoinSynTx") >= 1 || !has_mib(&bed.a, "MPJoinSynTx"),
        "{what}: the client never tried\n{}",
        view(&bed)
    );
    assert_eq!(
        mib_of(&mb, "MPJoinSynRx"),
        0,
        "{what}: a join SYN got through"
    );
    assert_no_fallback(&bed, &what);
    let show: serde_json::Value =
        serde_json::from_str(&bed.emptcp(&["show", "--json"]).expect_ok().stdout).expect("json");
    let hit: u64 = show
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["stages"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["kind"] == "blk_subflow")
        .filter_map(|s| s["counters"]["hit"].as_u64())
        .sum();
    assert!(
        hit >= 1,
        "{what}: blk_subflow counted no dropped join SYN\n{show:#}"
    );
}

#[test]
fn blk_subflow_join_drops_mp_join_syns_v4_xdp() {
    blocks_joins(
        "blk_subflow_join_drops_mp_join_syns_v4_xdp",
        Family::V4,
        "xdp",
    );
}

#[test]
fn blk_subflow_join_drops_mp_join_syns_v4_tc() {
    blocks_joins(
        "blk_subflow_join_drops_mp_join_syns_v4_tc",
        Family::V4,
        "tc-egress",
    );
}
