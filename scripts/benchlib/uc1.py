"""Use case 1 at hypervisor scale for scripts/bench: many tenants behind two
hypervisors joined by two shaped links, their MPTCP subflows placed by
ECMP, by static per-address routes, or by one emptcp chain per hypervisor
with a map (redirect, or set_mark + ip rule); bulk goodput per tenant and
the completion time of small request/response flows (RPCs) beside them.

  tenants i = 0..n-1:  VM-a_i (10.10.0.<i+1>, 10.10.0.<i+101>) ── bridge ── hv1
                       hv1 ═ p1, p2 (HTB each way) ═ hv2
                       hv2 ── bridge ── VM-b_i (10.20.0.<i+1>)
"""

import json
import os
import statistics
import subprocess
import sys
import time

from . import net, svg, traffic
from .common import LINK
from .net import chain
from .stats import RESULTS, fmt, log, q, rate_mbit, summary

HERE = os.path.dirname(os.path.abspath(__file__))
SIDES = ("ecmp", "static", "redirect", "set_mark")
GW = {"h1": ("10.31.0.2", "10.32.0.2"), "h2": ("10.31.0.1", "10.32.0.1")}


def addr1(i):
    return f"10.10.0.{i + 1}"


def addr2(i):
    return f"10.10.0.{i + 101}"


def vmb(i):
    return f"10.20.0.{i + 1}"


def bed(tag, emptcp, n, rate, buf_ms=20, queue="fifo"):
    """The testbed: n tenant pairs, two hypervisors, two links at `rate`.
    The hypervisors route the VM subnets over both links with ECMP, L4 hash
    (fib_multipath_hash_policy=1); tables 101/102 send over link 1/2 (used
    by `ip rule fwmark` for set_mark, and by the static side's rules).
    `queue`: each link's queue, "fifo" (one byte FIFO for all) or "tenant"
    (an HTB class per tenant, see shape_tenants)."""
    b = net.Net(tag, emptcp)
    h1, h2 = b.ns("hv1"), b.ns("hv2")
    b.names = {"h1": h1, "h2": h2}
    d = {}
    for h, cidr in (("h1", "10.10.0.254/24"), ("h2", "10.20.0.254/24")):
        br = b.dev("br")
        b.sh(b.names[h], f"ip link add {br} type bridge && ip link set {br} up && ip addr add {cidr} dev {br}")
        d[f"{h}br"] = br
    d["h1p1"], d["h2p1"] = b.link(h1, h2, "p1")
    d["h1p2"], d["h2p2"] = b.link(h1, h2, "p2")
    b.d = d
    b.addr(h1, d["h1p1"], "10.31.0.1/24")
    b.addr(h2, d["h2p1"], "10.31.0.2/24")
    b.addr(h1, d["h1p2"], "10.32.0.1/24")
    b.addr(h2, d["h2p2"], "10.32.0.2/24")
    for h, dst in (("h1", "10.20.0.0/24"), ("h2", "10.10.0.0/24")):
        ns, (g1, g2) = b.names[h], GW[h]
        p1, p2 = d[f"{h}p1"], d[f"{h}p2"]
        b.sh(ns, "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1")
        b.sh(ns, f"ip route add {dst} nexthop via {g1} dev {p1} weight 1 nexthop via {g2} dev {p2} weight 1")
        for mark, dev, gw in ((1, p1, g1), (2, p2, g2)):
            b.sh(ns, f"ip route add {dst} via {gw} dev {dev} table {100 + mark}")
            b.sh(ns, f"ip rule add fwmark {mark} table {100 + mark}")
        for p in (p1, p2):
            if queue == "tenant":
                shape_tenants(b, ns, p, rate, buf_ms, n, "src" if h == "h1" else "dst")
            else:
                shape(b, ns, p, rate, buf_ms)
    b.va, b.vb = [], []
    for i in range(n):
        va, vb = b.ns(f"a{i}"), b.ns(f"b{i}")
        for ns, h, addrs, gw in ((va, "h1", (addr1(i), addr2(i)), "10.10.0.254"),
                                 (vb, "h2", (vmb(i),), "10.20.0.254")):
            dv, dh = b.link(ns, b.names[h], "t")
            b.sh(b.names[h], f"ip link set {dh} master {d[h + 'br']}")
            for a in addrs:
                b.addr(ns, dv, f"{a}/24")
            b.sh(ns, f"ip route add default via {gw}")
            b.mptcp_limits(ns, 2, 2)
        b.sh(va, f"ip mptcp endpoint add {addr2(i)} dev {dv_of(b, va)} subflow")
        b.va.append(va)
        b.vb.append(vb)
    return b


