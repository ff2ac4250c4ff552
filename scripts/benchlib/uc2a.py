"""Use case 2a (path management): 100 kB flow completion times over TCP,
MPTCP, and MPTCP with blk_subflow + add_subflow holding the second subflow
back until 1 MiB is acknowledged, with a fast and a slow second link."""

import os

from . import svg, traffic
from .common import LINK, two_links
from .net import chain
from .stats import RESULTS, fmt, log, q, summary


def uc2a_bed(tag, emptcp, rate1, rate2):
    """client ═ link 1 (rate1), link 2 (rate2) ═ server, HTB both ways. The
    server announces its link-2 address (`signal`), the client accepts it
    and joins 10.2.0.1 -> 10.2.0.2: default MPTCP opens the second subflow
    right after the handshake."""
    b = two_links(tag, emptcp)
    c, s, d = b.names["c"], b.names["s"], b.d
    for ns, dev, rate in ((c, d["x1a"], rate1), (s, d["x1b"], rate1), (c, d["x2a"], rate2),
                          (s, d["x2b"], rate2)):
        b.shape(ns, dev, rate)
    b.mptcp_limits(c, 2, 2)
    b.mptcp_limits(s, 2, 2)
    b.sh(s, f"ip mptcp endpoint add 10.2.0.2 dev {d['x2b']} signal")
    return b


def uc2a_policy(b):
    """Server tc-egress of link 1: blk_subflow keeps every ADD_ADDR; once the
    server has data-ACKed 1 MiB of the client's upload, add_subflow puts
    the kept one back (docs/design.md, "Path management")."""
    n, d = b.names, b.d
    return (chain("blk", d["x1b"], "tc-egress", n["s"], [], [{"kind": "blk_subflow"}]) +
            chain("release", d["x1b"], "tc-egress", n["s"],
                  [{"kind": "sequence", "field": "data_ack", "from": "1MiB"}],
                  [{"kind": "add_subflow"}]))


def run(rep, emptcp, quick):
    rounds, nflows = (3, 8) if quick else (7, 25)
    size, gap = 100 * 1000, 30
    conds = [("link 2 100 Mbit", "100mbit"), ("link 2 20 Mbit", "20mbit")]
    variants = ["TCP", "MPTCP", "emptcp"]
    b = uc2a_bed("2a", emptcp, LINK, conds[0][1])
    fct = {}
    runs = []
    try:
        n, d = b.names, b.d
        traffic.flows_server(b, n["s"], 6000)
        policy = uc2a_policy(b)
        for cond, rate2 in conds:
            for ns, dev in ((n["c"], d["x2a"]), (n["s"], d["x2b"])):
                b.sh(ns, f"tc class change dev {dev} parent 1: classid 1:10 htb rate {rate2} ceil {rate2}")
            for r in range(rounds):
                for v in (variants if r % 2 == 0 else variants[::-1]):
                    if v == "emptcp":
                        b.apply("uc2a", policy)
                    j0 = b.nstat(n["s"], ["MPTcpExtMPJoinAckRx"])["MPTcpExtMPJoinAckRx"]
                    t = traffic.flows(b, n["c"], "10.1.0.2", 6000, "tcp" if v == "TCP" else "mptcp",
                                      nflows, size, gap)
                    j1 = b.nstat(n["s"], ["MPTcpExtMPJoinAckRx"])["MPTcpExtMPJoinAckRx"]
                    if v == "emptcp":
                        b.detach()
                    fct.setdefault((cond, v), []).extend(t)
                    runs.append({"cond": cond, "round": r, "variant": v, "fct_ms": t, "joins": j1 - j0})
                    log(f"uc2a {cond} round {r} {v:7}: median FCT {q(t, .5):6.2f} ms over {len(t)} flows, "
                        f"{j1 - j0} joins")
    finally:
        b.cleanup()
    res = {f"{c}/{v}": summary(x) for (c, v), x in fct.items()}
    rel = {c: res[f"{c}/emptcp"]["median"] / res[f"{c}/TCP"]["median"] - 1 for c, _ in conds}
    doc = {"experiment": "usecase2a-small-flows",
           "topology": f"client = link 1 ({LINK}), link 2 (100 or 20 Mbit) = server, HTB both ways; "
                       "server announces its link-2 address (signal); 100 kB uploads, one at a time; "
                       "FCT = connect() to the server's answer after EOF",
           "flow_bytes": size, "rounds": rounds, "flows_per_variant_per_round": nflows,
           "goal": "emptcp median FCT within 5 % of TCP", "policy": policy,
           "summary": res, "emptcp_vs_tcp": rel, "runs": runs}
    rep.write("usecase2a", doc)
    svg.box_plot(os.path.join(RESULTS, "usecase2a.svg"),
                 "Use case 2a: 100 kB flow completion time", "flow completion time (ms)",
                 [c for c, _ in conds], variants, fct,
                 ymax=2 * max(q(v, .9) for v in fct.values()),
                 subtitle=f"link 1 {LINK}; MPTCP: default (joins at once); "
                          "emptcp: blk_subflow, add_subflow after 1 MiB")
    for c, _ in conds:
        rep.row("uc2a small flows", c, "FCT ms (TCP | MPTCP)",
                f"{fmt(res[c + '/TCP'], 2)} | {fmt(res[c + '/MPTCP'], 2)}", fmt(res[c + "/emptcp"], 2),
                f"{100 * rel[c]:+.1f} % vs TCP",
                "within 5 % of TCP: " + ("met" if rel[c] <= 0.05 else "NOT met"))
    return doc
