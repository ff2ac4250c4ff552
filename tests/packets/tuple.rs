//! The tuple selectors `src`, `dst` (prefixes), `port` and `subflow`
//! against a model of their documentation.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::fixture::*;
use crate::pktlib::build::*;
use crate::probe::run_probe;

/// A tuple selector of the catalogue (src, dst, port, subflow), with the
/// behaviour its documentation promises.
#[derive(Clone, Debug)]
pub enum TupleSel {
    Src(&'static str),
    Dst(&'static str),
    Port(Option<u16>, Option<u16>),
    Subflow {
        saddr: Option<IpAddr>,
        daddr: Option<IpAddr>,
        sport: Option<u16>,
        dport: Option<u16>,
        bidir: bool,
    },
    Not(Box<TupleSel>),
}

impl TupleSel {
    pub fn stage(&self) -> Stage {
        match self {
            TupleSel::Src(p) => format!("kind = \"src\"\naddr = \"{p}\""),
            TupleSel::Dst(p) => format!("kind = \"dst\"\naddr = \"{p}\""),
            TupleSel::Port(s, d) => {
                let mut t = String::from("kind = \"port\"");
                if let Some(s) = s {
                    let _ = write!(t, "\nsport = {s}");
                }
                if let Some(d) = d {
                    let _ = write!(t, "\ndport = {d}");
                }
                t
            }
            TupleSel::Subflow {
                saddr,
                daddr,
                sport,
                dport,
                bidir,
            } => {
                let mut t = String::from("kind = \"subflow\"");
                if let Some(a) = saddr {
                    let _ = write!(t, "\nsaddr = \"{a}\"");
                }
                if let Some(a) = daddr {
                    let _ = write!(t, "\ndaddr = \"{a}\"");
                }
                if let Some(p) = sport {
                    let _ = write!(t, "\nsport = {p}");
                }
                if let Some(p) = dport {
                    let _ = write!(t, "\ndport = {p}");
                }
                if *bidir {
                    t.push_str("\nbidir = true");
                }
                t
            }
            TupleSel::Not(s) => not(s.stage()),
        }
    }

    /// Does the selector pick a packet (src, dst, sport, dport)?
    pub fn model(&self, s: IpAddr, d: IpAddr, sp: u16, dp: u16) -> bool {
        let in_prefix = |pfx: &str, a: IpAddr| -> bool {
            let (p, len) = match pfx.split_once('/') {
                Some((p, l)) => (
                    p.parse::<IpAddr>().expect("prefix"),
                    l.parse::<u32>().expect("len"),
                ),
                None => {
                    let p: IpAddr = pfx.parse().expect("addr");
                    (p, if p.is_ipv4() { 32 } else { 128 })
                }
            };
            match (p, a) {
                (IpAddr::V4(p), IpAddr::V4(a)) => {
                    let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    u32::from(p) & m == u32::from(a) & m
                }
                (IpAddr::V6(p), IpAddr::V6(a)) => {
                    let m = if len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - len)
                    };
                    u128::from(p) & m == u128::from(a) & m
                }
                _ => false,
            }
        };
        match self {
            TupleSel::Src(p) => in_prefix(p, s),
            TupleSel::Dst(p) => in_prefix(p, d),
            TupleSel::Port(ws, wd) => ws.is_none_or(|x| x == sp) && wd.is_none_or(|x| x == dp),
            TupleSel::Subflow {
                saddr,
                daddr,
                sport,
                dport,
                bidir,
            } => {
                let eq = |s: IpAddr, d: IpAddr, sp: u16, dp: u16| {
                    saddr.is_none_or(|a| a == s)
                        && daddr.is_none_or(|a| a == d)
                        && sport.is_none_or(|p| p == sp)
                        && dport.is_none_or(|p| p == dp)
                };
                eq(s, d, sp, dp) || (*bidir && eq(d, s, dp, sp))
            }
            TupleSel::Not(x) => !x.model(s, d, sp, dp),
        }
    }
}

