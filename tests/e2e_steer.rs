//! End-to-end tests of the steering actors on a middle node: a routed
//! testbed (client - router - server), chains on the router's interface
//! from the client's second link. A bulk download keeps both subflows
//! busy; the joined subflow's packets from the client (its ACKs) must leave
//! the router through the link the policy names (`redirect`, or `set_mark`
//! plus an `ip rule fwmark`), read from the router's own interface
//! counters, while the connection stays MPTCP and moves every byte.
//! Needs root; otherwise every test prints "SKIPPED: needs root" and passes.

mod netlib;

use std::time::Duration;

use netlib::*;
use serde_json::Value;

/// Transmitted packets of a device, from `ip -s -j link`.
fn tx_packets(ns: &str, dev: &str) -> u64 {
    packets(ns, dev, "tx")
}

/// Packets of a device in one direction ("rx" or "tx"), from `ip -s -j link`.
fn packets(ns: &str, dev: &str, dir: &str) -> u64 {
    let out = ns_run(ns, "ip", &["-s", "-j", "link", "show", "dev", dev]).expect_ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("ip -j output");
    v[0]["stats64"][dir]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("{dir} packet counter"))
}

#[derive(Clone, Copy, PartialEq)]
enum Steer {
    /// No chain: the router forwards everything to the server over r1b.
    Control,
    Redirect,
    Mark,
    /// set_mark, selected by a literal IPv4 prefix (`src`) instead of
    /// ip_pair: the walk compares it inline
    MarkByPrefix,
}

fn steer_scenario(fam: Family, how: Steer) {
    let bed = Testbed::routed(fam);
    let (v6, fam_flag) = (
        fam == Family::V6,
        if fam == Family::V6 { "-6" } else { "-4" },
    );
    let (srv_net, srv_b) = if v6 {
        ("fd00:3::/64", "fd00:4::2")
    } else {
        ("10.3.0.0/24", "10.4.0.2")
    };
    // a second way to the server's subnet, over the other link: as a
    // worse route (redirect looks it up for the device it sends out of)
    // and as the only route of the table the mark selects
    let r = bed.r.as_str();
    sh(
        "ip",
        &[
            "-n", r, fam_flag, "route", "add", srv_net, "via", srv_b, "dev", &bed.r2b, "metric",
            "2000",
        ],
    );
    sh(
        "ip",
        &[
            "-n", r, fam_flag, "route", "add", srv_net, "via", srv_b, "dev", &bed.r2b, "table",
            "20",
        ],
    );
    sh(
        "ip",
        &[
            "-n", r, fam_flag, "rule", "add", "fwmark", "0x2", "table", "20",
        ],
    );
    let act = match how {
        Steer::Control => None,
        // IPv4 without `via`: the kernel's route out of r2b (the worse one);
        // IPv6 names the next hop (a worse-metric route is not taken there)
        Steer::Redirect if v6 => Some(format!(
            "kind = \"redirect\"\ndev = \"{}\"\nvia = \"{srv_b}\"\n",
            bed.r2b
        )),
        Steer::Redirect => Some(format!("kind = \"redirect\"\ndev = \"{}\"\n", bed.r2b)),
        Steer::Mark | Steer::MarkByPrefix => Some("kind = \"set_mark\"\nmark = 2\n".to_string()),
    };
    // the client's second address, or (IPv4) its /24, which the first
    // address (10.1.0.1) is not in
    let sel = match how {
        Steer::MarkByPrefix => "kind = \"src\"\naddr = \"10.2.0.0/24\"".to_string(),
        _ => format!("kind = \"ip_pair\"\nsrc = \"{}\"", bed.client_addr2()),
    };
    if let Some(act) = &act {
        let pol = format!(
            "[[chain]]\nname = \"steer\"\ndev = \"{}\"\nhook = \"tc-ingress\"\nnetns = \"{r}\"\n\
             [[chain.select]]\n{sel}\n[[chain.act]]\n{act}",
            bed.r2a
        );
        let p = bed.policy("steer", &pol);
        bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    }
    let fb0 = (fallback_counters(&bed.a), fallback_counters(&bed.b));
    let (r1b0, r2b0) = (tx_packets(r, &bed.r1b), tx_packets(r, &bed.r2b));
    let rx0 = packets(r, &bed.r1a, "rx") + packets(r, &bed.r2a, "rx");
    let mut up = Transfer::start_bulk(&bed, Duration::from_secs(2));
    up.wait_sent();
    let (socks, ss_text) = ss_tni(&bed.a);
    let joined = socks
        .iter()
        .filter(|s| s.is_subflow())
        .find(|s| {
            s.local
                .trim_start_matches('[')
                .starts_with(&bed.client_addr2().to_string())
        })
        .unwrap_or_else(|| panic!("no joined subflow on the client:\n{ss_text}"));
    let segs = joined.field("segs_out");
    let res = up.finish();
    assert!(res.sent > 0, "nothing was sent");
    assert_eq!(res.received, res.sent, "client received every byte");
    let (r1b, r2b) = (
        tx_packets(r, &bed.r1b) - r1b0,
        tx_packets(r, &bed.r2b) - r2b0,
    );
    let rx = packets(r, &bed.r1a, "rx") + packets(r, &bed.r2a, "rx") - rx0;
    eprintln!("joined subflow: {segs} segments out; router rx {rx}, tx: r1b {r1b}, r2b {r2b}");
    // each packet from the client leaves the router once: a redirect that
    // also let the original through (tcx reads TC_ACT_STOLEN as "next")
    // doubles them
    assert!(
        r1b + r2b <= rx + rx / 20 + 20,
        "the router received {rx} packets from the client and sent {r1b} + {r2b}"
    );
    assert!(
        segs > 100,
        "the joined subflow carried traffic ({segs} segments)"
    );
    assert_eq!(
        (fallback_counters(&bed.a), fallback_counters(&bed.b)),
        fb0,
        "no MPTCP fallback"
    );
    if how == Steer::Control {
        assert!(
            r2b < 20,
            "without a chain nothing leaves over r2b ({r2b} packets)"
        );
    } else {
        assert!(
            r2b * 10 >= segs * 9,
            "the joined subflow's {segs} segments leave over r2b (it sent {r2b})"
        );
        let show = bed.emptcp(&["show", "--json"]).expect_ok();
        assert!(show.stdout.contains("\"steer\""), "{}", show.stdout);
    }
}

