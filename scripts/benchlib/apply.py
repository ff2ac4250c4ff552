"""Cost of `emptcp apply`: wall time of 1, 32 and 100 chains on one device,
fresh state, interleaved; then, on the 100, one chain replaced and the same
file applied again."""

import os

from . import net, svg
from .net import chain
from .stats import RESULTS, fmt, log, summary

SIZES = (1, 32, 100)


def policy(dev, ns, k, changed=None):
    """k chains of ip_pair + set_mark on one device (tc-ingress); chain
    `changed` (an index) with another mark."""
    return "".join(
        chain(f"c{i}", dev, "tc-ingress", ns, [{"kind": "ip_pair", "src": f"10.9.{i // 250}.{i % 250 + 1}"}],
              [{"kind": "set_mark", "mark": i + 1 + (1000 if i == changed else 0)}])
        for i in range(k))


def run(rep, emptcp, quick):
    """Wall time of `emptcp apply` (fresh state) of 1, 32 and 100 chains of
    2 stages (ip_pair + set_mark) on one device, then detach; interleaved.
    On the 100: one chain replaced (its mark changed, twice in a row) and the
    same file applied again (nothing to load)."""
    reps = 3 if quick else 7
    b = net.Net("ap", emptcp)
    times = {k: [] for k in SIZES}
    replace, same = [], []
    try:
        ns = b.ns("host")
        dev, _ = b.link(ns, ns, "ap")
        pol = {k: policy(dev, ns, k) for k in SIZES}
        changed = [policy(dev, ns, 100, changed=50), pol[100]]
        for r in range(reps):
            for k in (SIZES if r % 2 == 0 else SIZES[::-1]):
                t = b.apply(f"apply{k}", pol[k])
                times[k].append(t)
                log(f"apply {k:3} chain(s): {t:.3f} s")
                if k == 100:
                    for j, text in enumerate(changed):
                        replace.append(b.apply(f"replace{j}", text))
                    same.append(b.apply("same", pol[100]))
                    log(f"  one of 100 replaced: {replace[-2]:.3f}, {replace[-1]:.3f} s; "
                        f"the same file again: {same[-1]:.3f} s")
                b.detach()
    finally:
        b.cleanup()
    res = {str(k): summary(v) for k, v in times.items()}
    res["replace one of 100"] = summary(replace)
    res["100 again"] = summary(same)
    doc = {"experiment": "cost-apply", "what": "emptcp apply, fresh state, chains of ip_pair + set_mark "
           "on one device (tc-ingress); every stage verified; on the 100, one chain's mark changed "
           "(twice) and the same file applied again", "reps": reps,
           "summary": res, "seconds": {str(k): v for k, v in times.items()},
           "replace_one_of_100": replace, "same_100_again": same}
    rep.write("cost-apply", doc)
    labels = {1: "1 chain (2 stages)", 32: "32 chains (64 stages)", 100: "100 chains (200 stages)"}
    groups = [labels[k] for k in SIZES] + ["one of 100 replaced"]
    data = {(labels[k], "emptcp"): times[k] for k in SIZES}
    data[("one of 100 replaced", "emptcp")] = replace
    svg.box_plot(os.path.join(RESULTS, "cost-apply.svg"), "Time to apply a policy", "seconds (emptcp apply)",
                 groups, ["emptcp"], data)
    rep.row("cost: apply", "1 | 32 | 100 chains", "seconds", "-",
            " | ".join(fmt(res[str(k)], 3) for k in SIZES), "", "100 chains <= 1 s")
    rep.row("cost: apply", "one of 100 replaced | same file again", "seconds", "-",
            f"{fmt(res['replace one of 100'], 3)} | {fmt(res['100 again'], 3)}", "", "replace <= 0.1 s")
    return doc
