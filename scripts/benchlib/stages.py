"""Cost: per-stage cost of a chain, from benches/cost.rs
(BPF_PROG_TEST_RUN), its table folded into the report."""

import json
import os
import subprocess

from . import svg
from .stats import RESULTS, log


def run(rep, emptcp, quick):
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
    # the cost bench's hooks, in its order ("xdp walk", "xdp tail", ...)
    hooks = []
    for r in rows:
        if r["hook"] not in hooks:
            hooks.append(r["hook"])
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
                 "ns over an empty program (min of rounds)", [str(r["stages"]) for r in lens if r["hook"] == hooks[0]],
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