def shape(b, ns, dev, rate, buf_ms):
    """HTB at `rate` with a byte FIFO of `buf_ms` at that rate: a packet
    FIFO would hold up to 500 GSO packets of 64 KiB each (seconds of
    queue), and flows with the bigger packets crowd the others out."""
    limit = int(rate_mbit(rate) * 1e6 / 8 * buf_ms / 1e3)
    b.sh(ns, f"tc qdisc add dev {dev} root handle 1: htb default 10")
    b.sh(ns, f"tc class add dev {dev} parent 1: classid 1:10 htb rate {rate} ceil {rate}")
    b.sh(ns, f"tc qdisc add dev {dev} parent 1:10 handle 10: bfifo limit {limit}")


def shape_tenants(b, ns, dev, rate, buf_ms, n, match):
    """HTB at `rate` with one class per tenant, as a hypervisor shares a
    link between its VMs: each tenant's class (both its addresses, by IPv4
    source on hv1's links, destination on hv2's: u32 filters) is
    guaranteed rate / (n + 1) and may borrow up to `rate`; class 1:10 takes
    everything else (the background flow) on the same terms. Classes take
    turns a packet at a time (quantum: one MTU); each has a byte FIFO of
    `buf_ms` at the link's rate: a class may take a burst (an RPC's 100 kB
    request) that a FIFO sized to its share would drop (20 ms at 11 Mbit/s
    held 27 kB: 5-6 retransmitted segments per RPC). This kernel has no
    fq_codel or sfq; HTB and u32 are what it offers for per-tenant
    fairness."""
    share = rate_mbit(rate) / (n + 1)
    limit = int(rate_mbit(rate) * 1e6 / 8 * buf_ms / 1e3)
    cmds = [f"tc qdisc add dev {dev} root handle 1: htb default 10",
            f"tc class add dev {dev} parent 1: classid 1:1 htb rate {rate} ceil {rate}"]
    for cls in [10] + [100 + i for i in range(n)]:
        cmds.append(f"tc class add dev {dev} parent 1:1 classid 1:{cls} htb rate {share:.3f}mbit "
                    f"ceil {rate} quantum 1514")
        cmds.append(f"tc qdisc add dev {dev} parent 1:{cls} handle {cls}: bfifo limit {limit}")
    for i in range(n):
        for a in (addr1(i), addr2(i)):
            cmds.append(f"tc filter add dev {dev} parent 1: protocol ip prio 1 u32 "
                        f"match ip {match} {a}/32 flowid 1:{100 + i}")
    b.sh(ns, " && ".join(cmds))


def dv_of(b, ns):
    """The one veth of a tenant namespace."""
    out = b.sh(ns, "ip -o link show type veth")
    return out.split(":")[1].strip().split("@")[0]


def static_rules(b, n, add):
    """The static side: `ip rule from <address>` (hv1) / `to` (hv2) tables
    101/102, the same placement as emptcp's map."""
    verb = "add" if add else "del"
    for i in range(n):
        for a, t in ((addr1(i), 101), (addr2(i), 102)):
            b.sh(b.names["h1"], f"ip rule {verb} from {a} table {t}")
            b.sh(b.names["h2"], f"ip rule {verb} to {a} table {t}")


