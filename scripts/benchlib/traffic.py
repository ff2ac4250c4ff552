"""Traffic for scripts/bench: iperf3 (plain TCP, or MPTCP through
`mptcpize run`, since iperf3 3.12 has no --multipath), and short flows
timed by flows.py."""

import json
import os
import subprocess
import sys
import time

from . import net

HERE = os.path.dirname(os.path.abspath(__file__))


def _wait_listen(bed, ns, port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = bed.sh(ns, f"ss -Hltn 'sport = :{port}'", check=False)
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} in {ns}")


def iperf(bed, server_ns, client_ns, addr, seconds, mptcp=True, port=5201,
          omit=1, bind=None, rusage=False):
    """One iperf3 run client -> server (upload). Returns a dict: mbps
    (receiver side, after `omit` seconds), bytes, and with rusage=True the
    CPU seconds (user+sys, incl. softirq ticks taken in their context) of
    the iperf3 server and client processes."""
    pre = ["mptcpize", "run"] if mptcp else []
    srv = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, *pre, "iperf3", "-s", "-1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    bed.procs.append(srv)
    try:
        _wait_listen(bed, server_ns, port)
        cmd = ["ip", "netns", "exec", client_ns, *pre, "iperf3", "-c", addr, "-p", str(port),
               "-t", str(seconds), "-J"]
        if omit:
            cmd += ["-O", str(omit)]
        if bind:
            cmd += ["-B", bind]
        cli = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
        bed.procs.append(cli)
        out, err = cli.communicate(timeout=seconds + omit + 30)
        bed.procs.remove(cli)
        if cli.returncode != 0:
            raise RuntimeError(f"iperf3 client failed in {client_ns}: {err.strip()} {out[-300:]}")
        j = json.loads(out)
        srv.wait(15)
    finally:
        bed.stop(srv)
    end = j.get("end", {})
    if "sum_received" not in end:
        raise RuntimeError(f"iperf3 {client_ns} -> {addr}: no result ({j.get('error', 'no error given')})")
    r = {
        "mbps": end["sum_received"]["bits_per_second"] / 1e6,
        "bytes": end["sum_received"]["bytes"],
        "seconds": end["sum_received"]["seconds"],
    }
    cpu = end.get("cpu_utilization_percent", {})
    if rusage and cpu:
        # iperf3's own getrusage of both ends, in % of the test's wall time
        r["cpu_client_pct"] = cpu.get("host_total", 0.0)
        r["cpu_server_pct"] = cpu.get("remote_total", 0.0)
    return r


def iperf_background(bed, server_ns, client_ns, addr, seconds, port, bind=None):
    """A long plain-TCP iperf3 flow; returns (server, client) Popens (stop with bed.stop)."""
    srv = bed.spawn(server_ns, ["iperf3", "-s", "-p", str(port)])
    _wait_listen(bed, server_ns, port)
    cmd = ["iperf3", "-c", addr, "-p", str(port), "-t", str(seconds)]
    if bind:
        cmd += ["-B", bind]
    return srv, bed.spawn(client_ns, cmd)


def flows_server(bed, ns, port):
    """flows.py server: a TCP listener on `port`, MPTCP on `port`+1."""
    p = bed.spawn(ns, [sys.executable, os.path.join(HERE, "flows.py"), "server", str(port)],
                  log=os.path.join(bed.tmp, f"flows-server-{port}.log"))
    _wait_listen(bed, ns, port + 1)
    return p


def flows(bed, ns, addr, port, proto, n, size, gap_ms):
    """n sequential uploads of `size` bytes; list of completion times (ms)."""
    port = port + (1 if proto != "tcp" else 0)
    out = bed.sh(ns, f"{sys.executable} {HERE}/flows.py client {addr} {port} "
                 f"{proto} {n} {size} {gap_ms}", timeout=60 + n * 2)
    return json.loads(out)


def cpu_stat():
    """Machine-wide CPU time from /proc/stat (seconds): (sys+softirq+irq, total busy)."""
    with open("/proc/stat") as f:
        f0 = f.readline().split()
    hz = os.sysconf("SC_CLK_TCK")
    v = [int(x) / hz for x in f0[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return system + irq + softirq, user + nice + system + irq + softirq + steal
