"""What the experiments of scripts/bench share: the link rate of the shaped
testbeds, the record of the machine the run shared, the report (a table on
stdout, bench-results/<name>.json), and the two-link testbed."""

import datetime
import json
import os
import platform
import subprocess

from . import net
from .stats import RESULTS

LINK = "100mbit"
LINK_MBIT = 100.0


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
