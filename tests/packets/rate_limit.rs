//! The `rate_limit` actor: the TCP window clamped by a token bucket.

use crate::fixture::*;
use crate::pktlib::{build::*, opts::*};

/// rate_limit on both hooks, v4 and v6. Windows: the shift comes from the
/// ACK sender's SYN / SYN-ACK; an ACK announces at most what is in flight
/// plus the credit left, which is a whole burst until data passes (32 KiB at
/// 100 Gbit/s: deterministic); a window already below the budget is never
/// raised; no handshake, RST or malformed options leave the packet alone.
/// Data: new bytes within the burst pass, the segment that would overdraw
/// the budget is dropped, a retransmission of bytes already passed goes
/// through, a segment larger than the burst passes only when the budget is
/// paid up (80 bit/s, 2 KiB burst: no credit is earned during the run).
/// Every output is verified independently (etherparse rebuild, RFC 1624
/// transform, checksums recomputed).
#[test]
fn rate_limit_clamps_the_window() {
    if !root("rate_limit_clamps_the_window") {
        return;
    }
    let rl = || {
        vec![chain(
            vec![],
            vec!["kind = \"rate_limit\"\nrate = \"100gbit\"\nburst = \"32kb\"".to_owned()],
        )]
    };
    let slow = || {
        vec![chain(
            vec![],
            vec!["kind = \"rate_limit\"\nrate = \"80bit\"\nburst = \"2kb\"".to_owned()],
        )]
    };
    let hit = |w: u16| exp(Out::Window(w), &[(st(0, 0, "hit"), 1)]);
    let skip = || exp(Out::Same, &[(st(0, 0, "skip"), 1)]);
    let perr = || exp(Out::Same, &[(st(0, 0, "parse_err"), 1)]);
    let dropped = || Exp {
        out: Out::Same,
        drop: true,
        counts: vec![(st(0, 0, "drop"), 1), (st(0, 0, "skip"), 0)],
    };
    let mut cases = Vec::new();
    for (fam, a, b) in [("v4", v4(V4_A), v4(V4_B)), ("v6", v6(V6_A), v6(V6_B))] {
        // the subflow's ACK sender is `a`; each scenario on its own ports
        let syn = |sp: u16, flags: u8, o: Vec<u8>| {
            let mut p = Pkt::ip(a, b).ports(sp, 5201).flags(flags).opts(o);
            p.tcp.win = 64240;
            p
        };
        let ackp = |sp: u16, win: u16| {
            let mut p = dss_ack_pkt(a, b).ports(sp, 5201);
            p.tcp.win = win;
            p
        };
        // data from `b` to the ACK sender, at `off` bytes into its stream
        let datap = |sp: u16, off: u32, n: usize| {
            let p = data_pkt(b, a, n).ports(5201, sp);
            let seq = p.tcp.seq.wrapping_add(off);
            p.seq(seq)
        };
        let syn_opts = |ws: Option<u8>| {
            let mut parts: Vec<Vec<u8>> = vec![mss(1460), sack_ok(), ts()];
            if let Some(s) = ws {
                parts.push(vec![NOP]);
                parts.push(wscale(s));
            }
            parts.push(mpc_syn());
            let refs: Vec<&[u8]> = parts.iter().map(|v| v.as_slice()).collect();
            padded(&refs)
        };
        let c = |name: &str, p: &Pkt, e: Exp| Case::new(format!("{fam}: {name}"), p, rl()).both(e);
        let cs =
            |name: &str, p: &Pkt, e: Exp| Case::new(format!("{fam}: {name}"), p, slow()).both(e);
        cases.extend([
            c(
                "SYN, wscale 7: recorded, untouched",
                &syn(41000, SYN, syn_opts(Some(7))),
                skip(),
            ),
            c(
                "first ACK: nothing in flight, a burst of credit: 32768 >> 7 = 256",
                &ackp(41000, 0xffff),
                hit(256),
            ),
            c("next ACK: the same", &ackp(41000, 0xffff), hit(256)),
            c(
                "ACK already below the budget (100 < 256): never raised",
                &ackp(41000, 100),
                skip(),
            ),
            c(
                "window exactly the budget: untouched",
                &ackp(41000, 256),
                skip(),
            ),
            c(
                "data segment (ACK flag) of the same subflow: clamped too",
                &data_pkt(a, b, 300).ports(41000, 5201),
                hit(256),
            ),
            c(
                "ACK of a subflow whose handshake was not seen",
                &ackp(41999, 0xffff),
                skip(),
            ),
            c(
                "SYN without window scale: shift 0",
                &syn(42000, SYN, syn_opts(None)),
                skip(),
            ),
            c("ACK: 32768 unscaled", &ackp(42000, 0xffff), hit(32768)),
            c(
                "SYN-ACK with wscale 14 (the ACK sender is the server)",
                &syn(43000, SYN | ACK, syn_opts(Some(14))),
                skip(),
            ),
            c("ACK: 32768 >> 14 = 2", &ackp(43000, 0xffff), hit(2)),
            c(
                "RST forgets the subflow",
                &ackp(41000, 0xffff).flags(RST | ACK),
                skip(),
            ),
            c(
                "after the RST: no handshake known",
                &ackp(41000, 0xffff),
                skip(),
            ),
            c(
                "SYN with a malformed option (length 0)",
                &syn(44000, SYN, padded(&[&mss(1460), &[8, 0]])),
                perr(),
            ),
            c(
                "after the malformed SYN: nothing recorded",
                &ackp(44000, 0xffff),
                skip(),
            ),
            cs(
                "SYN, wscale 0 (80 bit/s, burst 2 KiB)",
                &syn(45000, SYN, syn_opts(Some(0))),
                skip(),
            ),
            cs(
                "data, 1400 new bytes within the burst: passed",
                &datap(45000, 0, 1400),
                skip(),
            ),
            cs(
                "ACK of nothing yet: 1400 in flight + 648 of credit -> 2048",
                &{
                    let mut p = ackp(45000, 0xffff);
                    p.tcp.ack = datap(45000, 0, 0).tcp.seq;
                    p
                },
                hit(2048),
            ),
            cs(
                "data, 1400 more: over the budget, dropped",
                &datap(45000, 1400, 1400),
                dropped(),
            ),
            cs(
                "the first segment again (a retransmission): passed",
                &datap(45000, 0, 1400),
                skip(),
            ),
            cs(
                "data, 600 more: within the budget, passed",
                &datap(45000, 1400, 600),
                skip(),
            ),
            cs(
                "data, 600 more: over it, dropped",
                &datap(45000, 2000, 600),
                dropped(),
            ),
            cs(
                "another subflow: SYN",
                &syn(46000, SYN, syn_opts(Some(0))),
                skip(),
            ),
            cs(
                "a 3000-byte segment, over the 2 KiB burst: passed, the budget paid up",
                &datap(46000, 0, 3000),
                skip(),
            ),
            cs(
                "then 100 more: the budget is 952 bytes in debt, dropped",
                &datap(46000, 3000, 100),
                dropped(),
            ),
        ]);
    }
    run_table("rate_limit", &cases);
}
