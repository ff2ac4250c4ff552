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
    let out = ns_run(ns, "ip", &["-s", "-j", "link", "show", "dev", dev]).expect_ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("ip -j output");
    v[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .expect("tx packet counter")
}

#[derive(Clone, Copy, PartialEq)]
enum Steer {
    /// No chain: the router forwards everything to the server over r1b.
    Control,
    Redirect,
    Mark,
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
        Steer::Mark => Some("kind = \"set_mark\"\nmark = 2\n".to_string()),
    };
    if let Some(act) = &act {
        let pol = format!(
            "[[chain]]\nname = \"steer\"\ndev = \"{}\"\nhook = \"tc-ingress\"\nnetns = \"{r}\"\n\
             [[chain.select]]\nkind = \"ip_pair\"\nsrc = \"{}\"\n[[chain.act]]\n{act}",
            bed.r2a,
            bed.client_addr2()
        );
        let p = bed.policy("steer", &pol);
        bed.emptcp(&["apply", p.to_str().unwrap()]).expect_ok();
    }
    let fb0 = (fallback_counters(&bed.a), fallback_counters(&bed.b));
    let (r1b0, r2b0) = (tx_packets(r, &bed.r1b), tx_packets(r, &bed.r2b));
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
    eprintln!("joined subflow: {segs} segments out; router tx: r1b {r1b}, r2b {r2b}");
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
fn set_mark_steers_a_subflow_on_a_router_v6() {
    if root_or_skip("set_mark_steers_a_subflow_on_a_router_v6") {
        steer_scenario(Family::V6, Steer::Mark);
    }
}
