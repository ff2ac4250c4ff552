"""Named sets and maps, from benches/tables.rs: set lookup vs the literal
selector, apply of 100k + 100k elements, update rates, memory."""

import json
import os
import subprocess

from .stats import RESULTS, fmt, log, summary


def run(rep, emptcp, quick):
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
