//! The `set_backup` actor: MP_PRIO added where it fits, and once per
//! subflow.

use crate::fixture::*;
use crate::pktlib::{build::*, opts::*};

/// set_backup on both hooks: what grows, what stays, and why.
#[test]
fn set_backup_adds_mp_prio_where_it_can() {
    if !root("set_backup_adds_mp_prio_where_it_can") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let a6 = v6(V6_A);
    let b6 = v6(V6_B);
    let on = |bk: bool| one(vec![], bk);
    let hit = |bk: bool| exp(Out::Prio(bk), &[(st(0, 0, "hit"), 1)]);
    let skip = || exp(Out::Same, &[(st(0, 0, "skip"), 1)]);
    let no_room = || exp(Out::Same, &[(st(0, 0, "no_room"), 1)]);
    let tc_data = || exp(Out::Same, &[(st(0, 0, "skip"), 1)]);
    let mut cases = Vec::new();
    for bk in [true, false] {
        cases.push(
            Case::new(
                format!("v4 DSS pure ACK, backup={bk}"),
                &dss_ack_pkt(a, b),
                on(bk),
            )
            .both(hit(bk)),
        );
        cases.push(
            Case::new(
                format!("v6 DSS pure ACK, backup={bk}"),
                &dss_ack_pkt(a6, b6),
                on(bk),
            )
            .both(hit(bk)),
        );
        cases.push(
            Case::new(
                format!("v4 data segment, 100 bytes, backup={bk}"),
                &data_pkt(a, b, 100),
                on(bk),
            )
            .xdp(hit(bk))
            .tc(tc_data()),
        );
        cases.push(
            Case::new(
                format!("v6 data segment, 1200 bytes, backup={bk}"),
                &data_pkt(a6, b6, 1200),
                on(bk),
            )
            .xdp(hit(bk))
            .tc(tc_data()),
        );
    }
    let t = true;
    let extra: Vec<Case> = vec![
        Case::new("v4 1-byte data segment", &data_pkt(a, b, 1), on(t))
            .xdp(hit(t))
            .tc(tc_data()),
        Case::new(
            "v4 full-size data segment (1448 bytes)",
            &data_pkt(a, b, 1448),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        Case::new(
            "DSS ack only, no TS (header 28 bytes)",
            &Pkt::ip(a, b).opts(dss_ack(1)),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "MP_JOIN third ACK (header 56 -> 60)",
            &Pkt::ip(a, b).opts(cat(&[&ts(), &mpj_ack()])),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "options at 36 bytes (DSS 8-byte ack + SACK) grow to 40",
            &Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &Dss {
                    ack: Some(1 << 40),
                    ack64: true,
                    ..Default::default()
                }
                .bytes(),
                &[NOP, NOP],
                &sack(&[(1, 2)]),
            ])),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "options already 40 bytes: no room",
            &Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &dss_ack(1),
                &[NOP, NOP],
                &sack(&[(1, 2), (3, 4)])[..18],
            ])),
            on(t),
        )
        .both(no_room()),
        Case::new(
            "37 option bytes + 3 NOPs: no room",
            &Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &dss_ack(1),
                &sack(&[(1, 2)]),
                &[253, 7, 0, 0, 0, 0, 0],
            ])),
            on(t),
        )
        .both(no_room()),
        Case::new(
            "38 option bytes + EOL: no room",
            &Pkt::ip(a, b).opts(cat(&[
                &ts(),
                &dss_ack(1),
                &sack(&[(1, 2)]),
                &[253, 8, 0, 0, 0, 0, 0, 0],
                &[EOL, 0],
            ])),
            on(t),
        )
        .both(no_room()),
        Case::new(
            "39 option bytes + NOP: no room",
            &Pkt::ip(a, b).opts(padded(&[
                &ts(),
                &dss_ack(1),
                &sack(&[(1, 2)]),
                &[253, 9, 0, 0, 0, 0, 0, 0, 0],
            ])),
            on(t),
        )
        .both(no_room()),
        Case::new(
            "data segment with 40 option bytes: no room (XDP)",
            &Pkt::ip(a, b)
                .opts(padded(&[
                    &ts(),
                    &Dss {
                        ack: Some(1),
                        ack64: true,
                        map: Some((1, 1, 9)),
                        dsn64: true,
                        ..Default::default()
                    }
                    .bytes(),
                    &[NOP, NOP],
                ]))
                .payload(9),
            on(t),
        )
        // TC: a data segment needs no room (its clone reuses the DSS
        // mapping bytes); under BPF_PROG_TEST_RUN (loopback) it is skipped
        .xdp(no_room())
        .tc(skip()),
        Case::new(
            "MP_JOIN SYN: skipped",
            &Pkt::ip(a, b)
                .flags(SYN)
                .opts(padded(&[&mss(1460), &mpj_syn(false, 1, 2, 3)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "MP_JOIN SYN-ACK: skipped",
            &Pkt::ip(b, a)
                .flags(SYN | ACK)
                .opts(padded(&[&mss(1460), &mpj_synack(false, 1, 2, 3)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "RST with DSS: skipped",
            &Pkt::ip(a, b)
                .flags(RST | ACK)
                .opts(cat(&[&ts(), &dss_ack(1)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "no ACK flag with DSS: skipped",
            &Pkt::ip(a, b).flags(PSH).opts(cat(&[&ts(), &dss_ack(1)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "FIN + DATA_FIN: grows",
            &Pkt::ip(a, b).flags(FIN | ACK).opts(padded(&[
                &ts(),
                &Dss {
                    ack: Some(1),
                    map: Some((5, 0, 1)),
                    data_fin: true,
                    ..Default::default()
                }
                .bytes(),
            ])),
            on(t),
        )
        .both(hit(t)),
        Case::new("plain TCP ACK: skipped", &Pkt::ip(a, b).opts(ts()), on(t)).both(skip()),
        Case::new(
            "plain TCP data: skipped",
            &Pkt::ip(a, b).opts(ts()).payload(10),
            on(t),
        )
        .both(skip()),
        Case::new(
            "ADD_ADDR without DSS: skipped",
            &Pkt::ip(b, a).opts(padded(&[&ts(), &add_addr(false, 1, v4(V4_D), None)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "MP_CAPABLE third ACK: skipped",
            &Pkt::ip(a, b).opts(padded(&[&ts(), &mpc_ack(1, 2)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "already carries MP_PRIO: skipped",
            &Pkt::ip(a, b).opts(padded(&[&mp_prio(false), &dss_ack(1)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "MPTCP option after EOL does not count: skipped",
            &Pkt::ip(a, b).opts(cat(&[&ts(), &[EOL, 0, 0, 0], &dss_ack(1)])),
            on(t),
        )
        .both(skip()),
        Case::new(
            "Ethernet padding after a DSS ACK (XDP keeps it, TC cuts it)",
            &Pkt::ip(a, b).opts(dss_ack(1)).trailer(6),
            on(t),
        )
        .both(hit(t)),
        Case::new("802.1Q tag", &dss_ack_pkt(a, b).vlan(TPID_8021Q, 10), on(t)).both(hit(t)),
        Case::new(
            "802.1ad + 802.1Q tags, data segment",
            &data_pkt(a, b, 200)
                .vlan(TPID_8021AD, 10)
                .vlan(TPID_8021Q, 20),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        Case::new(
            "QinQ, IPv6 pure ACK",
            &dss_ack_pkt(a6, b6)
                .vlan(TPID_8021AD, 10)
                .vlan(TPID_8021Q, 20),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "IPv4 with options (router alert + NOPs)",
            &dss_ack_pkt(a, b).ip4_opts(vec![148, 4, 0, 0, 1, 1, 1, 0]),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "IPv4 with 40 bytes of options, data segment",
            &data_pkt(a, b, 50).ip4_opts([vec![148, 4, 0, 0], vec![1; 35], vec![0]].concat()),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        Case::new(
            "IPv6 hop-by-hop",
            &dss_ack_pkt(a6, b6).ext(EXT_HOP, padn_body(6)),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "IPv6 destination options (22 bytes body), data",
            &data_pkt(a6, b6, 99).ext(EXT_DEST, padn_body(22)),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        Case::new(
            "IPv6 hop-by-hop + routing + destination options",
            &dss_ack_pkt(a6, b6)
                .ext(EXT_HOP, padn_body(6))
                .ext(EXT_ROUTING, routing_body())
                .ext(EXT_DEST, padn_body(6)),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "IPv6 + 104-byte hop-by-hop: TCP at offset 158 (the deepest handled)",
            &data_pkt(a6, b6, 20).ext(EXT_HOP, padn_body(102)),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        Case::new(
            "IPv6 + 104-byte hop-by-hop, pure ACK",
            &dss_ack_pkt(a6, b6).ext(EXT_HOP, padn_body(102)),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "IPv6 four extension headers (the most walked)",
            &dss_ack_pkt(a6, b6)
                .ext(EXT_HOP, padn_body(6))
                .ext(EXT_DEST, padn_body(6))
                .ext(EXT_ROUTING, routing_body())
                .ext(EXT_DEST, padn_body(6)),
            on(t),
        )
        .both(hit(t)),
        Case::new(
            "QinQ + IPv6 + 3 extension headers, data segment",
            &data_pkt(a6, b6, 500)
                .vlan(TPID_8021AD, 1)
                .vlan(TPID_8021Q, 2)
                .ext(EXT_HOP, padn_body(14))
                .ext(EXT_ROUTING, routing_body())
                .ext(EXT_DEST, padn_body(30)),
            on(t),
        )
        .xdp(hit(t))
        .tc(tc_data()),
        // EOL ends the option list: XDP puts the MP_PRIO before it; TC
        // would append it behind the EOL, where no receiver reads it, so
        // TC skips such segments
        Case::new(
            "DSS ACK, options end with EOL + zero padding",
            &Pkt::ip(a, b).opts(cat(&[&dss_ack(1), &[EOL, 0, 0, 0]])),
            on(t),
        )
        .xdp(hit(t))
        .tc(skip()),
        Case::new(
            "v6 DSS ACK, TS, EOL + garbage after it",
            &Pkt::ip(a6, b6).opts(cat(&[&ts(), &dss_ack(1), &[NOP, EOL, 0xff, 0xee]])),
            on(false),
        )
        .xdp(hit(false))
        .tc(skip()),
        Case::new(
            "DSS ACK ending exactly at the area end, no EOL",
            &Pkt::ip(a, b).opts(cat(&[&ts()[2..], &[NOP, NOP], &dss_ack(1)])),
            on(t),
        )
        .both(hit(t)),
    ];
    cases.extend(extra);
    run_table("set_backup", &cases);
}

/// once=true: only the first eligible segment of a 4-tuple (per stage)
/// changes; another 4-tuple, or the reverse direction, changes again.
#[test]
fn set_backup_once_per_subflow() {
    if !root("set_backup_once_per_subflow") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let a6 = v6(V6_A);
    let b6 = v6(V6_B);
    let chains = vec![chain(vec![], vec![set_backup(true, true)])];
    let hit = || exp(Out::Prio(true), &[(st(0, 0, "hit"), 1)]);
    let skip = || exp(Out::Same, &[(st(0, 0, "skip"), 1)]);
    // stateful: one rig per family, in this order
    let seq: Vec<Case> = vec![
        Case::new(
            "plain ACK on tuple 1 (not eligible, not recorded)",
            &Pkt::ip(a, b).opts(ts()),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "tuple 1: first DSS ACK changes",
            &dss_ack_pkt(a, b),
            chains.clone(),
        )
        .both(hit()),
        Case::new(
            "tuple 1: second DSS ACK unchanged",
            &dss_ack_pkt(a, b),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "tuple 1: a data segment unchanged",
            &data_pkt(a, b, 100),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "tuple 2 (other source port) changes",
            &dss_ack_pkt(a, b).ports(40001, 5201),
            chains.clone(),
        )
        .both(hit()),
        Case::new(
            "tuple 3 (other destination port) changes",
            &dss_ack_pkt(a, b).ports(40000, 5202),
            chains.clone(),
        )
        .both(hit()),
        Case::new(
            "tuple 1 reversed changes",
            &dss_ack_pkt(a, b).reversed(),
            chains.clone(),
        )
        .both(hit()),
        Case::new(
            "tuple 4 (other address) changes",
            &dss_ack_pkt(v4(V4_C), b),
            chains.clone(),
        )
        .both(hit()),
        Case::new(
            "tuple 4 again unchanged",
            &dss_ack_pkt(v4(V4_C), b),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "tuple 5: data segment (XDP changes, TC skips without recording)",
            &data_pkt(a, b, 10).ports(41000, 5201),
            chains.clone(),
        )
        .xdp(hit())
        .tc(skip()),
        Case::new(
            "tuple 5: then a pure ACK (XDP: done already; TC: first time)",
            &dss_ack_pkt(a, b).ports(41000, 5201),
            chains.clone(),
        )
        .xdp(skip())
        .tc(hit()),
        Case::new("v6 tuple changes", &dss_ack_pkt(a6, b6), chains.clone()).both(hit()),
        Case::new(
            "v6 tuple again unchanged",
            &dss_ack_pkt(a6, b6),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "v6 with hop-by-hop, same addresses and ports: same subflow",
            &dss_ack_pkt(a6, b6).ext(EXT_HOP, padn_body(6)),
            chains.clone(),
        )
        .both(skip()),
        Case::new(
            "v4 tuple whose addresses equal the v6 tuple's first bytes",
            &dss_ack_pkt(v4(V4_D), v4(V4_B)),
            chains.clone(),
        )
        .both(hit()),
    ];
    run_table("set_backup once", &seq);
}
