"""Throw-away network testbeds for scripts/bench: namespaces, veth links,
HTB shaping, addresses, routes, MPTCP endpoints, and the emptcp CLI.

Everything created is named with the bench's prefix (`emb<pid>`) and
registered, so `Net.cleanup()` (called on exit, error and signals) removes
it; `sweep_stale()` removes what a killed earlier run left behind.
"""

import os
import re
import shutil
import subprocess
import time

PREFIX = "emb"


def run(cmd, check=True, timeout=120, capture=True, env=None):
    """Run a command (list); returns stdout. Raises with stderr on failure."""
    p = subprocess.run(
        cmd,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and p.returncode != 0:
        raise RuntimeError(
            f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr or ''}"
        )
    return p.stdout or ""


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale(emptcp):
    """Remove namespaces and state dirs of bench runs whose process is gone."""
    pat = re.compile(rf"^{PREFIX}(\d+)-")
    me = int(os.environ.get("BENCH_ID", os.getpid()))
    for name in run(["ip", "netns", "list"], check=False).split():
        m = pat.match(name)
        if m and int(m.group(1)) != me and not pid_alive(int(m.group(1))):
            run(["ip", "netns", "del", name], check=False)
    for name in os.listdir("/sys/fs/bpf"):
        m = pat.match(name)
        if m and int(m.group(1)) != me and not pid_alive(int(m.group(1))):
            d = f"/sys/fs/bpf/{name}"
            run([emptcp, "--state-dir", d, "detach", "--all"], check=False)
            shutil.rmtree(d, ignore_errors=True)


class Net:
    """One bench testbed: namespaces, links, emptcp state dir, background
    processes. `tag` makes every name unique within the run."""

    def __init__(self, tag, emptcp):
        self.pid = int(os.environ.get("BENCH_ID", os.getpid()))
        self.tag = tag
        self.emptcp_bin = emptcp
        self.namespaces = []
        self.procs = []
        self.state_dir = f"/sys/fs/bpf/{PREFIX}{self.pid}-{tag}"
        self.tmp = f"/tmp/{PREFIX}{self.pid}-{tag}"
        os.makedirs(self.tmp, exist_ok=True)
        self._dev = 0

    # --- names -------------------------------------------------------
    def ns(self, role):
        """Create a namespace for `role` (client, h1, ...) and return its name."""
        name = f"{PREFIX}{self.pid}-{self.tag}-{role}"
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.sh(name, "ip link set lo up")
        self.sh(name, "sysctl -qw net.mptcp.enabled=1")
        return name

    def dev(self, hint):
        """A device name unique in this run, at most 15 characters."""
        self._dev += 1
        d = f"b{self.pid % 100000}{self.tag[:2]}{hint[:3]}{self._dev}"
        assert len(d) <= 15, d
        return d

    # --- commands ----------------------------------------------------
    def sh(self, ns, cmd, check=True, timeout=60):
        return run(["ip", "netns", "exec", ns, "sh", "-c", cmd], check, timeout)

    def link(self, ns_a, ns_b, hint):
        """A veth pair between two namespaces; returns (dev in a, dev in b)."""
        a, b = self.dev(hint + "a"), self.dev(hint + "b")
        run(["ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b])
        for ns, d in ((ns_a, a), (ns_b, b)):
            self.sh(ns, f"ip link set {d} up")
        return a, b

    def addr(self, ns, dev, cidr):
        self.sh(ns, f"ip addr add {cidr} dev {dev}")

    def shape(self, ns, dev, rate, limit=500):
        """HTB at `rate` on the egress of `dev`, one class, a pfifo of
        `limit` packets (the link's buffer)."""
        self.sh(ns, f"tc qdisc add dev {dev} root handle 1: htb default 10")
        self.sh(ns, f"tc class add dev {dev} parent 1: classid 1:10 htb rate {rate} ceil {rate}")
        self.sh(ns, f"tc qdisc add dev {dev} parent 1:10 handle 10: pfifo limit {limit}")

    def tx_csum_off(self, ns, dev):
        self.sh(ns, f"ethtool -K {dev} tx off >/dev/null")

    def mptcp_limits(self, ns, subflows, add_addr):
        self.sh(ns, f"ip mptcp limits set subflow {subflows} add_addr_accepted {add_addr}")

    def nstat(self, ns, names):
        """Absolute kernel counters of a namespace (nstat -az)."""
        out = self.sh(ns, "nstat -asz 2>/dev/null")
        vals = {}
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 2 and f[0] in names:
                vals[f[0]] = int(f[1])
        return {n: vals.get(n, 0) for n in names}

    # --- background processes -----------------------------------------
    def spawn(self, ns, cmd, log=None):
        """Start `cmd` (list) in `ns`; stopped by cleanup()."""
        out = open(log, "w") if log else subprocess.DEVNULL
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns] + cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    # --- emptcp --------------------------------------------------------
    def emptcp(self, *args, check=True):
        return run([self.emptcp_bin, "--state-dir", self.state_dir, *args], check)

    def apply(self, name, text):
        path = os.path.join(self.tmp, f"{name}.toml")
        with open(path, "w") as f:
            f.write(text)
        t = time.monotonic()
        self.emptcp("apply", path)
        return time.monotonic() - t

    def detach(self):
        if os.path.isdir(self.state_dir):
            self.emptcp("detach", "--all", check=False)
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def cleanup(self):
        for p in list(self.procs):
            self.stop(p)
        self.detach()
        for ns in reversed(self.namespaces):
            run(["ip", "netns", "del", ns], check=False)
        self.namespaces = []
        shutil.rmtree(self.tmp, ignore_errors=True)


def chain(name, dev, hook, ns, selects=(), acts=()):
    """A [[chain]] TOML block; selects/acts are dicts of stage keys (a dict
    value is written as an inline table, e.g. a map reference)."""

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        return f'"{v}"'

    out = [f'[[chain]]\nname = "{name}"\ndev = "{dev}"\nhook = "{hook}"\nnetns = "{ns}"']
    for key, stages in (("select", selects), ("act", acts)):
        for s in stages:
            out.append(f"  [[chain.{key}]]")
            out.extend(f"  {k} = {val(v)}" for k, v in s.items())
    return "\n".join(out) + "\n"
