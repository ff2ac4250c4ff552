//! The `packet_type` selector: every MPTCP subtype and TCP kind
//! classified, and the selector in front of an actor.

use emptcp::policy::PACKET_TYPES;

use crate::fixture::*;
use crate::pktlib::{build::*, opts::*};
use crate::probe::run_probe;

/// packet_type: every MPTCP subtype and TCP kind, as the exact set of the
/// 20 types a packet belongs to (golden rows), read from the hit counters
/// of 20 `packet_type [X]` selectors (see run_probe).
#[test]
fn packet_type_classifies_every_kind() {
    if !root("packet_type_classifies_every_kind") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let a6 = v6(V6_A);
    let b6 = v6(V6_B);
    let syn_opts = |mp: &[u8]| {
        padded(&[
            &mss(1460),
            &sack_ok(),
            &nop_nop_ts(1, 0)[2..],
            &[NOP],
            &wscale(7),
            mp,
        ])
    };
    let dfin = Dss {
        ack: Some(5),
        map: Some((100, 0, 1)),
        data_fin: true,
        ..Default::default()
    };
    let rows: Vec<(&str, Pkt, Vec<&str>)> = vec![
        // MP_CAPABLE
        (
            "MP_CAPABLE SYN (len 4)",
            Pkt::ip(a, b).flags(SYN).opts(syn_opts(&mpc_syn())),
            vec!["mp_capable_syn", "syn"],
        ),
        (
            "MP_CAPABLE SYN-ACK (len 12)",
            Pkt::ip(b, a)
                .flags(SYN | ACK)
                .opts(syn_opts(&mpc_synack(0x1122))),
            vec!["mp_capable_synack", "syn"],
        ),
        (
            "MP_CAPABLE ACK (len 20)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &mpc_ack(1, 2)])),
            vec!["mp_capable_ack"],
        ),
        (
            "MP_CAPABLE ACK + data (len 22)",
            Pkt::ip(a, b)
                .flags(ACK | PSH)
                .opts(padded(&[&ts(), &mpc_ack_data(1, 2, 100, None)]))
                .payload(100),
            vec!["mp_capable_ack"],
        ),
        (
            "MP_CAPABLE ACK + data + csum (len 24)",
            Pkt::ip(a, b)
                .flags(ACK | PSH)
                .opts(padded(&[&ts(), &mpc_ack_data(1, 2, 100, Some(0xbeef))]))
                .payload(100),
            vec!["mp_capable_ack"],
        ),
        (
            "MP_CAPABLE SYN over IPv6",
            Pkt::ip(a6, b6).flags(SYN).opts(syn_opts(&mpc_syn())),
            vec!["mp_capable_syn", "syn"],
        ),
        // MP_JOIN
        (
            "MP_JOIN SYN (len 12)",
            Pkt::ip(a, b)
                .flags(SYN)
                .opts(syn_opts(&mpj_syn(false, 2, 0xdead, 0xbeef))),
            vec!["mp_join_syn", "syn"],
        ),
        (
            "MP_JOIN SYN backup (len 12)",
            Pkt::ip(a, b)
                .flags(SYN)
                .opts(syn_opts(&mpj_syn(true, 2, 0xdead, 0xbeef))),
            vec!["mp_join_syn", "syn"],
        ),
        (
            "MP_JOIN SYN-ACK (len 16)",
            Pkt::ip(b, a)
                .flags(SYN | ACK)
                .opts(padded(&[&mss(1460), &mpj_synack(false, 0, 7, 9)])),
            vec!["mp_join_synack", "syn"],
        ),
        (
            "MP_JOIN ACK (len 24)",
            Pkt::ip(a, b).opts(cat(&[&ts(), &mpj_ack()])),
            vec!["mp_join_ack"],
        ),
        // DSS
        (
            "DSS data ACK only (len 8), pure ACK",
            dss_ack_pkt(a, b),
            vec!["dss_ack"],
        ),
        (
            "DSS 8-byte data ACK (len 12), pure ACK",
            Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &Dss {
                    ack: Some(1 << 40),
                    ack64: true,
                    ..Default::default()
                }
                .bytes(),
            ])),
            vec!["dss_ack"],
        ),
        (
            "DSS ack + mapping (len 18) + payload",
            data_pkt(a, b, 100),
            vec!["dss_data"],
        ),
        (
            "DSS ack + mapping over IPv6 + payload",
            data_pkt(a6, b6, 1000),
            vec!["dss_data"],
        ),
        (
            "DSS mapping only (len 14) + payload",
            Pkt::ip(a, b)
                .opts(padded(&[
                    &ts(),
                    &Dss {
                        map: Some((9, 1, 10)),
                        ..Default::default()
                    }
                    .bytes(),
                ]))
                .payload(10),
            vec!["dss_data"],
        ),
        (
            "DSS 8-byte ack + 8-byte DSN mapping (len 26) + payload",
            Pkt::ip(a, b)
                .opts(padded(&[
                    &ts(),
                    &Dss {
                        ack: Some(1 << 33),
                        ack64: true,
                        map: Some((1 << 35, 1, 10)),
                        dsn64: true,
                        ..Default::default()
                    }
                    .bytes(),
                ]))
                .payload(10),
            vec!["dss_data"],
        ),
        (
            "DSS mapping with checksum (len 20) + payload",
            Pkt::ip(a, b)
                .opts(padded(&[
                    &ts(),
                    &Dss {
                        ack: Some(1),
                        map: Some((9, 1, 10)),
                        csum: Some(0x1234),
                        ..Default::default()
                    }
                    .bytes(),
                ]))
                .payload(10),
            vec!["dss_data"],
        ),
        (
            "DSS DATA_FIN (mapping dll 1, no payload)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &dfin.bytes()])),
            vec!["dss_ack", "data_fin"],
        ),
        (
            "DSS DATA_FIN with payload",
            Pkt::ip(a, b)
                .opts(padded(&[
                    &ts(),
                    &Dss {
                        map: Some((100, 1, 11)),
                        ..dfin
                    }
                    .bytes(),
                ]))
                .payload(10),
            vec!["dss_data", "data_fin"],
        ),
        (
            "DSS DATA_FIN + TCP FIN",
            Pkt::ip(a, b)
                .flags(FIN | ACK)
                .opts(padded(&[&ts(), &dfin.bytes()])),
            vec!["dss_ack", "data_fin", "fin"],
        ),
        (
            "DSS mapping without payload or ack",
            Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &Dss {
                    map: Some((9, 1, 0)),
                    ..Default::default()
                }
                .bytes(),
            ])),
            vec![],
        ),
        // ADD_ADDR
        (
            "ADD_ADDR v4 + HMAC (len 16)",
            Pkt::ip(b, a).opts(padded(&[&ts(), &add_addr(false, 1, v4(V4_D), None)])),
            vec!["add_addr"],
        ),
        (
            "ADD_ADDR v4 + port + HMAC (len 18)",
            Pkt::ip(b, a).opts(padded(&[&ts(), &add_addr(false, 1, v4(V4_D), Some(8080))])),
            vec!["add_addr"],
        ),
        (
            "ADD_ADDR v6 + HMAC (len 28)",
            Pkt::ip(b, a).opts(padded(&[&add_addr(false, 1, v6(V6_D), None)])),
            vec!["add_addr"],
        ),
        (
            "ADD_ADDR v6 + port + HMAC (len 30)",
            Pkt::ip(b6, a6).opts(padded(&[&add_addr(false, 1, v6(V6_D), Some(1))])),
            vec!["add_addr"],
        ),
        (
            "ADD_ADDR echo v4 (len 8)",
            Pkt::ip(a, b).opts(cat(&[&ts(), &add_addr(true, 1, v4(V4_D), None)])),
            vec!["add_addr_echo"],
        ),
        (
            "ADD_ADDR echo v4 + port (len 10)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &add_addr(true, 1, v4(V4_D), Some(80))])),
            vec!["add_addr_echo"],
        ),
        (
            "ADD_ADDR echo v6 (len 20)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &add_addr(true, 1, v6(V6_D), None)])),
            vec!["add_addr_echo"],
        ),
        (
            "ADD_ADDR echo v6 + port (len 22)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &add_addr(true, 1, v6(V6_D), Some(80))])),
            vec!["add_addr_echo"],
        ),
        (
            "ADD_ADDR + DSS ack",
            Pkt::ip(b, a).opts(padded(&[
                &ts(),
                &add_addr(false, 1, v4(V4_D), None),
                &dss_ack(3),
            ])),
            vec!["add_addr", "dss_ack"],
        ),
        // the rest
        (
            "REMOVE_ADDR one id (len 4)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &rm_addr(&[3])])),
            vec!["rm_addr"],
        ),
        (
            "REMOVE_ADDR three ids (len 6) + DSS ack",
            Pkt::ip(a, b).opts(padded(&[&rm_addr(&[3, 4, 5]), &dss_ack(1)])),
            vec!["rm_addr", "dss_ack"],
        ),
        (
            "MP_PRIO (len 3)",
            Pkt::ip(a, b).opts(padded(&[&ts(), &mp_prio(true)])),
            vec!["mp_prio"],
        ),
        (
            "MP_PRIO unpadded before DSS ack",
            Pkt::ip(a, b).opts(padded(&[&mp_prio(false), &dss_ack(1)])),
            vec!["mp_prio", "dss_ack"],
        ),
        (
            "MP_FAIL (len 12) + DSS ack",
            Pkt::ip(a, b).opts(padded(&[&mp_fail(1 << 40), &dss_ack(1)])),
            vec!["mp_fail", "dss_ack"],
        ),
        (
            "MP_FASTCLOSE (len 12) on an ACK",
            Pkt::ip(a, b).opts(padded(&[&ts(), &mp_fastclose(42)])),
            vec!["mp_fastclose"],
        ),
        (
            "MP_FASTCLOSE on a RST",
            Pkt::ip(a, b)
                .flags(RST | ACK)
                .opts(padded(&[&mp_fastclose(42)])),
            vec!["mp_fastclose", "rst"],
        ),
        (
            "MP_TCPRST (len 4) on a RST",
            Pkt::ip(a, b).flags(RST).opts(padded(&[&mp_tcprst(1, 3)])),
            vec!["mp_tcprst", "rst"],
        ),
        (
            "unknown MPTCP subtype 15",
            Pkt::ip(a, b).opts(vec![30, 4, 0xf0, 0]),
            vec![],
        ),
        // plain TCP
        ("plain ACK, no options", Pkt::ip(a, b), vec!["tcp_plain"]),
        (
            "plain ACK with TS",
            Pkt::ip(a, b).opts(ts()),
            vec!["tcp_plain"],
        ),
        (
            "plain data segment",
            Pkt::ip(a6, b6).flags(ACK | PSH).opts(ts()).payload(500),
            vec!["tcp_plain"],
        ),
        (
            "plain SYN",
            Pkt::ip(a, b).flags(SYN).opts(syn_opts(&[])),
            vec!["syn", "tcp_plain"],
        ),
        (
            "plain SYN-ACK",
            Pkt::ip(b, a).flags(SYN | ACK).opts(syn_opts(&[])),
            vec!["syn", "tcp_plain"],
        ),
        (
            "plain FIN",
            Pkt::ip(a, b).flags(FIN | ACK).opts(ts()),
            vec!["fin", "tcp_plain"],
        ),
        (
            "plain RST",
            Pkt::ip(a, b).flags(RST),
            vec!["rst", "tcp_plain"],
        ),
        (
            "MPTCP option after EOL is not seen",
            Pkt::ip(a, b).opts(cat(&[&ts(), &[EOL, 0, 0, 0], &dss_ack(1)])),
            vec!["tcp_plain"],
        ),
        (
            "VLAN-tagged DSS ack",
            dss_ack_pkt(a, b).vlan(TPID_8021Q, 5),
            vec!["dss_ack"],
        ),
        (
            "IPv6 + hop-by-hop + dest options, DSS data",
            data_pkt(a6, b6, 64)
                .ext(EXT_HOP, padn_body(6))
                .ext(EXT_DEST, padn_body(6)),
            vec!["dss_data"],
        ),
        (
            "IPv4 options, MP_JOIN ACK",
            Pkt::ip(a, b)
                .ip4_opts(vec![148, 4, 0, 0])
                .opts(cat(&[&ts(), &mpj_ack()])),
            vec!["mp_join_ack"],
        ),
    ];

    for (i, (name, _, types)) in rows.iter().enumerate() {
        for t in types {
            assert!(
                PACKET_TYPES.contains(t),
                "row {i} ({name}): {t} is not a packet type"
            );
        }
    }
    let selectors: Vec<(String, Stage)> = PACKET_TYPES
        .iter()
        .map(|t| (t.to_string(), pt(&[t])))
        .collect();
    let packets: Vec<(String, Pkt)> = rows
        .iter()
        .map(|(n, p, _)| (n.to_string(), p.clone()))
        .collect();
    let _ = run_probe(
        "packet_type classification",
        &selectors,
        &packets,
        &|ti, pi| rows[pi].2.contains(&PACKET_TYPES[ti]),
    );
}