def policy(b, n, how, backup=(), hold=(), hold_rate=None):
    """One chain per hypervisor, at tc-ingress of its VM bridge, its action's
    parameter from a map keyed by the tenant address: on hv1 by source, on
    hv2 (the ACKs) by destination. redirect: dev map (link 1 or 2);
    set_mark: u32 map (mark N -> table 10N by ip rule). `backup`: tenant
    indexes whose link-1 subflow the hv2 chain marks backup (set_backup on
    the ACKs to VM-a, so that VM-a sends no data on it). `hold`: tenant
    indexes whose link-2 subflow is held to `hold_rate` by rate_limit on
    its data at hv1, so that link 2's queue stays short for the others."""
    d = b.d
    text = ""
    if hold:
        text += (f'[[set]]\nname = "bulk_link2"\ntype = "addr"\n'
                 f'elements = [{", ".join(chr(34) + addr2(i) + chr(34) for i in hold)}]\n\n')
        text += chain("hv1-hold", d["h1br"], "tc-ingress", b.names["h1"],
                      [{"kind": "src", "set": "bulk_link2"}], [{"kind": "rate_limit", "rate": hold_rate, "burst": "64kb"}])
    param = "dev" if how == "redirect" else "mark"
    for h, key in (("h1", "src"), ("h2", "dst")):
        ns = b.names[h]
        val = (lambda l: f'"{d[h + "p" + str(l)]}"') if how == "redirect" else str
        elems = ", ".join(f'"{a}" = {val(l)}' for i in range(n)
                          for a, l in ((addr1(i), 1), (addr2(i), 2)))
        text += (f'[[map]]\nname = "{h}_link"\nkey = "addr"\nvalue = "{"dev" if how == "redirect" else "u32"}"\n'
                 f'netns = "{ns}"\nelements = {{ {elems} }}\n\n')
        if h == "h2" and backup:
            text += (f'[[set]]\nname = "rpc_link1"\ntype = "addr"\n'
                     f'elements = [{", ".join(chr(34) + addr1(i) + chr(34) for i in backup)}]\n\n')
            text += chain("hv2-backup", d["h2br"], "tc-ingress", ns,
                          [{"kind": "dst", "set": "rpc_link1"}], [{"kind": "set_backup", "backup": True}])
        text += chain(f"{h}-steer", d[h + "br"], "tc-ingress", ns, [],
                      [{"kind": how, param: {"map": f"{h}_link", "key": key}}])
    return text


class Side:
    """Puts one side's placement in and takes it out again."""

    def __init__(self, b, n, side, backup=(), hold=(), hold_rate=None):
        self.b, self.n, self.side = b, n, side
        self.backup, self.hold, self.hold_rate = backup, hold, hold_rate

    def __enter__(self):
        if self.side == "static":
            static_rules(self.b, self.n, True)
        elif self.side == "isolate":
            self.b.apply("uc1", policy(self.b, self.n, "redirect", self.backup, self.hold, self.hold_rate))
        elif self.side in ("redirect", "set_mark", "backup"):
            how = "redirect" if self.side in ("redirect", "backup") else "set_mark"
            self.b.apply("uc1", policy(self.b, self.n, how, self.backup if self.side == "backup" else ()))
        return self

    def __exit__(self, *exc):
        if self.side == "static":
            static_rules(self.b, self.n, False)
        elif self.side != "ecmp":
            self.b.detach()


