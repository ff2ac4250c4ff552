//! The `pass` and `drop` actors: terminal verdicts.

use crate::fixture::*;
use crate::pktlib::build::*;

/// pass and drop: terminal verdicts for the selected packets.
#[test]
fn pass_and_drop_verdicts() {
    if !root("pass_and_drop_verdicts") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let c = v4(V4_C);
    let d = v4(V4_D);
    let act = |k: &str| format!("kind = \"{k}\"");
    let drop_a = vec![
        chain(vec![ipp(Some(a), None, false)], vec![act("drop")]),
        chain(vec![], vec![set_backup(true, false)]),
    ];
    let pass_ack = vec![
        chain(vec![pt(&["dss_ack"])], vec![act("pass")]),
        chain(vec![], vec![set_backup(true, false)]),
    ];
    let grow_then_drop = vec![
        chain(vec![], vec![set_backup(false, false)]),
        chain(vec![pt(&["mp_prio"])], vec![act("drop")]),
    ];
    let dropped = |out: Out, counts: &[(Ctr, u64)]| Exp {
        out,
        drop: true,
        counts: counts.to_vec(),
    };
    let cases = vec![
        Case::new(
            "drop selects A: dropped, later chains do not run",
            &dss_ack_pkt(a, b),
            drop_a.clone(),
        )
        .both(dropped(
            Out::Same,
            &[sel_hit(0, 0), (st(0, 1, "hit"), 1), (st(1, 0, "run"), 0)],
        )),
        Case::new(
            "drop does not select C: next chain acts",
            &dss_ack_pkt(c, d),
            drop_a.clone(),
        )
        .both(exp(
            Out::Prio(true),
            &[
                (st(0, 1, "run"), 1),
                (st(0, 1, "hit"), 0),
                (st(1, 0, "hit"), 1),
            ],
        )),
        Case::new(
            "drop on a data segment",
            &data_pkt(a, b, 500),
            drop_a.clone(),
        )
        .both(dropped(Out::Same, &[(st(0, 1, "hit"), 1)])),
        Case::raw("non-TCP never reaches drop", udp_v4(), drop_a).both(exp(
            Out::Same,
            &[(entry("not_tcp"), 1), (st(0, 0, "run"), 0)],
        )),
        Case::new(
            "pass ends the walk: set_backup never runs",
            &dss_ack_pkt(a, b),
            pass_ack.clone(),
        )
        .both(exp(
            Out::Same,
            &[(st(0, 1, "hit"), 1), (st(1, 0, "run"), 0)],
        )),
        Case::new(
            "pass does not select a data segment",
            &data_pkt(a, b, 10),
            pass_ack,
        )
        .xdp(exp(
            Out::Prio(true),
            &[(st(0, 1, "hit"), 0), (st(1, 0, "hit"), 1)],
        ))
        .tc(exp(
            Out::Same,
            &[(st(0, 1, "hit"), 0), (st(1, 0, "skip"), 1)],
        )),
        Case::new(
            "grown by set_backup, then dropped by the next chain",
            &dss_ack_pkt(a, b),
            grow_then_drop.clone(),
        )
        .both(dropped(
            Out::Prio(false),
            &[(st(0, 0, "hit"), 1), sel_hit(1, 0), (st(1, 1, "hit"), 1)],
        )),
        Case::new(
            "not grown (plain ACK), not dropped",
            &Pkt::ip(a, b).opts(ts()),
            grow_then_drop,
        )
        .both(exp(
            Out::Same,
            &[(st(0, 0, "skip"), 1), (st(1, 0, "hit"), 0)],
        )),
    ];
    run_table("pass / drop", &cases);
}