/// packet_type end to end: the selector decides whether set_backup acts.
#[test]
fn packet_type_selects_for_set_backup() {
    if !root("packet_type_selects_for_set_backup") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let ack = dss_ack_pkt(a, b);
    let data = data_pkt(a, b, 300);
    let plain = Pkt::ip(a, b).opts(ts());
    let syn = Pkt::ip(a, b)
        .flags(SYN)
        .opts(padded(&[&mss(1460), &mpj_syn(false, 1, 2, 3)]));
    let p_ack = one(vec![pt(&["syn", "dss_ack"])], true);
    let p_not_syn = one(vec![not(pt(&["syn"]))], false);
    let p_data = one(vec![pt(&["dss_data"])], true);
    let grown = |c: &[(Ctr, u64)]| exp(Out::Prio(true), c);
    let same = |c: &[(Ctr, u64)]| exp(Out::Same, c);
    let acted = [sel_hit(0, 0), (st(0, 1, "hit"), 1)];
    let not_selected = [(st(0, 0, "hit"), 0), (st(0, 1, "run"), 1)];
    let cases = vec![
        Case::new("[syn, dss_ack] selects a DSS pure ACK", &ack, p_ack.clone()).both(grown(&acted)),
        Case::new(
            "[syn, dss_ack] does not select a data segment",
            &data,
            p_ack.clone(),
        )
        .both(same(&not_selected)),
        Case::new(
            "[syn, dss_ack] does not select a plain ACK",
            &plain,
            p_ack.clone(),
        )
        .both(same(&not_selected)),
        Case::new(
            "[syn, dss_ack] selects a SYN, set_backup skips it",
            &syn,
            p_ack,
        )
        .both(same(&[sel_hit(0, 0), (st(0, 1, "skip"), 1)])),
        Case::new(
            "not [syn] selects a DSS pure ACK (backup=false)",
            &ack,
            p_not_syn.clone(),
        )
        .both(exp(Out::Prio(false), &acted)),
        Case::new("not [syn] does not select a SYN", &syn, p_not_syn).both(same(&not_selected)),
        Case::new(
            "[dss_data] selects a data segment (XDP grows, TC skips)",
            &data,
            p_data.clone(),
        )
        .xdp(grown(&acted))
        .tc(same(&[sel_hit(0, 0), (st(0, 1, "skip"), 1)])),
        Case::new("[dss_data] does not select a pure ACK", &ack, p_data).both(same(&not_selected)),
    ];
    run_table("packet_type -> set_backup", &cases);
}
