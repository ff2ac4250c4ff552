//! Bad input: malformed options, non-TCP frames, fragments and every
//! truncation of valid packets pass unchanged and never break a stage.

use std::time::Instant;

use emptcp::Hook;

use crate::fixture::*;
use crate::pktlib::{self, build::*, decode, opts::*};
use crate::tuple::TupleSel;

/// Malformed TCP options and inconsistent headers: passed unchanged,
/// counted as parse errors by every stage that looks at them.
#[test]
fn malformed_packets_pass_unchanged() {
    if !root("malformed_packets_pass_unchanged") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    // chain 0: a selector that walks the options; chain 1: set_backup alone
    let chains = vec![
        chain(
            vec![pt(&["dss_ack", "dss_data", "tcp_plain"])],
            vec![set_backup(true, false)],
        ),
        chain(vec![], vec![set_backup(true, false)]),
    ];
    let both_err = || {
        exp(
            Out::Same,
            &[
                (st(0, 0, "parse_err"), 1),
                (st(0, 0, "hit"), 0),
                (st(1, 0, "parse_err"), 1),
                (st(1, 0, "hit"), 0),
            ],
        )
    };
    let mut cases = Vec::new();
    let bad_opts: Vec<(&str, Vec<u8>)> = vec![
        ("option length 0", cat(&[&dss_ack(1), &[8, 0, 1, 1]])),
        ("option length 1", cat(&[&dss_ack(1), &[8, 1, 1, 1]])),
        (
            "TS running past the header",
            cat(&[&dss_ack(1), &[1, 1, 8, 10]]),
        ),
        (
            "DSS running past the header",
            cat(&[&ts(), &[30, 12, 0x20, 1, 0, 0, 0, 1]]),
        ),
        (
            "MPTCP option of length 2",
            cat(&[&dss_ack(1), &[30, 2, 1, 1]]),
        ),
        (
            "kind in the last byte, no length",
            cat(&[&dss_ack(1), &[1, 1, 1, 8]]),
        ),
        (
            "length 0 as the first option",
            cat(&[&[2, 0, 0, 0], &dss_ack(1)]),
        ),
        ("length 255", cat(&[&[5, 255, 0, 0], &dss_ack(1)])),
    ];
    for (name, o) in bad_opts {
        for (fam, s, d) in [("v4", a, b), ("v6", v6(V6_A), v6(V6_B))] {
            cases.push(
                Case::new(
                    format!("{name} ({fam} pure ACK)"),
                    &Pkt::ip(s, d).opts(o.clone()),
                    chains.clone(),
                )
                .both(both_err()),
            );
        }
        cases.push(
            Case::new(
                format!("{name} (v4 data segment)"),
                &Pkt::ip(a, b).opts(o.clone()).payload(40),
                chains.clone(),
            )
            // TC reads a data segment's options too (its MP_PRIO goes in a
            // clone trimmed to a pure ACK, see set_backup.bpf.c)
            .both(both_err()),
        );
    }
    // IP length fields that leave no room for the TCP header
    let good = dss_ack_pkt(a, b).build();
    let mut short_tot = good.clone();
    short_tot[16..18].copy_from_slice(&50u16.to_be_bytes()); // 20 IP + 30 < 20 + 40
    cases.push(
        Case::raw(
            "IPv4 total length shorter than the TCP header",
            short_tot,
            chains.clone(),
        )
        .both(both_err()),
    );
    let good6 = dss_ack_pkt(v6(V6_A), v6(V6_B)).build();
    let mut short_pl = good6.clone();
    short_pl[18..20].copy_from_slice(&36u16.to_be_bytes());
    cases.push(
        Case::raw(
            "IPv6 payload length shorter than the TCP header",
            short_pl,
            chains.clone(),
        )
        .both(both_err()),
    );
    // headers the entry refuses
    let entry_err = || {
        exp(
            Out::Same,
            &[
                (entry("parse_err"), 1),
                (st(0, 0, "run"), 0),
                (st(1, 0, "run"), 0),
            ],
        )
    };
    let mut doff4 = good.clone();
    doff4[14 + 20 + 12] = 0x40;
    cases.push(Case::raw("TCP data offset 4", doff4, chains.clone()).both(entry_err()));
    let mut doff15 = good.clone();
    doff15[14 + 20 + 12] = 0xf0;
    cases.push(
        Case::raw(
            "TCP data offset past the end of the frame",
            doff15,
            chains.clone(),
        )
        .both(entry_err()),
    );
    let mut ihl4 = good.clone();
    ihl4[14] = 0x44;
    cases.push(Case::raw("IPv4 header length 16", ihl4, chains.clone()).both(entry_err()));
    let mut ihl15 = good.clone();
    ihl15[14] = 0x4f;
    ihl15.truncate(14 + 50);
    cases.push(
        Case::raw(
            "IPv4 header length 60 past the frame",
            ihl15,
            chains.clone(),
        )
        .both(entry_err()),
    );
    let mut ver = good.clone();
    ver[14] = 0x65;
    cases.push(Case::raw("IPv4 EtherType with version 6", ver, chains.clone()).both(entry_err()));
    let mut ver6 = good6.clone();
    ver6[14] = 0x46;
    cases.push(Case::raw("IPv6 EtherType with version 4", ver6, chains.clone()).both(entry_err()));
    let mut tot_small = good.clone();
    tot_small[16..18].copy_from_slice(&10u16.to_be_bytes());
    cases.push(
        Case::raw(
            "IPv4 total length below its header length",
            tot_small,
            chains.clone(),
        )
        .both(entry_err()),
    );
    run_table("malformed", &cases);
}

