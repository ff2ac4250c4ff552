"""Cost on the wire, by part: bpf_stats ns per run of a no-op tcx program,
the entry with a lone `pass`, and the `wire` chain, at the same hooks."""

import json
import os

from . import net, tcx, traffic
from .net import chain
from .stats import fmt, log, summary
from .wire import wire_bed, wire_policy


def _entry_ids(state_dir):
    """Ids of the programs an emptcp state dir puts on its hooks: the entry
    programs pinned there and the walk programs in its prog array (a walk
    runs at the hook itself; where the entry tail-calls it instead, the
    walk's own stats stay 0 and its time counts in the entry's)."""
    d = os.path.join(state_dir, "tc")
    ids = set()
    for f in os.listdir(d) if os.path.isdir(d) else []:
        if f.startswith("entry-"):
            ids.add(json.loads(net.run(["bpftool", "prog", "show", "pinned", os.path.join(d, f), "-j"]))["id"])
    progs = os.path.join(d, "emptcp_progs")
    if os.path.exists(progs):
        names = {p["id"]: p.get("name", "") for p in json.loads(net.run(["bpftool", "prog", "show", "-j"]))}
        for e in json.loads(net.run(["bpftool", "map", "dump", "pinned", progs, "-j"])):
            v = e.get("value")
            pid = int.from_bytes(bytes(int(b, 16) for b in v), "little") if isinstance(v, list) else v
            if names.get(pid, "").startswith("emptcp_walk"):
                ids.add(pid)
    return ids


def _prog_stats(ids):
    out = json.loads(net.run(["bpftool", "prog", "show", "-j"]))
    got = {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in out if p["id"] in ids}
    return tuple(sum(v[k] for v in got.values()) for k in (0, 1))


def run(rep, emptcp, quick):
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
    # WIRE_MARK=1: chain3 sets a literal mark before its pass (4 stages)
    acts = ([{"kind": "set_mark", "mark": 7}] if os.environ.get("WIRE_MARK") else []) + [{"kind": "pass"}]
    full = wire_policy(b, acts)
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
                try:
                    r = traffic.iperf(b, n["s"], n["c"], "10.1.0.2", secs, rusage=True)
                except RuntimeError as e:
                    # iperf3 loses its control socket now and then on this
                    # bed (with or without programs): that run is left out
                    log(f"wire-parts {cond:6} rep {i}: left out ({e})")
                    r = None
                p1 = {side: _prog_stats(v) for side, v in ids.items()}
                for nd in noops:
                    nd.close()
                if cond not in ("none", "noop"):
                    if r is not None:
                        r["show"] = {side: bed.emptcp("show") for side, (_, _, bed) in ends.items()}
                    for _, _, bed in ends.values():
                        bed.detach()
                if r is None:
                    continue
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
