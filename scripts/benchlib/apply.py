"""Cost of `emptcp apply`: wall time of 1 and of 32 chains on one device,
fresh state, interleaved."""

import os

from . import net, svg
from .net import chain
from .stats import RESULTS, fmt, log, summary


def run(rep, emptcp, quick):
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
