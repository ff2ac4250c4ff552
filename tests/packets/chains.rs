//! Chains of stages: selector logic (AND / OR / NOT), several chains on
//! one hook, long chains, and TC ingress running what TC egress runs.

use std::fmt::Write as _;

use emptcp::Hook;

use crate::fixture::*;
use crate::pktlib::{build::*, opts::*};
use crate::probe::{run_matrix, MatrixChain};

/// AND / OR / NOT over two and three selectors, against a left-to-right
/// model (each selector combines with the result so far).
#[test]
fn selector_combinations_follow_left_to_right_logic() {
    if !root("selector_combinations_follow_left_to_right_logic") {
        return;
    }
    // S1: src is A, S2: data_fin, S3: dst is B
    let s = [
        ipp(Some(v4(V4_A)), None, false),
        pt(&["data_fin"]),
        ipp(None, Some(v4(V4_B)), false),
    ];
    // (op of each selector after the first: true = or; not of each)
    type Expr = (Vec<bool>, Vec<bool>);
    // 6 + 3 expressions = 30 stages: one rig
    let exprs: Vec<Expr> = vec![
        (vec![false], vec![false, false]),              // S1 and S2
        (vec![true], vec![false, false]),               // S1 or S2
        (vec![false], vec![false, true]),               // S1 and !S2
        (vec![true], vec![true, false]),                // !S1 or S2
        (vec![false], vec![true, true]),                // !S1 and !S2
        (vec![true], vec![false, true]),                // S1 or !S2
        (vec![false, true], vec![false, false, false]), // (S1 and S2) or S3
        (vec![true, false], vec![false, false, false]), // (S1 or S2) and S3
        (vec![true, false], vec![true, false, true]),   // (!S1 or S2) and !S3
    ];
    let model = |e: &Expr, v: [bool; 3]| -> bool {
        let mut m = v[0] ^ e.1[0];
        for (i, or_op) in e.0.iter().enumerate() {
            let x = v[i + 1] ^ e.1[i + 1];
            m = if *or_op { m || x } else { m && x };
        }
        m
    };
    // golden rows pin the model: (expression, S1..S3, result)
    let golden: &[(usize, [bool; 3], bool)] = &[
        (0, [true, true, false], true),
        (0, [true, false, true], false),
        (1, [false, true, false], true),
        (1, [false, false, true], false),
        (2, [true, false, false], true),
        (2, [true, true, false], false),
        (3, [true, false, false], false),
        (3, [false, false, false], true),
        (4, [false, false, true], true),
        (4, [true, false, false], false),
        (5, [false, false, false], true),
        (5, [false, true, false], false),
        (6, [true, false, true], true),
        (6, [false, true, false], false),
        (7, [false, true, true], true),
        (7, [true, true, false], false),
        (8, [true, true, false], true),
        (8, [false, false, false], true),
        (8, [true, false, false], false),
        (8, [false, true, true], false),
    ];
    for (e, v, r) in golden {
        assert_eq!(model(&exprs[*e], *v), *r, "model vs golden row {e} {v:?}");
    }
    let show = |e: &Expr| -> String {
        let mut t = format!("{}S1", if e.1[0] { "!" } else { "" });
        for (i, o) in e.0.iter().enumerate() {
            let _ = write!(
                t,
                " {} {}S{}",
                if *o { "or" } else { "and" },
                if e.1[i + 1] { "!" } else { "" },
                i + 2
            );
        }
        t
    };
    let chains: Vec<MatrixChain> = exprs
        .iter()
        .map(|e| {
            let sel = (0..e.1.len())
                .map(|i| {
                    let mut x = s[i].clone();
                    if i > 0 && e.0[i - 1] {
                        x = or(x);
                    }
                    if e.1[i] {
                        x = not(x);
                    }
                    x
                })
                .collect();
            (show(e), sel)
        })
        .collect();
    // the 8 packets: every (S1, S2, S3)
    let mut packets = Vec::new();
    let mut truth = Vec::new();
    for s1 in [false, true] {
        for s2 in [false, true] {
            for s3 in [false, true] {
                let src = v4(if s1 { V4_A } else { V4_C });
                let dst = v4(if s3 { V4_B } else { V4_D });
                let o = if s2 {
                    padded(&[
                        &ts(),
                        &Dss {
                            ack: Some(9),
                            map: Some((50, 0, 1)),
                            data_fin: true,
                            ..Default::default()
                        }
                        .bytes(),
                    ])
                } else {
                    cat(&[&ts(), &dss_ack(9)])
                };
                packets.push((
                    format!("S1..S3 = {s1} {s2} {s3}"),
                    Pkt::ip(src, dst).opts(o),
                ));
                truth.push([s1, s2, s3]);
            }
        }
    }
    run_matrix("selector combinations", &chains, &packets, &|c, p| {
        model(&exprs[c], truth[p])
    });
}