/// The tuple selectors src / dst (prefixes), port and subflow, on every
/// packet against their documented behaviour; golden rows pin the model.
#[test]
pub fn tuple_selectors_match_addresses_and_ports() {
    if !root("tuple_selectors_match_addresses_and_ports") {
        return;
    }
    let (a, b, c, d) = (v4(V4_A), v4(V4_B), v4(V4_C), v4(V4_D));
    let (a6, b6, c6) = (v6(V6_A), v6(V6_B), v6(V6_C));
    // fd00:1::/65 excludes this one: first bit of the low half set
    let a6_far: IpAddr = "fd00:1::8000:0:0:1".parse().expect("addr");
    let sel: Vec<(&str, TupleSel)> = vec![
        ("src 10.1.0.0/16", TupleSel::Src("10.1.0.0/16")),
        ("src 10.1.0.1 (a /32)", TupleSel::Src("10.1.0.1")),
        (
            "src 10.1.7.7/16 (host bits set)",
            TupleSel::Src("10.1.7.7/16"),
        ),
        ("dst 10.1.0.2/31", TupleSel::Dst("10.1.0.2/31")),
        ("src 0.0.0.0/0", TupleSel::Src("0.0.0.0/0")),
        ("src fd00:1::/32", TupleSel::Src("fd00:1::/32")),
        ("dst fd00:1::2 (a /128)", TupleSel::Dst("fd00:1::2")),
        ("src fd00:1::/65", TupleSel::Src("fd00:1::/65")),
        ("port sport 40000", TupleSel::Port(Some(40000), None)),
        ("port dport 5201", TupleSel::Port(None, Some(5201))),
        (
            "port 40000 -> 5202",
            TupleSel::Port(Some(40000), Some(5202)),
        ),
        (
            "subflow A:40000 -> B:5201",
            TupleSel::Subflow {
                saddr: Some(a),
                daddr: Some(b),
                sport: Some(40000),
                dport: Some(5201),
                bidir: false,
            },
        ),
        (
            "subflow A:40000 <-> B:5201",
            TupleSel::Subflow {
                saddr: Some(a),
                daddr: Some(b),
                sport: Some(40000),
                dport: Some(5201),
                bidir: true,
            },
        ),
        (
            "subflow sport 40000 (no address: any family)",
            TupleSel::Subflow {
                saddr: None,
                daddr: None,
                sport: Some(40000),
                dport: None,
                bidir: false,
            },
        ),
        (
            "not subflow to [fd00:1::2]:5201",
            TupleSel::Not(Box::new(TupleSel::Subflow {
                saddr: None,
                daddr: Some(b6),
                sport: None,
                dport: Some(5201),
                bidir: false,
            })),
        ),
    ];
    let flows: Vec<(&str, IpAddr, IpAddr, u16, u16)> = vec![
        ("v4 A:40000 -> B:5201", a, b, 40000, 5201),
        ("v4 B:5201 -> A:40000", b, a, 5201, 40000),
        ("v4 A:40000 -> B:5202", a, b, 40000, 5202),
        ("v4 C:40000 -> D:5201", c, d, 40000, 5201),
        (
            "v4 10.1.0.3:1 -> 10.1.0.3:2",
            v4(std::net::Ipv4Addr::new(10, 1, 0, 3)),
            v4(std::net::Ipv4Addr::new(10, 1, 0, 3)),
            1,
            2,
        ),
        ("v6 A:40000 -> B:5201", a6, b6, 40000, 5201),
        ("v6 B:5201 -> A:40000", b6, a6, 5201, 40000),
        ("v6 C:40001 -> B:5201", c6, b6, 40001, 5201),
        ("v6 fd00:1::8000:0:0:1:40000 -> A:80", a6_far, a6, 40000, 80),
    ];
    let packets: Vec<(String, Pkt)> = flows
        .iter()
        .map(|(n, s, t, sp, dp)| (n.to_string(), dss_ack_pkt(*s, *t).ports(*sp, *dp)))
        .collect();
    let model = |si: usize, pi: usize| {
        let (_, s, t, sp, dp) = flows[pi];
        sel[si].1.model(s, t, sp, dp)
    };
    // golden rows: (selector, flow, selected)
    let golden: &[(&str, &str, bool)] = &[
        ("src 10.1.0.0/16", "v4 B:5201 -> A:40000", true),
        ("src 10.1.0.0/16", "v4 C:40000 -> D:5201", false),
        ("src 10.1.0.0/16", "v6 A:40000 -> B:5201", false),
        ("src 10.1.0.1 (a /32)", "v4 B:5201 -> A:40000", false),
        (
            "src 10.1.7.7/16 (host bits set)",
            "v4 A:40000 -> B:5201",
            true,
        ),
        ("dst 10.1.0.2/31", "v4 10.1.0.3:1 -> 10.1.0.3:2", true),
        ("dst 10.1.0.2/31", "v4 B:5201 -> A:40000", false),
        ("src 0.0.0.0/0", "v4 C:40000 -> D:5201", true),
        ("src 0.0.0.0/0", "v6 A:40000 -> B:5201", false),
        ("src fd00:1::/32", "v6 C:40001 -> B:5201", false),
        (
            "src fd00:1::/32",
            "v6 fd00:1::8000:0:0:1:40000 -> A:80",
            true,
        ),
        ("dst fd00:1::2 (a /128)", "v6 A:40000 -> B:5201", true),
        ("src fd00:1::/65", "v6 B:5201 -> A:40000", true),
        (
            "src fd00:1::/65",
            "v6 fd00:1::8000:0:0:1:40000 -> A:80",
            false,
        ),
        ("port sport 40000", "v6 A:40000 -> B:5201", true),
        ("port dport 5201", "v4 A:40000 -> B:5202", false),
        ("port 40000 -> 5202", "v4 A:40000 -> B:5202", true),
        ("subflow A:40000 -> B:5201", "v4 B:5201 -> A:40000", false),
        ("subflow A:40000 <-> B:5201", "v4 B:5201 -> A:40000", true),
        ("subflow A:40000 <-> B:5201", "v4 A:40000 -> B:5202", false),
        (
            "subflow sport 40000 (no address: any family)",
            "v6 A:40000 -> B:5201",
            true,
        ),
        (
            "subflow sport 40000 (no address: any family)",
            "v4 C:40000 -> D:5201",
            true,
        ),
        (
            "not subflow to [fd00:1::2]:5201",
            "v6 C:40001 -> B:5201",
            false,
        ),
        (
            "not subflow to [fd00:1::2]:5201",
            "v4 A:40000 -> B:5201",
            true,
        ),
    ];
    for (sn, fname, w) in golden {
        let si = sel.iter().position(|s| s.0 == *sn).expect("selector");
        let pi = flows.iter().position(|f| f.0 == *fname).expect("flow");
        assert_eq!(model(si, pi), *w, "model vs golden row ({sn}, {fname})");
    }
    let selectors: Vec<(String, Stage)> = sel
        .iter()
        .map(|(n, s)| (n.to_string(), s.stage()))
        .collect();
    let walks = run_probe("tuple selectors", &selectors, &packets, &model);
    for w in ["emptcp_walk_short", "emptcp_walk_prog"] {
        assert!(
            walks.contains(&Some(w)),
            "tuple selectors never ran in {w}: {walks:?}"
        );
    }
}