#[test]
fn router_without_a_chain_forwards_over_link_1_v4() {
    if root_or_skip("router_without_a_chain_forwards_over_link_1_v4") {
        steer_scenario(Family::V4, Steer::Control);
    }
}

#[test]
fn redirect_steers_a_subflow_on_a_router_v4() {
    if root_or_skip("redirect_steers_a_subflow_on_a_router_v4") {
        steer_scenario(Family::V4, Steer::Redirect);
    }
}

#[test]
fn redirect_steers_a_subflow_on_a_router_v6() {
    if root_or_skip("redirect_steers_a_subflow_on_a_router_v6") {
        steer_scenario(Family::V6, Steer::Redirect);
    }
}

#[test]
fn set_mark_steers_a_subflow_on_a_router_v4() {
    if root_or_skip("set_mark_steers_a_subflow_on_a_router_v4") {
        steer_scenario(Family::V4, Steer::Mark);
    }
}

#[test]
fn set_mark_by_a_src_prefix_steers_a_subflow_on_a_router_v4() {
    if root_or_skip("set_mark_by_a_src_prefix_steers_a_subflow_on_a_router_v4") {
        steer_scenario(Family::V4, Steer::MarkByPrefix);
    }
}

#[test]
fn set_mark_steers_a_subflow_on_a_router_v6() {
    if root_or_skip("set_mark_steers_a_subflow_on_a_router_v6") {
        steer_scenario(Family::V6, Steer::Mark);
    }
}