def bulk_start(b, tenants, seconds, port=5201, cc=None):
    """iperf3 over MPTCP, VM-a_i -> VM-b_i, all at once (`cc`: congestion
    control, iperf3 -C); returns the client Popens (with their server) to
    collect."""
    runs = []
    for i in tenants:
        srv = b.spawn(b.vb[i], ["mptcpize", "run", "iperf3", "-s", "-1", "-p", str(port)])
        runs.append((i, srv))
    for i, _ in runs:
        traffic._wait_listen(b, b.vb[i], port)
    out = []
    for i, srv in runs:
        cli = subprocess.Popen(["ip", "netns", "exec", b.va[i], "mptcpize", "run", "iperf3", "-c", vmb(i),
                                "-p", str(port), "-t", str(seconds), "-O", "1", "-J"]
                               + (["-C", cc] if cc else []),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        b.procs.append(cli)
        out.append((i, srv, cli))
    return out


def bulk_collect(b, started, seconds):
    res = {}
    for i, srv, cli in started:
        o, e = cli.communicate(timeout=seconds + 40)
        b.procs.remove(cli)
        b.stop(srv)
        j = json.loads(o) if o.strip() else {}
        end = j.get("end", {})
        if "sum_received" not in end:
            raise RuntimeError(f"iperf3 tenant {i}: no result ({j.get('error', e.strip()[-200:])})")
        res[i] = end["sum_received"]["bits_per_second"] / 1e6
    return res


def background(b, on):
    """A plain TCP flow hv1 -> hv2 on link `on` (1 or 2), or none."""
    if not on:
        return None
    src, dst = (("10.31.0.1", "10.31.0.2") if on == 1 else ("10.32.0.1", "10.32.0.2"))
    p = traffic.iperf_background(b, b.names["h2"], b.names["h1"], dst, 3600, 5300 + on, bind=src)
    time.sleep(1.5)
    return p


def rpc_servers(b, tenants, port=7000):
    for i in tenants:
        b.spawn(b.vb[i], [sys.executable, os.path.join(HERE, "rpc.py"), "server", str(port)])
    for i in tenants:
        traffic._wait_listen(b, b.vb[i], port)


def rpc_start(b, tenants, count, seed, gap_ms, lo, hi, port=7000):
    out = []
    for i in tenants:
        cli = subprocess.Popen(["ip", "netns", "exec", b.va[i], sys.executable, os.path.join(HERE, "rpc.py"),
                                "client", vmb(i), str(port), str(count), str(seed + i), str(gap_ms),
                                str(lo), str(hi)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        b.procs.append(cli)
        out.append((i, cli))
    return out


def rpc_collect(b, started, timeout):
    res = {}
    for i, cli in started:
        o, e = cli.communicate(timeout=timeout)
        b.procs.remove(cli)
        if cli.returncode != 0:
            raise RuntimeError(f"rpc client tenant {i}: {e.strip()[-300:]}")
        res[i] = json.loads(o)
    return res


# --- the one-tenant bed of the first use-case bench (uc1r) -------------------

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


# --- the experiments ------------------------------------------------------------

def redirect(rep, emptcp, quick):
    """`redirect` against `set_mark` on the one-tenant bed of the first
    use-case bench (VM-a - hv1 = 2 x 100 Mbit, 500-packet FIFO = hv2 - VM-b,
    the machine's congestion control), alternating, with and without a
    plain TCP flow sharing link 1."""
    pairs, conns, secs = (1, 1, 2) if quick else (4, 2, 4)
    conds = ["no background", "background TCP on link 1"]
    b = uc1_bed("rd", emptcp)
    runs = []
    try:
        n = b.names
        for cond in conds:
            bg = None
            if cond != conds[0]:
                bg = traffic.iperf_background(b, n["h2"], n["h1"], "10.31.0.2", 3600, 5301, bind="10.31.0.1")
                time.sleep(1.5)
            for pair in range(pairs):
                for side in ("set_mark", "redirect"):
                    b.apply("rd", uc1_policy(b, side))
                    for c in range(conns):
                        r = traffic.iperf(b, n["vb"], n["va"], "10.20.0.1", secs)
                        r.update(cond=cond, side=side, pair=pair, conn=c)
                        runs.append(r)
                        log(f"redirect {cond:24} {side:8} pair {pair} conn {c}: {r['mbps']:6.1f} Mbit/s")
                    b.detach()
            for p in bg or ():
                b.stop(p)
    finally:
        b.cleanup()
    res = {}
    for cond in conds:
        v = {s: [r["mbps"] for r in runs if r["cond"] == cond and r["side"] == s] for s in ("set_mark", "redirect")}
        sm, rd = summary(v["set_mark"]), summary(v["redirect"])
        ratio = rd["median"] / sm["median"]
        res[cond] = {"set_mark": sm, "redirect": rd, "median_ratio": ratio}
        rep.row("uc1 redirect", cond, "Mbit/s per conn (set_mark | redirect)", fmt(sm), fmt(rd),
                f"redirect/set_mark {ratio:.2f}", "ratio >= 0.9: " + ("met" if ratio >= 0.9 else "NOT met"))
    rep.write("usecase1-redirect", {
        "experiment": "usecase1-redirect",
        "topology": "one tenant: VM-a - hv1 = 2 x veth, HTB 100mbit, pfifo 500 = hv2 - VM-b; "
                    "tc-ingress of the hypervisors' VM-facing devices: ip_pair -> set_mark (ip rule fwmark) "
                    "or ip_pair -> redirect to the link",
        "pairs": pairs, "connections_per_side_per_pair": conns, "seconds_per_connection": secs,
        "goal": "redirect >= 0.9 x set_mark (median per connection)", "summary": res, "runs": runs})


def rotated(sides, rnd):
    """The sides in the order of round `rnd`: each round starts one later."""
    k = rnd % len(sides)
    return tuple(sides[k:]) + tuple(sides[:k])


def tenants(rep, emptcp, quick, n=None, queue="fifo"):
    """n tenants at once, each one MPTCP connection with a subflow per
    address; per-tenant goodput for each placement, sides rotated every
    round; with and without a plain TCP flow on link 1. `queue`: the
    links' queues (bed())."""
    n = n or (3 if quick else 8)
    rounds, secs, rate = (1, 3, "100mbit") if quick else (3, 8, "100mbit")
    conds = ["no background", "background TCP on link 1"]
    b = bed("u1", emptcp, n, rate, queue=queue)
    runs = []
    try:
        for cond in conds:
            bg = background(b, 1 if cond != conds[0] else 0)
            for rnd in range(rounds):
                for side in rotated(SIDES, rnd):
                    with Side(b, n, side):
                        got = bulk_collect(b, bulk_start(b, range(n), secs, cc="cubic"), secs)
                    runs += [{"cond": cond, "side": side, "round": rnd, "tenant": i, "mbps": m}
                             for i, m in got.items()]
                    log(f"uc1 {cond:24} {side:8} round {rnd}: " + " ".join(f"{got[i]:.0f}" for i in range(n))
                        + f" Mbit/s (one link's share {rate_mbit(rate) / n:.1f})")
            for p in bg or ():
                b.stop(p)
    finally:
        b.cleanup()
    tenants_report(rep, runs, conds, n, rate, rounds, secs, policy(b, n, "redirect"), queue)


QUEUES = {"fifo": ("", "20 ms byte FIFO"),
          "tenant": ("-tq", "an HTB class per tenant, a 20 ms byte FIFO each")}


def tenants_report(rep, runs, conds, n, rate, rounds, secs, policy_text, queue):
    """Table rows, bench-results/usecase1[-tq].json and .svg of `tenants`."""
    suffix, qdesc = QUEUES[queue]
    share = rate_mbit(rate) / n
    goal = {conds[0]: 1.8, conds[1]: 1.5}
    res, data = {}, {}
    for cond in conds:
        base = None
        for side in SIDES:
            v = [r["mbps"] for r in runs if r["cond"] == cond and r["side"] == side]
            data[(cond, side)] = [x / share for x in v]
            s = summary(v)
            k = sum(x >= goal[cond] * share for x in v)
            res[f"{cond}/{side}"] = s | {"at_or_above_goal": k, "worst_x_share": s["min"] / share}
            if side == "ecmp":
                base = s
                continue
            rep.row(f"uc1 tenants ({queue})" if side == SIDES[1] else "", cond if side == SIDES[1] else "",
                    f"Mbit/s per tenant: ecmp | {side}", fmt(base), fmt(s),
                    f"worst {s['min'] / share:.2f} x share (ecmp {base['min'] / share:.2f})",
                    f"{k}/{s['n']} >= {goal[cond]} x share " + ("met" if k == s["n"] else "NOT met"))
    rep.write("usecase1" + suffix, {
        "experiment": "usecase1-tenants",
        "topology": f"{n} tenants: VM-a_i (2 addresses, MPTCP 2 subflows) - bridge - hv1 = 2 x veth, HTB {rate}, "
                    f"{qdesc} = hv2 - bridge - VM-b_i; all tenants at once, iperf3 -C cubic; "
                    "ecmp: fib_multipath_hash_policy=1; static: ip rule from/to address -> link table; "
                    "redirect / set_mark: one chain per hypervisor at tc-ingress of its bridge, "
                    "parameter from a map keyed by the tenant address; background: TCP hv1 -> hv2 on link 1",
        "tenants": n, "rate": rate, "queue": queue, "one_link_share_mbit": share, "rounds": rounds, "seconds": secs,
        "goal": "every tenant >= 1.8 x one link's share (rate / n) without background, >= 1.5 x with",
        "policy_redirect": policy_text, "summary": res, "runs": runs})
    svg.box_plot(os.path.join(RESULTS, f"usecase1{suffix}.svg"),
                 f"Use case 1: {n} tenants at once, goodput per tenant",
                 "goodput / one link's share (rate / tenants)", conds, list(SIDES), data,
                 lines=[(1.8, "1.8 x"), (1.0, "one link's share")],
                 subtitle=f"2 links x {rate} (HTB, {qdesc}); emptcp: one chain + map per hypervisor")


RPC_SIDES = ("ecmp", "static", "redirect", "backup", "isolate")
RPC_COUNTERS = ["TcpExtTCPTimeouts", "TcpRetransSegs", "TcpExtTCPLossProbes"]


def rpc(rep, emptcp, quick, n=None, queue="fifo"):
    """Tail latency: RPC tenants (requests of 10-100 kB, one answer byte,
    over one MPTCP connection each) while the other tenants run bulk
    flows; completion-time percentiles per placement. `backup`: redirect,
    plus set_backup on the RPC tenants' link-1 subflow (the link the
    background flow loads). `isolate`: `backup`, and the bulk tenants'
    link-2 subflows held by rate_limit to 3/4 of link 2 together, so that
    link 2's queue stays short for the RPCs."""
    n = n or (3 if quick else 8)
    nrpc = 1 if quick else 2
    count, rounds = (40, 1) if quick else (250, 3)
    rate = "100mbit"
    rpc_t, bulk_t = list(range(n - nrpc, n)), list(range(n - nrpc))
    conds = ["bulk flows", "bulk flows + background TCP on link 1"]
    hold_rate = f"{int(0.75 * rate_mbit(rate) * 1000 / len(bulk_t))}kbit"
    b = bed("rp", emptcp, n, rate, queue=queue)
    runs = []
    try:
        rpc_servers(b, rpc_t)
        for cond in conds:
            bg = background(b, 1 if cond != conds[0] else 0)
            for rnd in range(rounds):
                for side in rotated(RPC_SIDES, rnd):
                    with Side(b, n, side, backup=rpc_t, hold=bulk_t, hold_rate=hold_rate):
                        r = rpc_once(b, rpc_t, bulk_t, count, seed=7 + rnd)
                    runs.append(r | {"cond": cond, "side": side, "round": rnd})
                    fct, cnt = r["fct_ms"], r["rpc_senders"]
                    log(f"rpc {cond:38} {side:8} round {rnd}: p50 {q(fct, .5):6.1f} p99 {q(fct, .99):6.1f} "
                        f"p99.9 {q(fct, .999):6.1f} ms ({len(fct)} RPCs; RPC senders: {cnt['TcpExtTCPTimeouts']} "
                        f"timeouts, {cnt['TcpRetransSegs']} retransmitted segments; bulk tenants "
                        f"{r['bulk_mbps_sum']:.0f} Mbit/s)")
            for p in bg or ():
                b.stop(p)
    finally:
        b.cleanup()
    rpc_report(rep, runs, conds, n, bulk_t, rpc_t, count, rounds, queue)


def rpc_once(b, rpc_t, bulk_t, count, seed):
    """One run: bulk flows from `bulk_t`, `count` RPCs from each of
    `rpc_t` once the bulk flows are up; completion times, the RPC senders'
    loss counters, the bulk tenants' goodput."""
    secs = int(count * 0.06) + 4
    bulk = bulk_start(b, bulk_t, secs, cc="cubic")
    time.sleep(2)
    c0 = [b.nstat(b.va[i], RPC_COUNTERS) for i in rpc_t]
    got = rpc_collect(b, rpc_start(b, rpc_t, count, seed, 10, 10_000, 100_000), secs + 60)
    c1 = [b.nstat(b.va[i], RPC_COUNTERS) for i in rpc_t]
    bulk_mbps = sum(bulk_collect(b, bulk, secs).values())
    return {"fct_ms": [x for i in rpc_t for x in got[i]["fct_ms"]],
            "rpc_senders": {k: sum(y[k] - x[k] for x, y in zip(c0, c1)) for k in RPC_COUNTERS},
            "bulk_mbps_sum": bulk_mbps}


def rpc_report(rep, runs, conds, n, bulk_t, rpc_t, count, rounds, queue):
    """Table rows, bench-results/usecase1-rpc[-tq].json and .svg of `rpc`."""
    suffix, qdesc = QUEUES[queue]
    res = {}
    for cond in conds:
        base = None
        for side in RPC_SIDES:
            rr = [r for r in runs if r["cond"] == cond and r["side"] == side]
            v = [x for r in rr for x in r["fct_ms"]]
            s = {"n": len(v), "p50": q(v, .5), "p90": q(v, .9), "p99": q(v, .99), "p999": q(v, .999),
                 "max": max(v), "p99_per_round": [q(r["fct_ms"], .99) for r in rr],
                 "over_200ms": sum(x > 200 for x in v),
                 "rpc_senders": {k: sum(r["rpc_senders"][k] for r in rr) for k in RPC_COUNTERS},
                 "bulk_mbps_sum_median": statistics.median(r["bulk_mbps_sum"] for r in rr)}
            res[f"{cond}/{side}"] = s
            if side == "ecmp":
                base = s
                continue
            f = lambda s: f"{s['p50']:.1f} | {s['p99']:.1f} | {s['p999']:.1f}"
            rep.row(f"uc1 rpc ({queue})" if side == RPC_SIDES[1] else "", cond if side == RPC_SIDES[1] else "",
                    f"ms p50|p99|p99.9: ecmp | {side}", f(base), f(s),
                    f"p99 {100 * (s['p99'] / base['p99'] - 1):+.0f} %; > 200 ms: {base['over_200ms']} | "
                    f"{s['over_200ms']} of {s['n']}; bulk {base['bulk_mbps_sum_median']:.0f} | "
                    f"{s['bulk_mbps_sum_median']:.0f} Mbit/s",
                    "p99 <= ecmp: " + ("met" if s["p99"] <= base["p99"] else "NOT met"))
    rep.write("usecase1-rpc" + suffix, {
        "experiment": "usecase1-rpc",
        "topology": f"{n} tenants as in usecase1 ({qdesc}); tenants {bulk_t} run bulk iperf3 (cubic), tenants {rpc_t} "
                    "send RPCs (10-100 kB request, 1-byte answer, 10 ms apart, one MPTCP connection each)",
        "rpcs_per_client_per_run": count, "rounds": rounds, "summary": res, "runs": runs})
    svg.box_plot(os.path.join(RESULTS, f"usecase1-rpc{suffix}.svg"),
                 f"Use case 1: RPC completion time beside bulk flows ({qdesc})",
                 "completion time (ms)", conds, list(RPC_SIDES),
                 {(c, s): [x for r in runs if r["cond"] == c and r["side"] == s for x in r["fct_ms"]]
                  for c in conds for s in RPC_SIDES},
                 subtitle="10-100 kB requests; dots: the slowest 1 %; backup: + set_backup on the RPC subflow "
                          "on link 1; isolate: + bulk held off link 2",
                 ymax=600, dots_from=0.99)
