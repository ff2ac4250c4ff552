//! The `ip_pair` selector against a model of its documentation.

use std::net::IpAddr;

use crate::fixture::*;
use crate::pktlib::build::*;
use crate::probe::run_probe;

/// What ip_pair should do, written from its documentation: same family as
/// the configured address(es), every configured side equal, or (bidir) the
/// reverse pair; `not` inverts.
fn ip_pair_model(
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    bidir: bool,
    negate: bool,
    ps: IpAddr,
    pd: IpAddr,
) -> bool {
    let v6 = src.or(dst).expect("ip_pair needs an address").is_ipv6();
    let eq = |s: IpAddr, d: IpAddr| src.is_none_or(|a| a == s) && dst.is_none_or(|a| a == d);
    let hit = ps.is_ipv6() == v6 && (eq(ps, pd) || (bidir && eq(pd, ps)));
    hit ^ negate
}

/// ip_pair: v4/v6, src only, dst only, both, bidir, family mismatch, not.
/// Every selector is checked on every packet against the model; the golden
/// rows below pin the model itself. (ip_pair in front of an actor that
/// acts: chains_on_one_hook_run_in_order.)
#[test]
fn ip_pair_selects_by_address() {
    if !root("ip_pair_selects_by_address") {
        return;
    }
    let (a, b, c, d) = (v4(V4_A), v4(V4_B), v4(V4_C), v4(V4_D));
    let (a6, b6, c6, d6) = (v6(V6_A), v6(V6_B), v6(V6_C), v6(V6_D));
    // (name, src, dst, bidir, not)
    type P = (&'static str, Option<IpAddr>, Option<IpAddr>, bool, bool);
    let policies: Vec<P> = vec![
        ("v4 A->B", Some(a), Some(b), false, false),
        ("v4 A<->B", Some(a), Some(b), true, false),
        ("v4 src A", Some(a), None, false, false),
        ("v4 src A bidir", Some(a), None, true, false),
        ("v4 dst B", None, Some(b), false, false),
        ("v6 A->B", Some(a6), Some(b6), false, false),
        ("v6 A<->B", Some(a6), Some(b6), true, false),
        ("v6 src A", Some(a6), None, false, false),
        ("v6 dst B", None, Some(b6), false, false),
        ("v6 dst B bidir", None, Some(b6), true, false),
        ("not v4 src A", Some(a), None, false, true),
        ("not v6 A->B", Some(a6), Some(b6), false, true),
    ];
    let flows: Vec<(&str, IpAddr, IpAddr)> = vec![
        ("v4 A->B", a, b),
        ("v4 B->A", b, a),
        ("v4 A->D", a, d),
        ("v4 C->B", c, b),
        ("v4 C->D", c, d),
        ("v4 D->A", d, a),
        ("v6 A->B", a6, b6),
        ("v6 B->A", b6, a6),
        ("v6 A->D (high half differs)", a6, d6),
        ("v6 C->B (high half differs)", c6, b6),
        ("v6 B->B (low half differs)", b6, b6),
        ("v6 C->D", c6, d6),
    ];
    let mut packets: Vec<(String, Pkt)> = flows
        .iter()
        .map(|(n, s, t)| (format!("{n} pure ACK"), dss_ack_pkt(*s, *t)))
        .collect();
    packets.push(("v4 A->B data".into(), data_pkt(a, b, 100)));
    packets.push(("v6 B->A data".into(), data_pkt(b6, a6, 100)));
    packets.push((
        "v4 A->B, 802.1Q".into(),
        dss_ack_pkt(a, b).vlan(TPID_8021Q, 3),
    ));
    packets.push((
        "v6 A->B, hop-by-hop".into(),
        dss_ack_pkt(a6, b6).ext(EXT_HOP, padn_body(6)),
    ));
    let addr = |pi: usize| -> (IpAddr, IpAddr) {
        match &packets[pi].1.ip {
            Ip::V4 { src, dst, .. } => (IpAddr::V4(*src), IpAddr::V4(*dst)),
            Ip::V6 { src, dst, .. } => (IpAddr::V6(*src), IpAddr::V6(*dst)),
        }
    };
    let model = |ci: usize, pi: usize| {
        let (_, s, t, bidir, n) = policies[ci];
        let (ps, pd) = addr(pi);
        ip_pair_model(s, t, bidir, n, ps, pd)
    };
    // golden rows: (policy, flow, selected)
    let golden: &[(&str, &str, bool)] = &[
        ("v4 A->B", "v4 A->B", true),
        ("v4 A->B", "v4 B->A", false),
        ("v4 A->B", "v4 A->D", false),
        ("v4 A->B", "v4 C->B", false),
        ("v4 A<->B", "v4 B->A", true),
        ("v4 A<->B", "v4 A->D", false),
        ("v4 src A", "v4 A->D", true),
        ("v4 src A", "v4 D->A", false),
        ("v4 src A bidir", "v4 D->A", true),
        ("v4 dst B", "v4 C->B", true),
        ("v4 dst B", "v4 B->A", false),
        ("v6 A->B", "v6 A->B", true),
        ("v6 A->B", "v6 B->A", false),
        ("v6 A<->B", "v6 B->A", true),
        ("v6 src A", "v6 C->B (high half differs)", false),
        ("v6 src A", "v6 A->D (high half differs)", true),
        ("v6 dst B", "v6 B->B (low half differs)", true),
        ("v6 dst B", "v6 A->D (high half differs)", false),
        ("v6 dst B bidir", "v6 B->A", true),
        ("v4 A->B", "v6 A->B", false),
        ("v6 A->B", "v4 A->B", false),
        ("v4 src A", "v6 A->B", false),
        ("not v4 src A", "v4 A->B", false),
        ("not v4 src A", "v4 C->D", true),
        ("not v4 src A", "v6 A->B", true),
        ("not v6 A->B", "v6 A->B", false),
        ("not v6 A->B", "v4 A->B", true),
    ];
    for (pn, fname, sel) in golden {
        let ci = policies.iter().position(|p| p.0 == *pn).expect("policy");
        let pi = flows.iter().position(|f| f.0 == *fname).expect("flow");
        assert_eq!(model(ci, pi), *sel, "model vs golden row ({pn}, {fname})");
    }
    let selectors: Vec<(String, Stage)> = policies
        .iter()
        .map(|(n, s, t, bidir, neg)| {
            let sel = ipp(*s, *t, *bidir);
            (n.to_string(), if *neg { not(sel) } else { sel })
        })
        .collect();
    let walks = run_probe("ip_pair", &selectors, &packets, &model);
    // both the unrolled walk and the loop (which compares IPv6 inline)
    for w in ["emptcp_walk_short", "emptcp_walk_prog"] {
        assert!(
            walks.contains(&Some(w)),
            "ip_pair never ran in {w}: {walks:?}"
        );
    }
}