/// The client's joined subflow, as the server sees it (peer = the client's
/// second address), with the server's `ss -tni` text for messages.
fn server_joined(bed: &Testbed) -> (Option<Sock>, String) {
    let (socks, text) = ss_tni(&bed.b);
    let j = socks
        .into_iter()
        .filter(|s| s.is_subflow())
        .find(|s| s.peer_ip() == Some(bed.client_addr2()));
    (j, text)
}

/// set_backup on the router, on the client's packets of the joined
/// subflow: the server must mark that subflow backup (its own `ss` flags
/// and MPTcpExtMPPrioRx), the connection intact.
fn router_set_backup(fam: Family, hook: &str) {
    let bed = Testbed::routed(fam);
    let pol = format!(
        "[[chain]]\nname = \"rbk\"\ndev = \"{}\"\nhook = \"{hook}\"\nnetns = \"{}\"\n\
         [[chain.select]]\nkind = \"ip_pair\"\nsrc = \"{}\"\n\
         [[chain.act]]\nkind = \"set_backup\"\nbackup = true\n",
        bed.r2a,
        bed.r,
        bed.client_addr2()
    );
    let p = bed.policy("rbk", &pol);
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    let fb0 = (fallback_counters(&bed.a), fallback_counters(&bed.b));
    let prio0 = counter(&bed.b, "MPTcpExtMPPrioRx");
    let mut t = Transfer::start_bulk(&bed, Duration::from_secs(2));
    t.wait_sent();
    let flags = wait_for(Duration::from_secs(3), || {
        let (j, _) = server_joined(&bed);
        j.filter(|s| s.flags.contains('B')).map(|s| s.flags)
    });
    let (_, text) = server_joined(&bed);
    let res = t.finish();
    assert!(
        flags.is_some(),
        "the server never marked the joined subflow backup:\n{text}"
    );
    assert!(
        counter(&bed.b, "MPTcpExtMPPrioRx") > prio0,
        "MPPrioRx rose on the server"
    );
    assert!(
        res.sent > 0 && res.received == res.sent,
        "transfer complete"
    );
    assert_eq!(
        (fallback_counters(&bed.a), fallback_counters(&bed.b)),
        fb0,
        "no fallback"
    );
    for ns in [&bed.a, &bed.b] {
        assert_eq!(
            counter(ns, "TcpInCsumErrors"),
            0,
            "no checksum errors in {ns}"
        );
    }
}

#[test]
fn set_backup_on_a_router_tc_ingress_v4() {
    if root_or_skip("set_backup_on_a_router_tc_ingress_v4") {
        router_set_backup(Family::V4, "tc-ingress");
    }
}

#[test]
fn set_backup_on_a_router_xdp_v6() {
    if root_or_skip("set_backup_on_a_router_xdp_v6") {
        router_set_backup(Family::V6, "xdp");
    }
}

/// blk_subflow mode=join on the router: the client's MP_JOIN SYNs never
/// reach the server, the connection runs on its first subflow.
#[test]
fn blk_subflow_join_on_a_router_v4() {
    if !root_or_skip("blk_subflow_join_on_a_router_v4") {
        return;
    }
    let bed = Testbed::routed(Family::V4);
    let pol = format!(
        "[[chain]]\nname = \"rblk\"\ndev = \"{}\"\nhook = \"tc-ingress\"\nnetns = \"{}\"\n\
         [[chain.act]]\nkind = \"blk_subflow\"\nmode = \"join\"\n",
        bed.r2a, bed.r
    );
    let p = bed.policy("rblk", &pol);
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    let mut t = Transfer::start_bulk(&bed, Duration::from_secs(2));
    t.wait_sent();
    let (socks, text) = ss_tni(&bed.b);
    let res = t.finish();
    assert!(
        res.sent > 0 && res.received == res.sent,
        "transfer complete"
    );
    assert!(
        counter(&bed.a, "MPTcpExtMPJoinSynTx") >= 1,
        "the client tried to join"
    );
    assert_eq!(
        counter(&bed.b, "MPTcpExtMPJoinSynRx"),
        0,
        "no join reached the server"
    );
    let subflows = socks.iter().filter(|s| s.is_subflow()).count();
    assert_eq!(subflows, 1, "one subflow on the server:\n{text}");
}

