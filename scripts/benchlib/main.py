"""scripts/bench driver: the talk's use cases and the cost figures, each
measured baseline vs emptcp in one run (A B A B ...), written to
bench-results/<name>.json and bench-results/<name>.svg, summarised in a
table on stdout. See scripts/bench --help."""

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time

from . import net, svg, tcx, traffic
from . import uc1 as uc1mod
from .stats import RESULTS, fmt, log, q, rate_mbit, summary
from .net import chain

LINK = "100mbit"
LINK_MBIT = 100.0
TENANTS = None  # scripts/bench --tenants N (use case 1)


# --- bookkeeping ----------------------------------------------------------

def machine():
    """What ran beside the bench: load, the busiest other processes."""
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    ps = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"],
                        stdout=subprocess.PIPE, text=True).stdout.splitlines()
    busy = [l.strip() for l in ps if l.strip() and float(l.split()[0]) >= 5.0][:6]
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cc = open("/proc/sys/net/ipv4/tcp_congestion_control").read().strip()
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu": cpu,
            "loadavg": load, "busy_processes": busy, "tcp_congestion_control": cc}


class Report:
    def __init__(self, quick):
        self.quick = quick
        self.started = datetime.datetime.now().astimezone()
        self.lines = []
        os.makedirs(RESULTS, exist_ok=True)

    def write(self, name, doc):
        doc.setdefault("date", datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
        doc.setdefault("quick", self.quick)
        doc.setdefault("machine", machine())
        with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
            json.dump(doc, f, indent=1)

    def row(self, *cols):
        self.lines.append(cols)

    def table(self):
        w = [max(len(str(r[i])) for r in self.lines if i < len(r)) for i in range(max(map(len, self.lines)))]
        out = []
        for r in self.lines:
            out.append("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip())
        return "\n".join(out)


def htb_sent(bed, ns, dev):
    out = bed.sh(ns, f"tc -s class show dev {dev}")
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "Sent":
            return int(f[1])
    return 0


# --- use case 1: multi-tenant steering on hypervisors ------------------------

def uc1_bed(tag, emptcp):
    """VM-a — hv1 ═ p1, p2 (100 Mbit HTB each way) ═ hv2 — VM-b.
    VM-a has two addresses on its one vNIC and a `subflow` endpoint on the
    second, so each MPTCP connection has two subflows; neither VM knows
    the physical links. The hypervisors route VM traffic over both links
    with ECMP, L4 hash (fib_multipath_hash_policy=1)."""
    b = net.Net(tag, emptcp)
    va, h1, h2, vb = b.ns("vma"), b.ns("hv1"), b.ns("hv2"), b.ns("vmb")
    b.names = dict(va=va, h1=h1, h2=h2, vb=vb)
    d = {}
    d["va"], d["h1v"] = b.link(va, h1, "vm")
    d["h1p1"], d["h2p1"] = b.link(h1, h2, "p1")
    d["h1p2"], d["h2p2"] = b.link(h1, h2, "p2")
    d["h2v"], d["vb"] = b.link(h2, vb, "vm")
    b.d = d
    b.addr(va, d["va"], "10.10.0.1/24")
    b.addr(va, d["va"], "10.10.0.11/24")
    b.addr(h1, d["h1v"], "10.10.0.254/24")
    b.addr(h1, d["h1p1"], "10.31.0.1/24")
    b.addr(h2, d["h2p1"], "10.31.0.2/24")
    b.addr(h1, d["h1p2"], "10.32.0.1/24")
    b.addr(h2, d["h2p2"], "10.32.0.2/24")
    b.addr(h2, d["h2v"], "10.20.0.254/24")
    b.addr(vb, d["vb"], "10.20.0.1/24")
    b.sh(va, "ip route add default via 10.10.0.254")
    b.sh(vb, "ip route add default via 10.20.0.254")
    for ns, dst, g1, g2, p1, p2 in ((h1, "10.20.0.0/24", "10.31.0.2", "10.32.0.2", d["h1p1"], d["h1p2"]),
                                   (h2, "10.10.0.0/24", "10.31.0.1", "10.32.0.1", d["h2p1"], d["h2p2"])):
        b.sh(ns, "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1")
        b.sh(ns, f"ip route add {dst} nexthop via {g1} dev {p1} weight 1 nexthop via {g2} dev {p2} weight 1")
        b.shape(ns, p1, LINK)
        b.shape(ns, p2, LINK)
    # used only by marked packets (emptcp's set_mark): link N for mark N
    for ns, vm, p1, g1, p2, g2 in ((h1, "10.20.0.0/24", d["h1p1"], "10.31.0.2", d["h1p2"], "10.32.0.2"),
                                   (h2, "10.10.0.0/24", d["h2p1"], "10.31.0.1", d["h2p2"], "10.32.0.1")):
        for mark, dev, gw in ((1, p1, g1), (2, p2, g2)):
            b.sh(ns, f"ip route add {vm} via {gw} dev {dev} table {100 + mark}")
            b.sh(ns, f"ip rule add fwmark {mark} table {100 + mark}")
    for ns in (va, vb):
        b.mptcp_limits(ns, 2, 2)
    b.sh(va, f"ip mptcp endpoint add 10.10.0.11 dev {d['va']} subflow")
    return b


def uc1_policy(b, how="set_mark"):
    """Each subflow of VM-a's connections gets its own physical link, on both
    hypervisors (data one way, ACKs the other), selected by VM address, at
    tc-ingress of the hypervisor's VM-facing device. set_mark: the kernel
    forwards by `ip rule fwmark N` (tables set up in uc1_bed); redirect:
    straight to the link's transmit path (as a clone when the packet still
    belongs to the VM's socket: see src/bpf/redirect.bpf.c)."""
    n, d = b.names, b.d
    text = ""
    for vm_addr, p in (("10.10.0.1", "1"), ("10.10.0.11", "2")):
        for h, key in (("1", "src"), ("2", "dst")):
            act = ({"kind": "set_mark", "mark": int(p)} if how == "set_mark"
                   else {"kind": "redirect", "dev": d[f"h{h}p{p}"]})
            text += chain(f"hv{h}-sf{p}", d[f"h{h}v"], "tc-ingress", n[f"h{h}"],
                          [{"kind": "ip_pair", key: vm_addr}], [act])
    return text


def uc1(rep, emptcp, quick):
    uc1mod.tenants(rep, emptcp, quick, n=TENANTS)


def uc1r(rep, emptcp, quick):
    uc1mod.redirect(rep, emptcp, quick)


def uc1rpc(rep, emptcp, quick):
    uc1mod.rpc(rep, emptcp, quick, n=TENANTS)


# --- use case 2: path management ----------------------------------------------

def two_links(tag, emptcp):
    """client (10.1.0.1, 10.2.0.1) = two veth links = server (10.1.0.2,
    10.2.0.2): names in b.names (c, s), devices in b.d (x1a, x1b, x2a, x2b)."""
    b = net.Net(tag, emptcp)
    c, s = b.ns("cli"), b.ns("srv")
    b.names = dict(c=c, s=s)
    d = {}
    d["x1a"], d["x1b"] = b.link(c, s, "l1")
    d["x2a"], d["x2b"] = b.link(c, s, "l2")
    b.d = d
    for ns, dev, a in ((c, d["x1a"], "10.1.0.1/24"), (s, d["x1b"], "10.1.0.2/24"),
                       (c, d["x2a"], "10.2.0.1/24"), (s, d["x2b"], "10.2.0.2/24")):
        b.addr(ns, dev, a)
    return b


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


def uc2a(rep, emptcp, quick):
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


def uc2b(rep, emptcp, quick):
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


# --- cost --------------------------------------------------------------------

def stages(rep, emptcp, quick):
    """Per-stage cost: benches/cost.rs (BPF_PROG_TEST_RUN), its table folded in."""
    out_json = os.path.abspath(os.path.join(RESULTS, "cost-stages-raw.json"))
    cmd = ["cargo", "bench", "--bench", "cost", "--", "--json", out_json] + (["--quick", "--rounds", "3"] if quick else [])
    log("cost: " + " ".join(cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"cargo bench --bench cost failed:\n{p.stderr[-2000:]}")
    table = p.stdout[p.stdout.find("emptcp cost:"):]
    print(table, flush=True)
    rows = json.load(open(out_json))
    doc = {"experiment": "cost-stages", "command": " ".join(cmd),
           "goal": "<= 15 ns per stage; <= 50 ns for 2 selectors + 1 actor", "rows": rows, "table": table}
    rep.write("cost-stages", doc)
    hooks = ["xdp", "tc"]
    kinds = []
    for r in rows:
        if "stages:" not in r["chain"] and r["chain"] not in kinds:
            kinds.append(r["chain"])
    svg.hbar(os.path.join(RESULTS, "cost-stages.svg"), "Per-packet cost of a chain (BPF_PROG_TEST_RUN)",
             "ns per packet over an empty program (min of rounds)", kinds, hooks,
             {(r["chain"], r["hook"]): r["over_min"] for r in rows if "stages:" not in r["chain"]},
             lines=[(50, "goal for 2 selectors + 1 actor")],
             subtitle="1,086-byte DSS data segment; entry program included in every figure")
    lens = [r for r in rows if "x ip_pair hit + pass" in r["chain"]]
    svg.box_plot(os.path.join(RESULTS, "cost-length.svg"), "Chain length: cost grows with stages",
                 "ns over an empty program (min of rounds)", [str(r["stages"]) for r in lens if r["hook"] == "xdp"],
                 hooks, {(str(r["stages"]), r["hook"]): [r["over_min"]] for r in lens},
                 subtitle="N-1 x ip_pair (hit) + pass; groups: stages in the chain")
    for hook in hooks:
        g = {r["chain"]: r for r in rows if r["hook"] == hook}
        combo = g.get("ip_pair + port + pass")
        one = g.get("pass (entry + 1 stage)")
        l16 = next((r for c, r in g.items() if c.startswith("16 stages:") and "x ip_pair" in c), None)
        l1 = next((r for c, r in g.items() if c.startswith(" 1 stages:")), None)
        if combo:
            rep.row("cost per packet", f"{hook}: ip_pair + port + pass", "ns over empty prog", "-",
                    f"{combo['over_min']:.0f} (median {combo['over_median']:.0f})", "",
                    "<= 50 ns: " + ("met" if combo["over_min"] <= 50 else "NOT met"))
        if combo and one:
            per = (combo["over_min"] - one["over_min"]) / 2
            rep.row("", f"{hook}: per selector stage (2-3 stages)", "ns", "-", f"{per:.1f}", "",
                    "<= 15 ns: " + ("met" if per <= 15 else "NOT met"))
        if l16 and l1:
            per = (l16["over_min"] - l1["over_min"]) / 15
            rep.row("", f"{hook}: per stage, 16-stage chain", "ns", "-", f"{per:.1f}", "",
                    "<= 15 ns: " + ("met" if per <= 15 else "NOT met"))
    return doc


def wire_bed(tag, emptcp):
    """client ═ two veth links ═ server, no shaping, offloads on; the client
    joins from its second address: 2 subflows."""
    b = two_links(tag, emptcp)
    c, s, d = b.names["c"], b.names["s"], b.d
    b.mptcp_limits(c, 2, 2)
    b.mptcp_limits(s, 2, 2)
    b.sh(c, f"ip mptcp endpoint add 10.2.0.1 dev {d['x2a']} subflow")
    return b


def wire_policy(b):
    """Every packet of the transfer passes one 3-stage chain: ip_pair (hit),
    port (hit), pass — data at the client's tc-egress, ACKs at the server's."""
    n, d = b.names, b.d
    t = ""
    for dev, ns, src, dst, port in ((d["x1a"], n["c"], "10.1.0.1", "10.1.0.2", {"dport": 5201}),
                                    (d["x2a"], n["c"], "10.2.0.1", "10.1.0.2", {"dport": 5201}),
                                    (d["x1b"], n["s"], "10.1.0.2", "10.1.0.1", {"sport": 5201}),
                                    (d["x2b"], n["s"], "10.1.0.2", "10.2.0.1", {"sport": 5201})):
        t += chain(f"w-{dev}".lower(), dev, "tc-egress", ns,
                   [{"kind": "ip_pair", "src": src, "dst": dst}, {"kind": "port", **port}],
                   [{"kind": "pass"}])
    return t


def bpf_progs(name="emptcp_entry"):
    """{id: (run_time_ns, run_cnt)} of the loaded programs called `name`."""
    out = json.loads(net.run(["bpftool", "prog", "show", "-j"]))
    return {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in out if p.get("name") == name}


def wire(rep, emptcp, quick):
    pairs, secs = (3, 1) if quick else (11, 3)
    b = wire_bed("wi", emptcp)
    runs = []
    stats_path = "/proc/sys/kernel/bpf_stats_enabled"
    stats_old = open(stats_path).read().strip()
    try:
        n = b.names
        policy = wire_policy(b)
        # run time of emptcp's entry programs (tail-called stages included),
        # counted by the kernel: restored on exit
        with open(stats_path, "w") as f:
            f.write("1")
        for pair in range(pairs):
            for side in (("baseline", "emptcp") if pair % 2 == 0 else ("emptcp", "baseline")):
                if side == "emptcp":
                    before = set(bpf_progs())
                    b.apply("wire", policy)
                    ours = set(bpf_progs()) - before
                j0 = b.nstat(n["s"], ["MPTcpExtMPJoinAckRx"])["MPTcpExtMPJoinAckRx"]
                p0 = bpf_progs() if side == "emptcp" else {}
                s0 = traffic.cpu_stat()
                r = traffic.iperf(b, n["s"], n["c"], "10.1.0.2", secs, rusage=True)
                s1 = traffic.cpu_stat()
                if side == "emptcp":
                    p1 = bpf_progs()
                    bpf_ns = sum(p1[i][0] - p0[i][0] for i in ours if i in p0 and i in p1)
                    bpf_cnt = sum(p1[i][1] - p0[i][1] for i in ours if i in p0 and i in p1)
                else:
                    bpf_ns = bpf_cnt = 0
                j1 = b.nstat(n["s"], ["MPTcpExtMPJoinAckRx"])["MPTcpExtMPJoinAckRx"]
                if side == "emptcp":
                    hits = sum(int(x) for x in __import__("re").findall(r"pass\s+hit (\d+)", b.emptcp("show")))
                    b.detach()
                else:
                    hits = 0
                gb = r["bytes"] / 1e9
                # iperf3 counts bytes after the omitted first second; the BPF
                # counters run the whole test: scale by the whole test's bytes
                tot_gb = gb * (secs + 1) / secs
                r.update(side=side, pair=pair, joins=j1 - j0, pass_hits=hits,
                         bpf_runs=bpf_cnt, bpf_ns_per_run=bpf_ns / bpf_cnt if bpf_cnt else 0,
                         bpf_cpu_s_per_gb=bpf_ns / 1e9 / tot_gb,
                         iperf_cpu_s_per_gb=(r.get("cpu_client_pct", 0) + r.get("cpu_server_pct", 0))
                         / 100 * r["seconds"] / gb,
                         machine_sys_softirq_s_per_gb=(s1[0] - s0[0]) / gb)
                runs.append(r)
                log(f"wire {side:8} pair {pair}: {r['mbps']:7.0f} Mbit/s, iperf3 CPU "
                    f"{r['iperf_cpu_s_per_gb']:.2f} s/GB, machine sys+softirq "
                    f"{r['machine_sys_softirq_s_per_gb']:.2f} s/GB, joins {r['joins']}, chain hits {hits}"
                    + (f", emptcp programs {r['bpf_ns_per_run']:.0f} ns/run, {1e3 * r['bpf_cpu_s_per_gb']:.2f} ms/GB"
                       if side == "emptcp" else ""))
    finally:
        with open(stats_path, "w") as f:
            f.write(stats_old)
        b.cleanup()
    res = {}
    for side in ("baseline", "emptcp"):
        sel = [r for r in runs if r["side"] == side]
        res[side] = {k: summary([r[k] for r in sel]) for k in
                     ("mbps", "iperf_cpu_s_per_gb", "machine_sys_softirq_s_per_gb")}
    # paired ratios (each emptcp run against the baseline run of its pair)
    ratio = {k: [] for k in ("mbps", "iperf_cpu_s_per_gb", "machine_sys_softirq_s_per_gb")}
    for pair in range(pairs):
        e = next(r for r in runs if r["pair"] == pair and r["side"] == "emptcp")
        bl = next(r for r in runs if r["pair"] == pair and r["side"] == "baseline")
        for k in ratio:
            ratio[k].append(e[k] / bl[k])
    res["paired_ratio"] = {k: summary(v) for k, v in ratio.items()}
    em = [r for r in runs if r["side"] == "emptcp"]
    res["emptcp_programs"] = {"ns_per_run": summary([r["bpf_ns_per_run"] for r in em]),
                              "cpu_s_per_gb": summary([r["bpf_cpu_s_per_gb"] for r in em]),
                              "runs_per_gb": summary([r["bpf_runs"] / (r["bytes"] / 1e9 * (secs + 1) / secs)
                                                      for r in em])}
    base_cpu = res["baseline"]["iperf_cpu_s_per_gb"]["median"]
    res["emptcp_programs"]["share_of_baseline_cpu"] = res["emptcp_programs"]["cpu_s_per_gb"]["median"] / base_cpu
    doc = {"experiment": "cost-wire", "topology": "client = 2 veth (no shaping, offloads on) = server; "
           "iperf3 under mptcpize, 2 subflows; emptcp: ip_pair + port + pass at tc-egress of all 4 ends",
           "goal": ">= 99 % throughput, <= 1 % more CPU per GB", "pairs": pairs, "seconds": secs,
           "policy": policy, "summary": res, "runs": runs}
    rep.write("cost-wire", doc)
    data = {}
    for side in ("baseline", "emptcp"):
        sel = [r for r in runs if r["side"] == side]
        data[("throughput (Gbit/s)", side)] = [r["mbps"] / 1e3 for r in sel]
        data[("iperf3 CPU s/GB", side)] = [r["iperf_cpu_s_per_gb"] for r in sel]
        data[("machine sys+softirq s/GB", side)] = [r["machine_sys_softirq_s_per_gb"] for r in sel]
    svg.box_plot(os.path.join(RESULTS, "cost-wire.svg"), "On the wire: MPTCP over veth, 3-stage chain on every packet",
                 "Gbit/s  |  CPU seconds per GB", ["throughput (Gbit/s)", "iperf3 CPU s/GB", "machine sys+softirq s/GB"],
                 ["baseline", "emptcp"], data, subtitle="2 subflows, no shaping; baseline: no chain")
    pr = res["paired_ratio"]
    tr, cr = pr["mbps"]["median"], pr["iperf_cpu_s_per_gb"]["median"]

    def verdict(r, ok):
        # a paired ratio whose middle 80 % spans more than +-10 % cannot
        # resolve a 1 % goal: say so rather than "met"/"not met"
        if r["p90"] - r["p10"] > 0.2:
            return f"unresolved: paired ratios {r['p10']:.2f}..{r['p90']:.2f} (p10..p90)"
        return "met" if ok else "NOT met"

    gbit = {s: {k: v / 1e3 if isinstance(v, float) else v for k, v in res[s]["mbps"].items()}
            for s in ("baseline", "emptcp")}
    rep.row("cost on the wire", "veth, 2 subflows", "Gbit/s", fmt(gbit["baseline"], 2), fmt(gbit["emptcp"], 2),
            f"{100 * (tr - 1):+.1f} % (paired median)", ">= 99 %: " + verdict(pr["mbps"], tr >= 0.99))
    rep.row("", "", "iperf3 CPU s/GB", fmt(res["baseline"]["iperf_cpu_s_per_gb"], 2),
            fmt(res["emptcp"]["iperf_cpu_s_per_gb"], 2), f"{100 * (cr - 1):+.1f} % (paired median)",
            "<= +1 %: " + verdict(pr["iperf_cpu_s_per_gb"], cr <= 1.01))
    mr = pr["machine_sys_softirq_s_per_gb"]["median"]
    rep.row("", "", "machine sys+softirq s/GB", fmt(res["baseline"]["machine_sys_softirq_s_per_gb"], 2),
            fmt(res["emptcp"]["machine_sys_softirq_s_per_gb"], 2), f"{100 * (mr - 1):+.1f} % (paired median)",
            "(shared machine: includes others' work)")
    ep = res["emptcp_programs"]
    rep.row("", "", "emptcp programs' CPU (bpf_stats)", "-",
            f"{1e3 * ep['cpu_s_per_gb']['median']:.2f} ms/GB, {ep['ns_per_run']['median']:.0f} ns/packet",
            f"{100 * ep['share_of_baseline_cpu']:.2f} % of iperf3 CPU/GB",
            "<= 1 %: " + ("met" if ep["share_of_baseline_cpu"] <= 0.01 else "NOT met"))
    return doc


def subflow_bytes(b, ns, local, field):
    """{(local, peer): `field`} (bytes_acked, bytes_received) of the
    established MPTCP subflows of `ns` whose local address is `local`, from
    `ss -tin` (iperf3's control connection is MPTCP too)."""
    out = b.sh(ns, "ss -tinH state established")
    lines = out.splitlines()
    found = {}
    for i, line in enumerate(lines):
        f = line.split()
        # "10.2.0.1:port", or "10.2.0.1%dev:port" for a subflow bound to its device
        if len(f) < 4 or not (f[2].startswith(local + ":") or f[2].startswith(local + "%")):
            continue
        info = lines[i + 1] if i + 1 < len(lines) else ""
        if "tcp-ulp-mptcp" not in info:
            continue
        m = __import__("re").search(rf"\b{field}:(\d+)", info)
        found[(f[2], f[3])] = int(m.group(1)) if m else 0
    return found


def busiest_delta(a, b):
    """The largest growth of one subflow's counter between two samples."""
    d = [b[k] - a[k] for k in a if k in b]
    return max(d) if d else None


def rl_policy(b, rate, where):
    """rate_limit on the joined subflow (client 10.2.0.1 -> server), data
    and ACKs: at the sender (client: data at its tc-egress, the server's
    ACKs at its XDP hook) or at the receiver (server: data at its XDP hook,
    its ACKs at its tc-egress)."""
    n, d = b.names, b.d
    act = [{"kind": "rate_limit", "rate": rate}]
    data = [{"kind": "ip_pair", "src": "10.2.0.1"}]
    acks = [{"kind": "ip_pair", "dst": "10.2.0.1"}]
    if where == "sender":
        return (chain("rl-data", d["x2a"], "tc-egress", n["c"], data, act)
                + chain("rl-acks", d["x2a"], "xdp", n["c"], acks, act))
    return (chain("rl-data", d["x2b"], "xdp", n["s"], data, act)
            + chain("rl-acks", d["x2b"], "tc-egress", n["s"], acks, act))


def rl(rep, emptcp, quick):
    """rate_limit accuracy: one subflow limited, the other free, iperf3
    upload over MPTCP; the limited subflow's rate as the sender's kernel
    counts it acknowledged (ss bytes_acked), over the middle of each run."""
    reps, secs = (2, 6) if quick else (4, 10)
    rates = ["5mbit", "20mbit", "100mbit", "400mbit"]
    b = wire_bed("rl", emptcp)
    runs = []
    try:
        n = b.names
        for rate in rates:
            for where in ("sender", "receiver"):
                for r in range(reps):
                    b.apply("rl", rl_policy(b, rate, where))
                    res = {}

                    def sample():
                        time.sleep(2)
                        t0 = time.monotonic()
                        a0 = subflow_bytes(b, n["c"], "10.2.0.1", "bytes_acked")
                        f0 = subflow_bytes(b, n["c"], "10.1.0.1", "bytes_acked")
                        time.sleep(secs - 3)
                        dt = time.monotonic() - t0
                        a1 = subflow_bytes(b, n["c"], "10.2.0.1", "bytes_acked")
                        f1 = subflow_bytes(b, n["c"], "10.1.0.1", "bytes_acked")
                        res.update(limited=busiest_delta(a0, a1), free=busiest_delta(f0, f1), dt=dt)

                    th = threading.Thread(target=sample)
                    th.start()
                    try:
                        traffic.iperf(b, n["s"], n["c"], "10.1.0.2", secs, omit=0)
                    except RuntimeError as e:
                        # one more try; a second failure ends the experiment
                        log(f"rl {rate} at the {where} run {r}: {e}; again")
                        th.join()
                        th = threading.Thread(target=sample)
                        th.start()
                        traffic.iperf(b, n["s"], n["c"], "10.1.0.2", secs, omit=0)
                    finally:
                        th.join()
                        b.detach()
                    if res.get("limited") is None:
                        raise RuntimeError(f"rl {rate} {where}: no joined subflow seen")
                    mbps = res["limited"] * 8 / res["dt"] / 1e6
                    free = (res["free"] or 0) * 8 / res["dt"] / 1e6
                    runs.append({"rate": rate, "where": where, "rep": r, "mbps": mbps, "free_mbps": free})
                    log(f"rl {rate:8} at the {where:8} run {r}: limited subflow {mbps:7.1f} Mbit/s, "
                        f"the other {free:7.0f} Mbit/s")
    finally:
        b.cleanup()
    doc = {"experiment": "rate-limit-accuracy",
           "topology": "client = two veth links (no shaping, offloads on) = server; iperf3 upload under "
                       "mptcpize, 2 subflows; rate_limit on the joined one (data and ACK chains), at the "
                       "sender or at the receiver",
           "goal": "within +-20 % of the rate (issue #3)", "reps": reps, "seconds": secs, "runs": runs}
    rep.write("rate-limit", doc)
    for rate in rates:
        want = rate_mbit(rate)
        for where in ("sender", "receiver"):
            v = [x["mbps"] for x in runs if x["rate"] == rate and x["where"] == where]
            fr = [x["free_mbps"] for x in runs if x["rate"] == rate and x["where"] == where]
            worst = max((x / want - 1 for x in v), key=abs)
            rep.row("rate_limit", f"{rate} at the {where}", "limited subflow Mbit/s (other subflow)",
                    f"{fmt(summary(fr), 0)}", fmt(summary(v), 1), f"worst {100 * worst:+.0f} %",
                    "within 20 %: " + ("met" if abs(worst) <= 0.2 else "NOT met"))
    return doc


def _entry_ids(state_dir):
    """Ids of the entry programs pinned under an emptcp state dir."""
    d = os.path.join(state_dir, "tc")
    ids = set()
    for f in os.listdir(d) if os.path.isdir(d) else []:
        if f.startswith("entry-"):
            ids.add(json.loads(net.run(["bpftool", "prog", "show", "pinned", os.path.join(d, f), "-j"]))["id"])
    return ids


def _prog_stats(ids):
    out = json.loads(net.run(["bpftool", "prog", "show", "-j"]))
    got = {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in out if p["id"] in ids}
    return tuple(sum(v[k] for v in got.values()) for k in (0, 1))


def wire_parts(rep, emptcp, quick):
    """Where the on-the-wire cost goes: bpf_stats ns per run at tc-egress of
    all 4 veth ends for (noop) a program that only returns TCX_NEXT, attached
    through tcx like emptcp's entries; (pass) entry + a lone `pass` stage;
    (chain3) ip_pair + port + pass (the `wire` policy); (none) nothing, for
    iperf3's CPU per GB. Conditions rotate within each repetition. Client
    ends carry the data (GSO super-packets), server ends the ACKs."""
    reps, secs = (3, 2) if quick else (7, 4)
    b = wire_bed("wp", emptcp)
    bs = net.Net("wps", emptcp)   # a second state dir: the server ends' entries
    n, d = b.names, b.d
    ends = {"data": (n["c"], (d["x1a"], d["x2a"]), b), "ack": (n["s"], (d["x1b"], d["x2b"]), bs)}
    full = wire_policy(b)
    blocks = ["[[chain]]" + x for x in full.split("[[chain]]")[1:]]
    pol3 = {"data": "".join(blocks[:2]), "ack": "".join(blocks[2:])}
    pol1 = {side: "".join(chain(f"p-{dev}".lower(), dev, "tc-egress", ns, [], [{"kind": "pass"}])
                          for dev in devs) for side, (ns, devs, _) in ends.items()}
    conds = ["none", "noop", "pass", "chain3"]
    # A/B of builds: WIRE_ALT="tag=path/to/emptcp,..." adds pass@tag and chain3@tag
    alt = dict(x.split("=", 1) for x in os.environ.get("WIRE_ALT", "").split(",") if x)
    for tag in alt:
        conds += [f"pass@{tag}", f"chain3@{tag}"]
    reps = int(os.environ.get("WIRE_REPS", reps))
    runs = []
    stats_path = "/proc/sys/kernel/bpf_stats_enabled"
    stats_old = open(stats_path).read().strip()
    try:
        with open(stats_path, "w") as f:
            f.write("1")
        for i in range(reps):
            k = i % len(conds)
            for cond in conds[k:] + conds[:k]:
                ids, noops = {}, []
                if cond == "noop":
                    for side, (ns, devs, _) in ends.items():
                        noops.append(tcx.Noop([(ns, dev, True) for dev in devs], name=f"emb_noop_{side}"))
                    out = json.loads(net.run(["bpftool", "prog", "show", "-j"]))
                    for side, nd in zip(ends, noops):
                        ids[side] = {p["id"] for p in out if p.get("name") == f"emb_noop_{side}"}
                elif cond != "none":
                    kind, _, tag = cond.partition("@")
                    for side, (_, _, bed) in ends.items():
                        bed.emptcp_bin = os.path.abspath(alt[tag]) if tag else emptcp
                        bed.apply(kind, (pol1 if kind == "pass" else pol3)[side])
                        ids[side] = _entry_ids(bed.state_dir)
                p0 = {side: _prog_stats(v) for side, v in ids.items()}
                r = traffic.iperf(b, n["s"], n["c"], "10.1.0.2", secs, rusage=True)
                p1 = {side: _prog_stats(v) for side, v in ids.items()}
                for nd in noops:
                    nd.close()
                if cond not in ("none", "noop"):
                    r["show"] = {side: bed.emptcp("show") for side, (_, _, bed) in ends.items()}
                    for _, _, bed in ends.values():
                        bed.detach()
                gb = r["bytes"] / 1e9
                tot_gb = gb * (secs + 1) / secs   # the counters run through iperf3's omitted second
                r.update(cond=cond, rep=i, iperf_cpu_s_per_gb=(r.get("cpu_client_pct", 0) + r.get("cpu_server_pct", 0))
                         / 100 * r["seconds"] / gb)
                msg = f"wire-parts {cond:6} rep {i}: {r['mbps']:6.0f} Mbit/s, iperf3 {r['iperf_cpu_s_per_gb']:.3f} s/GB"
                for side in p0:
                    ns_, cnt = (p1[side][0] - p0[side][0]), (p1[side][1] - p0[side][1])
                    r[side] = {"ns": ns_, "runs": cnt, "ns_per_run": ns_ / cnt if cnt else 0,
                               "runs_per_gb": cnt / tot_gb}
                    msg += f"; {side}: {r[side]['ns_per_run']:.0f} ns/run, {cnt / tot_gb / 1e3:.1f}k runs/GB"
                if p0:
                    tot = sum(p1[s][0] - p0[s][0] for s in p0)
                    cnt = sum(p1[s][1] - p0[s][1] for s in p0)
                    r["all"] = {"ns_per_run": tot / cnt if cnt else 0, "cpu_s_per_gb": tot / 1e9 / tot_gb}
                    msg += f"; all: {r['all']['ns_per_run']:.0f} ns/run, {1e3 * r['all']['cpu_s_per_gb']:.2f} ms/GB"
                runs.append(r)
                log(msg)
    finally:
        with open(stats_path, "w") as f:
            f.write(stats_old)
        bs.cleanup()
        b.cleanup()
    res = {"none": {"iperf_cpu_s_per_gb": summary([r["iperf_cpu_s_per_gb"] for r in runs if r["cond"] == "none"])}}
    base = res["none"]["iperf_cpu_s_per_gb"]["median"]
    for cond in conds[1:]:
        sel = [r for r in runs if r["cond"] == cond]
        res[cond] = {f"{side}_{k}": summary([r[side][k] for r in sel])
                     for side in ("data", "ack") for k in ("ns_per_run", "runs_per_gb")}
        res[cond]["all_ns_per_run"] = summary([r["all"]["ns_per_run"] for r in sel])
        res[cond]["cpu_s_per_gb"] = summary([r["all"]["cpu_s_per_gb"] for r in sel])
        res[cond]["share_of_iperf_cpu"] = res[cond]["cpu_s_per_gb"]["median"] / base
    doc = {"experiment": "cost-wire-parts", "reps": reps, "seconds": secs, "policy_chain3": pol3,
           "policy_pass": pol1, "summary": res, "runs": runs}
    rep.write("cost-wire-parts", doc)
    for cond in conds[1:]:
        c = res[cond]
        rep.row("wire parts" if cond == "noop" else "", cond, "ns/run all | data | ack (median [min..max])", "-",
                f"{fmt(c['all_ns_per_run'], 0)} | {fmt(c['data_ns_per_run'], 0)} | {fmt(c['ack_ns_per_run'], 0)}",
                f"{100 * c['share_of_iperf_cpu']:.2f} % of iperf3 CPU/GB",
                f"runs/GB data {c['data_runs_per_gb']['median'] / 1e3:.1f}k, ack {c['ack_runs_per_gb']['median'] / 1e3:.1f}k")
    return doc


def apply(rep, emptcp, quick):
    """Wall time of `emptcp apply` (fresh state) of 1 and of 32 chains of
    2 stages (ip_pair + set_mark) on one device, then detach; interleaved."""
    reps = 3 if quick else 7
    b = net.Net("ap", emptcp)
    times = {1: [], 32: []}
    try:
        ns = b.ns("host")
        dev, _ = b.link(ns, ns, "ap")
        pol = {k: "".join(chain(f"c{i}", dev, "tc-ingress", ns,
                                [{"kind": "ip_pair", "src": f"10.9.{i}.1"}],
                                [{"kind": "set_mark", "mark": i + 1}]) for i in range(k)) for k in times}
        for r in range(reps):
            for k in (times if r % 2 == 0 else list(times)[::-1]):
                t = b.apply(f"apply{k}", pol[k])
                b.detach()
                times[k].append(t)
                log(f"apply {k:2} chain(s): {t:.3f} s")
    finally:
        b.cleanup()
    res = {str(k): summary(v) for k, v in times.items()}
    doc = {"experiment": "cost-apply", "what": "emptcp apply, fresh state, chains of ip_pair + set_mark "
           "on one device (tc-ingress); every stage loaded and verified", "reps": reps,
           "summary": res, "seconds": {str(k): v for k, v in times.items()}}
    rep.write("cost-apply", doc)
    svg.box_plot(os.path.join(RESULTS, "cost-apply.svg"), "Time to apply a policy", "seconds (emptcp apply)",
                 ["1 chain (2 stages)", "32 chains (64 stages)"], ["emptcp"],
                 {("1 chain (2 stages)", "emptcp"): times[1], ("32 chains (64 stages)", "emptcp"): times[32]})
    rep.row("cost: apply", "1 chain | 32 chains", "seconds", "-",
            f"{fmt(res['1'], 3)} | {fmt(res['32'], 2)}", "", "")
    return doc


def tables(rep, emptcp, quick):
    """Named sets and maps: benches/tables.rs (set lookup vs the literal
    selector, apply of 100k + 100k elements, update rates, memory)."""
    out_json = os.path.abspath(os.path.join(RESULTS, "tables-raw.json"))
    cmd = ["cargo", "bench", "--bench", "tables", "--", "--json", out_json] + (["--quick", "--rounds", "3"] if quick else [])
    log("tables: " + " ".join(cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"cargo bench --bench tables failed:\n{p.stderr[-2000:]}")
    table = p.stdout[p.stdout.find("emptcp tables:"):]
    print(table, flush=True)
    js = json.load(open(out_json))
    doc = {"experiment": "tables", "command": " ".join(cmd),
           "goal": "set lookup <= 10 ns over the literal selector, flat across sizes; apply of 100k set + 100k map "
                   "< 1 s; >= 100,000 elements/s (library batch), >= 10,000/s (set add -f)",
           "results": js, "table": table}
    rep.write("tables", doc)
    first = True
    for kind in ("addr", "prefix", "port", "subflow"):
        rows = [r for r in js["lookup"] if r["kind"] == kind and r["size"] is not None]
        if not rows:
            continue
        over = [r["vs_literal_min"] for r in rows]
        by = {}
        for r in rows:
            by.setdefault(r["size"], []).append(r["vs_literal_min"])
        flat = max(min(v) for v in by.values()) - min(min(v) for v in by.values())
        rep.row("tables" if first else "", f"{kind} set vs literal, sizes {'/'.join(map(str, sorted(by)))}",
                "ns over literal (min; xdp, tc, v4, v6)", "-", f"{min(over):+.0f}..{max(over):+.0f}", "",
                ("<= 10 ns: " + ("met" if max(over) <= 10 else "NOT met")) + f"; spread over sizes {flat:.0f} ns")
        first = False
    ap = js.get("apply")
    if ap:
        b = summary(ap["100k_set_100k_map"]["fresh"])
        r = summary(ap["100k_set_100k_map"]["reapply"])
        e = summary(ap["empty"]["fresh"])
        rep.row("", "apply 100k set + 100k map | re-apply", "seconds", f"{fmt(e, 3)} (empty tables)",
                f"{fmt(b, 3)} | {fmt(r, 3)}", "", "< 1 s: " + ("met" if max(b["median"], r["median"]) < 1 else "NOT met"))
    up = js.get("update")
    if up:
        lib = summary(up["lib_1_call_of_100k_per_s"])
        lib1k = summary(up["lib_100_calls_of_1k_per_s"])
        cli = summary(up["cli_file_100k_per_s"])
        rep.row("", "table_add_raw 1 x 100k | 100 x 1k", "elements/s", "-",
                f"{lib['median']:.0f} | {lib1k['median']:.0f}", "",
                ">= 100,000/s: " + ("met" if min(lib["median"], lib1k["median"]) >= 1e5 else "NOT met"))
        rep.row("", "emptcp set add -f (100k lines)", "elements/s", "-", f"{cli['median']:.0f}", "",
                ">= 10,000/s: " + ("met" if cli["median"] >= 1e4 else "NOT met"))
    mem = [r for r in js["memory"] if r["elements"] >= 65535 and r["memcg_kmem"]]
    if mem:
        rep.row("", "kernel memory per element", "bytes (memcg kmem)", "-",
                ", ".join(f"{r['type']} {r['memcg_kmem'] / r['elements']:.0f}" for r in mem), "", "")
    return doc


# --- entry ------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(prog="scripts/bench")
    ap.add_argument("what", nargs="?", default="all", choices=["usecases", "cost", "all", "uc1", "uc1r", "uc1rpc", "uc2a", "uc2b",
                                                             "wire", "wire_parts", "apply", "stages", "rl", "tables"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tenants", type=int, help="use case 1: tenant pairs at once (default 8, --quick 3)")
    ap.add_argument("--emptcp", default="target/release/emptcp")
    a = ap.parse_args()
    global TENANTS
    TENANTS = a.tenants
    emptcp = os.path.abspath(a.emptcp)
    net.sweep_stale(emptcp)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rep = Report(a.quick)
    rep.row("experiment", "condition", "metric", "baseline median [min..max]",
            "emptcp median [min..max]", "change", "goal")
    sel = {"usecases": ["uc1", "uc1r", "uc1rpc", "uc2a", "uc2b", "rl"], "cost": ["stages", "wire", "apply", "tables"],
           "all": ["uc1", "uc1r", "uc1rpc", "uc2a", "uc2b", "rl", "stages", "wire", "apply", "tables"]}.get(a.what, [a.what])
    t0 = time.monotonic()
    m = machine()
    log(f"machine: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}, load {' '.join(m['loadavg'])}, "
        f"busiest: {'; '.join(m['busy_processes']) or '-'}")
    for e in sel:
        globals()[e](rep, emptcp, a.quick)
    print()
    print(rep.table())
    print(f"\n{len(sel)} experiment(s) in {time.monotonic() - t0:.0f} s; results in {RESULTS}/")


if __name__ == "__main__":
    main()