/// Several chains on one hook run in order, each counting its runs; the
/// first actor that changes the packet wins, later ones see its MP_PRIO
/// (the packet-type summary is recomputed after a change) and skip.
#[test]
fn chains_on_one_hook_run_in_order() {
    if !root("chains_on_one_hook_run_in_order") {
        return;
    }
    let a = v4(V4_A);
    let b = v4(V4_B);
    let c = v4(V4_C);
    let d = v4(V4_D);
    let two = vec![
        chain(
            vec![ipp(Some(a), None, false)],
            vec![set_backup(true, false)],
        ),
        chain(vec![], vec![set_backup(false, false)]),
    ];
    // chain 0 has two actors; chain 1 selects what chain 0 produced
    let stacked = vec![
        chain(
            vec![pt(&["dss_ack"])],
            vec![set_backup(true, false), set_backup(false, false)],
        ),
        chain(vec![pt(&["mp_prio"])], vec![set_backup(false, false)]),
    ];
    let cases = vec![
        Case::new(
            "first chain selects and acts, second skips",
            &dss_ack_pkt(a, b),
            two.clone(),
        )
        .both(exp(
            Out::Prio(true),
            &[
                (st(0, 0, "run"), 1),
                sel_hit(0, 0),
                (st(0, 1, "run"), 1),
                (st(0, 1, "hit"), 1),
                (st(1, 0, "run"), 1),
                (st(1, 0, "skip"), 1),
            ],
        )),
        Case::new(
            "first chain does not select, second acts",
            &dss_ack_pkt(c, d),
            two.clone(),
        )
        .both(exp(
            Out::Prio(false),
            &[
                (st(0, 0, "run"), 1),
                (st(0, 0, "hit"), 0),
                (st(0, 1, "run"), 1),
                (st(0, 1, "hit"), 0),
                (st(1, 0, "run"), 1),
                (st(1, 0, "hit"), 1),
            ],
        )),
        Case::new(
            "a non-MPTCP segment runs through both",
            &Pkt::ip(a, b).opts(ts()),
            two,
        )
        .both(exp(
            Out::Same,
            &[
                sel_hit(0, 0),
                (st(0, 1, "skip"), 1),
                (st(1, 0, "run"), 1),
                (st(1, 0, "skip"), 1),
            ],
        )),
        Case::new(
            "second actor and next chain see the first actor's MP_PRIO",
            &dss_ack_pkt(a, b),
            stacked.clone(),
        )
        .both(exp(
            Out::Prio(true),
            &[
                sel_hit(0, 0),
                (st(0, 1, "hit"), 1),
                (st(0, 2, "run"), 1),
                (st(0, 2, "skip"), 1),
                (st(1, 0, "run"), 1),
                sel_hit(1, 0),
                (st(1, 1, "skip"), 1),
            ],
        )),
        Case::new(
            "nothing selects a plain ACK",
            &Pkt::ip(a, b).opts(ts()),
            stacked.clone(),
        )
        .both(exp(
            Out::Same,
            &[
                (st(0, 0, "hit"), 0),
                (st(0, 1, "run"), 1),
                (st(0, 2, "run"), 1),
                (st(1, 0, "run"), 1),
                (st(1, 0, "hit"), 0),
                (st(1, 1, "run"), 1),
            ],
        )),
        Case::new(
            "a DSS ACK that already carries MP_PRIO: everyone skips",
            &Pkt::ip(a, b).opts(padded(&[&mp_prio(false), &dss_ack(1)])),
            stacked,
        )
        .both(exp(
            Out::Same,
            &[
                sel_hit(0, 0),
                (st(0, 1, "skip"), 1),
                (st(0, 2, "skip"), 1),
                sel_hit(1, 0),
                (st(1, 1, "skip"), 1),
            ],
        )),
    ];
    run_table("chain order", &cases);
}

/// More stages than the kernel's 33 tail calls: one walk program runs
/// them all, and the actor at the end acts (the tail-call walk stopped at
/// the 34th stage; badinput.rs pins that limit for points that still walk
/// by tail calls).
#[test]
fn long_chains_reach_their_actor() {
    if !root("long_chains_reach_their_actor") {
        return;
    }
    // one chain: 63 ip_pair selectors, then drop = 64 stages
    let sel: Vec<Stage> = (0..63).map(|_| ipp(Some(v4(V4_A)), None, false)).collect();
    let chains = vec![chain(sel, vec!["kind = \"drop\"".to_owned()])];
    let mut counts: Vec<(Ctr, u64)> = (0..64).map(|s| (st(0, s, "run"), 1)).collect();
    counts.extend((0..64).map(|s| (st(0, s, "hit"), 1)));
    counts.push((st(0, 63, "tail_miss"), 0));
    let cases = vec![Case::new(
        "64 stages: the actor (64th) acts",
        &dss_ack_pkt(v4(V4_A), v4(V4_B)),
        chains,
    )
    .both(Exp {
        out: Out::Same,
        drop: true,
        counts,
    })];
    run_table("long walk", &cases);
}

/// TC ingress runs the same programs as TC egress.
#[test]
fn tc_ingress_behaves_like_egress() {
    if !root("tc_ingress_behaves_like_egress") {
        return;
    }
    let input = dss_ack_pkt(v4(V4_A), v4(V4_B));
    let data = data_pkt(v4(V4_A), v4(V4_B), 10);
    let rig = Rig::new(
        Hook::TcIngress,
        &one(vec![pt(&["dss_ack", "dss_data"])], true),
    );
    for (p, out, ctr) in [(&input, Out::Prio(true), "hit"), (&data, Out::Same, "skip")] {
        let case = Case::new("tc-ingress", p, vec![]);
        let e = exp(out, &[sel_hit(0, 0), (st(0, 1, ctr), 1)]);
        if let Err(r) = check_case(&rig, &case, &e) {
            panic!("{r}");
        }
    }
}
