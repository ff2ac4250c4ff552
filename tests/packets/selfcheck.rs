//! The test library checks itself: the packet builder, the decoder and
//! the checksum verifier agree (no root needed).

use crate::fixture::*;
use crate::pktlib::{self, build::*, decode};

/// The packet builder and the decoder agree, and the decoder catches
/// broken checksums and lengths (no root needed: tests the test library).
#[test]
fn test_library_self_check() {
    let pkts = [
        dss_ack_pkt(v4(V4_A), v4(V4_B)),
        data_pkt(v6(V6_A), v6(V6_B), 333),
        data_pkt(v4(V4_A), v4(V4_B), 7)
            .vlan(TPID_8021AD, 100)
            .vlan(TPID_8021Q, 200)
            .ip4_opts(vec![148, 4, 0, 0, 1, 1, 1, 0]),
        data_pkt(v6(V6_A), v6(V6_B), 1)
            .ext(EXT_HOP, padn_body(6))
            .ext(EXT_ROUTING, routing_body())
            .ext(EXT_DEST, padn_body(14)),
    ];
    for p in &pkts {
        let b = p.build();
        if let Err(e) = decode::verify_tcp(&b) {
            panic!(
                "builder output does not verify: {e:?}\n{}",
                pktlib::diff::hexdump(&b, None)
            );
        }
        for head in [true, false] {
            let want = p.with_prio(head, true).build();
            let got = decode::grow_raw(&b, head, true).expect("grow_raw");
            if let Err(r) = pktlib::compare("grow_raw vs rebuilt", &b, &want, &got) {
                panic!("{r}");
            }
            decode::verify_tcp(&got).expect("grown packet verifies");
        }
        // every single-bit flip in the IP/TCP headers is caught, except in
        // the IPv6 fields no checksum covers (traffic class, flow label,
        // hop limit) and in IPv6 extension header bodies
        let d = decode::decode(&b);
        let t = d.tcp.expect("tcp");
        for i in t.l3_off..t.l4_off + 20 {
            let r = i - t.l3_off;
            if t.v6 && (r < 4 || r == 7 || (r >= 40 && i < t.l4_off)) {
                continue;
            }
            let mut c = b.clone();
            c[i] ^= 0x01;
            assert!(
                decode::verify_tcp(&c).is_err(),
                "flipping a bit of byte {i} went unnoticed"
            );
        }
    }
    // malformed options are reported
    for bad in [
        vec![8u8, 0, 1, 1],
        vec![8, 1, 1, 1],
        vec![1, 1, 8, 10],
        vec![1, 1, 1, 8],
        vec![30, 2, 1, 1],
    ] {
        let b = Pkt::v4(V4_A, V4_B).opts(bad.clone()).build();
        let e = decode::verify_tcp(&b).expect_err("malformed options must not verify");
        assert!(
            e.iter()
                .any(|p| p.contains("options do not parse") || p.contains("MPTCP option")),
            "{bad:02x?}: {e:?}"
        );
    }
}
