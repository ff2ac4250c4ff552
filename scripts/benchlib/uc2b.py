"""Use case 2b (path management): default MPTCP opens four subflows over
two access links; on the router, an emptcp chain drops the MP_JOIN SYNs
of the two that would share a link, so only the disjoint pair is left."""

import os
import threading
import time

from . import net, svg, traffic
from .common import LINK, LINK_MBIT
from .net import chain
from .stats import RESULTS, fmt, log, summary


def uc2b_bed(tag, emptcp):
    """client (c1 10.1.0.1 on access link A, c2 10.2.0.1 on B) — router —
    server (s1 10.3.0.2, s2 10.4.0.2). A and B are the bottlenecks (HTB
    100 Mbit both ways); the server side is not shaped. Default MPTCP
    (in-kernel PM, fullmesh client endpoints, the server announcing s2)
    opens all four subflows c1-s1, c1-s2 (both on A), c2-s1, c2-s2 (both on B)."""
    b = net.Net(tag, emptcp)
    c, r, s = b.ns("cli"), b.ns("rtr"), b.ns("srv")
    b.names = dict(c=c, r=r, s=s)
    d = {}
    d["x1a"], d["r1a"] = b.link(c, r, "A")
    d["x2a"], d["r2a"] = b.link(c, r, "B")
    d["r1b"], d["x1b"] = b.link(r, s, "C")
    d["r2b"], d["x2b"] = b.link(r, s, "D")
    b.d = d
    for ns, dev, a in ((c, "x1a", "10.1.0.1"), (r, "r1a", "10.1.0.254"), (c, "x2a", "10.2.0.1"),
                       (r, "r2a", "10.2.0.254"), (r, "r1b", "10.3.0.254"), (s, "x1b", "10.3.0.2"),
                       (r, "r2b", "10.4.0.254"), (s, "x2b", "10.4.0.2")):
        b.addr(ns, d[dev], a + "/24")
    b.sh(r, "sysctl -qw net.ipv4.ip_forward=1")
    for ns, d1, g1, src2, d2, g2 in ((c, d["x1a"], "10.1.0.254", "10.2.0.1", d["x2a"], "10.2.0.254"),
                                     (s, d["x1b"], "10.3.0.254", "10.4.0.2", d["x2b"], "10.4.0.254")):
        b.sh(ns, f"ip route add default via {g1} dev {d1}")
        b.sh(ns, f"ip route add default via {g2} dev {d2} table 2")
        b.sh(ns, f"ip rule add from {src2} table 2")
    for ns, dev in ((c, "x1a"), (c, "x2a"), (r, "r1a"), (r, "r2a")):
        b.shape(ns, d[dev], LINK)
    b.mptcp_limits(c, 3, 2)
    b.mptcp_limits(s, 3, 2)
    b.sh(c, f"ip mptcp endpoint add 10.1.0.1 dev {d['x1a']} subflow fullmesh")
    b.sh(c, f"ip mptcp endpoint add 10.2.0.1 dev {d['x2a']} subflow fullmesh")
    b.sh(s, f"ip mptcp endpoint add 10.4.0.2 dev {d['x2b']} signal")
    return b


def uc2b_policy(b):
    """On the router (a middle node): MP_JOIN SYNs of the two subflows that
    would share an access link with an existing one (c1-s2 on A, c2-s1 on B)
    are dropped (blk_subflow mode=join, selected by address pair), so only
    the disjoint pair c1-s1 (A), c2-s2 (B) is left."""
    n, d = b.names, b.d
    return (chain("disjoint-a", d["r1a"], "tc-ingress", n["r"],
                  [{"kind": "ip_pair", "src": "10.1.0.1", "dst": "10.4.0.2"}],
                  [{"kind": "blk_subflow", "mode": "join"}]) +
            chain("disjoint-b", d["r2a"], "tc-ingress", n["r"],
                  [{"kind": "ip_pair", "src": "10.2.0.1", "dst": "10.3.0.2"}],
                  [{"kind": "blk_subflow", "mode": "join"}]))