/// The `t` (bytes of the socket's packets not yet freed, sk_wmem_alloc)
/// of the client's socket from `src`, from `ss -tmi`; None if not there.
fn wmem_alloc(ns: &str, src: &str) -> Option<u64> {
    let out = ns_run(ns, "ss", &["-tmiH", "src", src]).expect_ok().stdout;
    out.split("skmem:(")
        .nth(1)?
        .split([',', ')'])
        .find_map(|f| {
            f.strip_prefix('t')
                .filter(|v| v.chars().all(|c| c.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
        })
}

/// A packet redirected at the router's tc-ingress straight from the
/// client's veth must not stay charged to the client's socket while it
/// waits in a slow link's queue (forwarding frees it in ip_rcv): held, it
/// counts against the subflow's TCP Small Queues budget for the whole
/// queueing delay (README, use case 1). Judged by the client's own
/// `ss -tmi` (skmem t) for the joined subflow, whose link out of the
/// router is shaped to 2 Mbit/s with a deep queue (the other to 4 Mbit/s):
/// while its packets sit there, a held socket shows t > 0 in nearly every
/// sample.
#[test]
fn redirect_frees_the_senders_socket_v4() {
    if !root_or_skip("redirect_frees_the_senders_socket_v4") {
        return;
    }
    let bed = Testbed::routed(Family::V4);
    let r = bed.r.as_str();
    // both links slow, so that the client's writes keep both subflows busy
    for (dev, rate) in [(&bed.r1b, "4mbit"), (&bed.r2b, "2mbit")] {
        for cmd in [
            format!("tc qdisc add dev {dev} root handle 1: htb default 10"),
            format!("tc class add dev {dev} parent 1: classid 1:10 htb rate {rate} ceil {rate}"),
            format!("tc qdisc add dev {dev} parent 1:10 handle 10: pfifo limit 1000"),
        ] {
            let args: Vec<&str> = cmd.split(' ').collect();
            ns_run(r, args[0], &args[1..]).expect_ok();
        }
    }
    sh(
        "ip",
        &[
            "-n",
            r,
            "route",
            "add",
            "10.3.0.0/24",
            "via",
            "10.4.0.2",
            "dev",
            &bed.r2b,
            "metric",
            "2000",
        ],
    );
    let pol = format!(
        "[[chain]]\nname = \"steer\"\ndev = \"{}\"\nhook = \"tc-ingress\"\nnetns = \"{r}\"\n\
         [[chain.select]]\nkind = \"ip_pair\"\nsrc = \"{}\"\n[[chain.act]]\n\
         kind = \"redirect\"\ndev = \"{}\"\n",
        bed.r2a,
        bed.client_addr2(),
        bed.r2b
    );
    let p = bed.policy("steer", &pol);
    bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    let q0 = tx_packets(r, &bed.r2b);
    let mut up = Upload::start(&bed, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(1000));
    let src = bed.client_addr2().to_string();
    let samples: Vec<u64> = (0..20)
        .filter_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            wmem_alloc(&bed.a, &src)
        })
        .collect();
    up.wait_sent();
    let sent = tx_packets(r, &bed.r2b) - q0;
    let res = up.finish();
    assert_eq!(res.received, res.sent, "server received every byte");
    let held = samples.iter().filter(|&&t| t > 0).count();
    eprintln!("joined subflow: skmem t samples {samples:?}; r2b sent {sent} packets");
    assert!(
        samples.len() >= 15,
        "the joined subflow was there ({samples:?})"
    );
    assert!(
        sent > 100,
        "the joined subflow's data left over r2b ({sent} packets)"
    );
    assert!(
        held * 4 <= samples.len(),
        "the client's socket still owned its redirected packets in {held} of {} samples: {samples:?}",
        samples.len()
    );
}
