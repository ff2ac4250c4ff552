"""Numbers for scripts/bench: quantiles, summaries, the log line, and
where the results go."""

import time

RESULTS = "bench-results"


def q(v, p):
    v = sorted(v)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def summary(v):
    return {"n": len(v), "median": q(v, .5), "mean": sum(v) / len(v) if v else float("nan"),
            "p10": q(v, .1), "p90": q(v, .9),
            "min": min(v) if v else None, "max": max(v) if v else None}


def fmt(s, d=1):
    return f"{s['median']:.{d}f} [{s['min']:.{d}f}..{s['max']:.{d}f}]"


def rate_mbit(rate):
    """A tc rate ('100mbit', '500kbit', '1gbit') in Mbit/s."""
    for unit, f in (("kbit", 1e-3), ("mbit", 1.0), ("gbit", 1e3)):
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * f
    raise ValueError(f"rate {rate!r}: use kbit, mbit or gbit")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)