/// Non-TCP frames, IP fragments and too deep encapsulations: passed
/// unchanged, counted by the entry, no stage runs.
#[test]
fn non_tcp_and_fragments_pass_unchanged() {
    if !root("non_tcp_and_fragments_pass_unchanged") {
        return;
    }
    let chains = one(vec![], true);
    let not_tcp = || exp(Out::Same, &[(entry("not_tcp"), 1), (st(0, 0, "run"), 0)]);
    let parse_err = || exp(Out::Same, &[(entry("parse_err"), 1), (st(0, 0, "run"), 0)]);
    let a = v4(V4_A);
    let b = v4(V4_B);
    let a6 = v6(V6_A);
    let b6 = v6(V6_B);
    let mut vlan_udp = link_header(&[(TPID_8021Q, 7)], etherparse::EtherType::IPV4);
    vlan_udp.extend_from_slice(&udp_v4()[14..]);
    let mut lldp = udp_v4();
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    let mut three_tags = dss_ack_pkt(a, b)
        .vlan(TPID_8021AD, 1)
        .vlan(TPID_8021Q, 2)
        .vlan(TPID_8021Q, 3)
        .build();
    let mut cases = vec![
        Case::raw("UDP over IPv4", udp_v4(), chains.clone()).both(not_tcp()),
        Case::raw("UDP over IPv6", udp_v6(), chains.clone()).both(not_tcp()),
        Case::raw("ICMP echo", icmp_v4(), chains.clone()).both(not_tcp()),
        Case::raw("ICMPv6 echo", icmp_v6(), chains.clone()).both(not_tcp()),
        Case::raw("ARP request", arp(), chains.clone()).both(not_tcp()),
        Case::raw("UDP behind an 802.1Q tag", vlan_udp, chains.clone()).both(not_tcp()),
        Case::raw("LLDP EtherType", lldp, chains.clone()).both(not_tcp()),
        Case::new(
            "IPv4 first fragment (MF)",
            &dss_ack_pkt(a, b).frag(true, 0),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv4 last fragment (offset 185)",
            &dss_ack_pkt(a, b).frag(false, 185),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv4 middle fragment",
            &data_pkt(a, b, 64).frag(true, 8),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv6 fragment header",
            &dss_ack_pkt(a6, b6).ext(EXT_FRAGMENT, fragment_body(0, true)),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv6 hop-by-hop then fragment header",
            &dss_ack_pkt(a6, b6)
                .ext(EXT_HOP, padn_body(6))
                .ext(EXT_FRAGMENT, fragment_body(3, false)),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv6 + 112-byte hop-by-hop: TCP at offset 166, past the 160 handled",
            &dss_ack_pkt(a6, b6).ext(EXT_HOP, padn_body(110)),
            chains.clone(),
        )
        .both(parse_err()),
        Case::new(
            "IPv6 five extension headers (more than walked)",
            &dss_ack_pkt(a6, b6)
                .ext(EXT_HOP, padn_body(6))
                .ext(EXT_DEST, padn_body(6))
                .ext(EXT_ROUTING, routing_body())
                .ext(EXT_DEST, padn_body(6))
                .ext(EXT_DEST, padn_body(6)),
            chains.clone(),
        )
        .both(parse_err()),
    ];
    cases.push(
        Case::raw(
            "three VLAN tags",
            std::mem::take(&mut three_tags),
            chains.clone(),
        )
        .both(parse_err()),
    );
    run_table("non-TCP and fragments", &cases);
}