def run(rep, emptcp, quick):
    pairs, secs = (2, 1) if quick else (6, 5)
    conds = ["no other traffic", "plain TCP flow on link A"]
    b = uc2b_bed("2b", emptcp)
    runs = []
    try:
        n = b.names
        policy = uc2b_policy(b)
        for cond in conds:
            for pair in range(pairs):
                for side in (("baseline", "emptcp") if pair % 2 == 0 else ("emptcp", "baseline")):
                    if side == "emptcp":
                        b.apply("uc2b", policy)
                    j0 = b.nstat(n["s"], ["MPTcpExtMPJoinAckRx"])["MPTcpExtMPJoinAckRx"]
                    other = {}
                    th = None
                    if cond != conds[0]:
                        th = threading.Thread(target=lambda: other.update(
                            traffic.iperf(b, n["s"], n["c"], "10.3.0.2", secs + 2, mptcp=False,
                                          port=5302, omit=0, bind="10.1.0.1")))
                        th.start()
                        time.sleep(1.0)
                    r = traffic.iperf(b, n["s"], n["c"], "10.3.0.2", secs)
                    if th:
                        th.join()
                        r["other_tcp_mbps"] = other.get("mbps")
                    j1 = b.nstat(n["s"], ["MPTcpExtMPJoinAckRx"])["MPTcpExtMPJoinAckRx"]
                    if side == "emptcp":
                        b.detach()
                    r.update(cond=cond, side=side, pair=pair, joins=j1 - j0)
                    runs.append(r)
                    log(f"uc2b {cond:24} {side:8} pair {pair}: {r['mbps']:6.1f} Mbit/s, {r['joins']} joins"
                        + (f", other TCP flow {r['other_tcp_mbps']:.1f}" if th else ""))
    finally:
        b.cleanup()
    data, res = {}, {}
    for cond in conds:
        for side in ("baseline", "emptcp"):
            sel = [r for r in runs if r["cond"] == cond and r["side"] == side]
            data[(cond, side)] = [r["mbps"] for r in sel]
            res[f"{cond}/{side}"] = summary(data[(cond, side)])
            if cond != conds[0]:
                res[f"{cond}/{side}/other_tcp"] = summary([r["other_tcp_mbps"] for r in sel])
    doc = {"experiment": "usecase2b-large-flows",
           "topology": "client (c1 on access link A, c2 on B) - router - server (s1, s2); A and B HTB "
                       "100 Mbit both ways; default: fullmesh client endpoints + server signal -> 4 subflows, "
                       "two on each access link; emptcp on the router: blk_subflow mode=join for c1-s2 and c2-s1",
           "link_mbit": LINK_MBIT, "pairs": pairs, "seconds": secs,
           "goal": ">= 1.8 x one path (180 Mbit/s) and above default MPTCP",
           "policy": policy, "summary": res, "runs": runs}
    rep.write("usecase2b", doc)
    svg.box_plot(os.path.join(RESULTS, "usecase2b.svg"),
                 "Use case 2b: large-flow throughput, 2 x 2 addresses", "MPTCP throughput (Mbit/s)",
                 conds, ["baseline", "emptcp"], data,
                 lines=[(1.8 * LINK_MBIT, "goal 1.8 x path"), (LINK_MBIT, "one path")],
                 subtitle="baseline: default MPTCP, 4 subflows (2 per access link); emptcp: disjoint pair only")
    for cond in conds:
        bs, es = res[f"{cond}/baseline"], res[f"{cond}/emptcp"]
        d = es["median"] / bs["median"] - 1
        above = "yes" if d > 0.02 else ("no (equal within 2 %)" if d > -0.02 else "no")
        goal = ">= 180: " + ("met" if es["median"] >= 180 else "NOT met") + "; above default: " + above
        rep.row("uc2b large flows", cond, "Mbit/s", fmt(bs), fmt(es),
                f"median {100 * (es['median'] / bs['median'] - 1):+.1f} %, mean "
                f"{100 * (es['mean'] / bs['mean'] - 1):+.1f} %", goal)
        if cond != conds[0]:
            bo, eo = res[f"{cond}/baseline/other_tcp"], res[f"{cond}/emptcp/other_tcp"]
            rep.row("", "  the other TCP flow", "Mbit/s", fmt(bo), fmt(eo),
                    f"{100 * (eo['median'] / bo['median'] - 1):+.1f} %", "")
    return doc
