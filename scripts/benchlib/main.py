"""scripts/bench driver: the talk's use cases and the cost figures, each
measured baseline vs emptcp in one run (A B A B ...), written to
bench-results/<name>.json and bench-results/<name>.svg, summarised in a
table on stdout. See scripts/bench --help.

One module per experiment (its testbed, policy and measurement); what
they share is in common.py (report, machine record, two-link testbed),
net.py (namespaces, links, emptcp), traffic.py, stats.py and svg.py."""

import argparse
import os
import signal
import sys
import time

from . import apply, net, rl, stages, tables, uc1, uc2a, uc2b, wire, wire_parts
from .common import Report, machine
from .stats import RESULTS, log

# name -> run(rep, emptcp, quick, args)
EXPERIMENTS = {
    "uc1": lambda rep, emptcp, quick, a: uc1.tenants(rep, emptcp, quick, n=a.tenants, queue=a.queue),
    "uc1r": lambda rep, emptcp, quick, a: uc1.redirect(rep, emptcp, quick),
    "uc1rpc": lambda rep, emptcp, quick, a: uc1.rpc(rep, emptcp, quick, n=a.tenants, queue=a.queue),
    "uc2a": lambda rep, emptcp, quick, a: uc2a.run(rep, emptcp, quick),
    "uc2b": lambda rep, emptcp, quick, a: uc2b.run(rep, emptcp, quick),
    "rl": lambda rep, emptcp, quick, a: rl.run(rep, emptcp, quick),
    "stages": lambda rep, emptcp, quick, a: stages.run(rep, emptcp, quick),
    "wire": lambda rep, emptcp, quick, a: wire.run(rep, emptcp, quick),
    "wire_parts": lambda rep, emptcp, quick, a: wire_parts.run(rep, emptcp, quick),
    "apply": lambda rep, emptcp, quick, a: apply.run(rep, emptcp, quick),
    "tables": lambda rep, emptcp, quick, a: tables.run(rep, emptcp, quick),
}
GROUPS = {"usecases": ["uc1", "uc1r", "uc1rpc", "uc2a", "uc2b", "rl"], "cost": ["stages", "wire", "apply", "tables"],
          "all": ["uc1", "uc1r", "uc1rpc", "uc2a", "uc2b", "rl", "stages", "wire", "apply", "tables"]}


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench")
    ap.add_argument("what", nargs="?", default="all", choices=["usecases", "cost", "all", "uc1", "uc1r", "uc1rpc", "uc2a", "uc2b",
                                                             "wire", "wire_parts", "apply", "stages", "rl", "tables"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tenants", type=int, help="use case 1: tenant pairs at once (default 8, --quick 3)")
    ap.add_argument("--queue", choices=["fifo", "tenant"], default="fifo",
                    help="use case 1: the links' queues, one FIFO or an HTB class per tenant (default fifo)")
    ap.add_argument("--emptcp", default="target/release/emptcp")
    a = ap.parse_args()
    emptcp = os.path.abspath(a.emptcp)
    net.sweep_stale(emptcp)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rep = Report(a.quick)
    rep.row("experiment", "condition", "metric", "baseline median [min..max]",
            "emptcp median [min..max]", "change", "goal")
    sel = GROUPS.get(a.what, [a.what])
    t0 = time.monotonic()
    m = machine()
    log(f"machine: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}, load {' '.join(m['loadavg'])}, "
        f"busiest: {'; '.join(m['busy_processes']) or '-'}")
    for e in sel:
        EXPERIMENTS[e](rep, emptcp, a.quick, a)
    print()
    print(rep.table())
    print(f"\n{len(sel)} experiment(s) in {time.monotonic() - t0:.0f} s; results in {RESULTS}/")


if __name__ == "__main__":
    main()