/// BPF_PROG_TEST_RUN itself refuses frames shorter than Ethernet, and on
/// TC untagged IP frames shorter than the IP header (the skb test run
/// looks at it); our programs never see those.
fn kernel_refuses(hook: Hook, frame: &[u8]) -> bool {
    if frame.len() < 14 {
        return true;
    }
    let min = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => 14 + 20,
        0x86dd => 14 + 40,
        _ => 0,
    };
    hook != Hook::Xdp && frame.len() < min
}

/// Every prefix of valid packets: never a crash, never an error; the
/// output is the input, or the input grown exactly as expected.
#[test]
fn truncated_packets_never_break() {
    if !root("truncated_packets_never_break") {
        return;
    }
    let t0 = Instant::now();
    let pkts: Vec<(&str, Pkt)> = vec![
        ("v4 DSS pure ACK", dss_ack_pkt(v4(V4_A), v4(V4_B))),
        (
            "v6 + hop-by-hop, data segment",
            data_pkt(v6(V6_A), v6(V6_B), 40).ext(EXT_HOP, padn_body(6)),
        ),
        (
            "QinQ, IPv4 options, data segment",
            data_pkt(v4(V4_A), v4(V4_B), 30)
                .vlan(TPID_8021AD, 1)
                .vlan(TPID_8021Q, 2)
                .ip4_opts(vec![148, 4, 0, 0]),
        ),
        (
            "v4 MP_JOIN third ACK (56-byte header)",
            Pkt::v4(V4_A, V4_B).opts(cat(&[&ts(), &mpj_ack()])),
        ),
    ];
    let chains = vec![
        chain(
            vec![pt(&["dss_ack", "dss_data", "mp_join_ack"])],
            vec![set_backup(true, false)],
        ),
        chain(vec![], vec![set_backup(false, false)]),
        // every tuple selector reads the (possibly cut) packet too
        chain(
            vec![
                TupleSel::Src("10.0.0.0/8").stage(),
                or(TupleSel::Dst("fd00::/16").stage()),
                TupleSel::Port(Some(40000), Some(5201)).stage(),
                TupleSel::Subflow {
                    saddr: None,
                    daddr: None,
                    sport: Some(40000),
                    dport: None,
                    bidir: true,
                }
                .stage(),
                ipp(Some(v4(V4_A)), None, true),
            ],
            vec![set_backup(true, false)],
        ),
    ];
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut grown = 0;
    let mut refused = 0;
    for hook in FAMILIES {
        let rig = Rig::new(hook, &chains);
        for (name, p) in &pkts {
            let full = p.build();
            for cut in 0..=full.len() {
                let input = &full[..cut];
                let quiet = rig.quiet_counters();
                let before: Vec<u64> = quiet.iter().map(|c| rig.get(*c)).collect();
                runs += 1;
                let o = match rig.h.run(input) {
                    Ok(o) => o,
                    Err(_) if kernel_refuses(hook, input) => {
                        refused += 1;
                        continue;
                    }
                    Err(e) => {
                        failures.push(format!("{name} cut at {cut} on {hook}: run failed: {e:#}"));
                        continue;
                    }
                };
                let mut errs = Vec::new();
                if o.ret != pass_verdict(hook) {
                    errs.push(format!("verdict {}", o.ret));
                }
                for (i, c) in quiet.iter().enumerate() {
                    if matches!(c, Ctr::St(_, _, _)) && rig.get(*c) != before[i] {
                        errs.push(format!("counter {c} moved"));
                    }
                }
                if o.data != input {
                    grown += 1;
                    let want = decode::grow_raw(input, hook == Hook::Xdp, true);
                    match want {
                        None => errs.push("changed a frame without a TCP header".into()),
                        Some(w) => {
                            if let Err(r) =
                                pktlib::compare("changed, but not as expected", input, &w, &o.data)
                            {
                                errs.push(r);
                            }
                        }
                    }
                    if cut == full.len() {
                        if let Err(r) = pktlib::consistent("full packet", input, &o.data) {
                            errs.push(r);
                        }
                    }
                } else if cut == full.len() && (hook == Hook::Xdp || p.tcp.payload.is_empty()) {
                    errs.push("the complete packet was not changed".into());
                }
                if !errs.is_empty() {
                    failures.push(format!(
                        "{name} cut at {cut} of {} on {hook}:\n  {}",
                        full.len(),
                        errs.join("\n  ")
                    ));
                }
            }
        }
    }
    eprintln!(
        "truncation: {} packets, {runs} runs ({grown} changed, {refused} refused by the kernel), {} failed ({:.2?})",
        pkts.len(),
        failures.len(),
        t0.elapsed()
    );
    if !failures.is_empty() {
        panic!("truncated packets:\n\n{}", failures.join("\n\n"));
    }
}
