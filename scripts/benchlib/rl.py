"""rate_limit accuracy: one subflow limited, the other free; the limited
subflow's rate as the sender's kernel counts it acknowledged."""

import threading
import time

from . import traffic
from .net import chain
from .stats import fmt, log, rate_mbit, summary
from .wire import wire_bed


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


def run(rep, emptcp, quick):
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
