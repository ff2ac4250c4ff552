"""Plain SVG box plots for scripts/bench (no plotting library needed).

box_plot(path, title, ylabel, groups, series, data, lines)
  groups: x categories; series: names drawn side by side in each group
  data[(group, series)] = list of values; lines: [(y, label)] reference lines
Each box: quartiles, median line, whiskers to min/max, every value a dot.
"""

import math

COLORS = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]


def _q(v, p):
    v = sorted(v)
    if not v:
        return 0.0
    k = (len(v) - 1) * p
    f = math.floor(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def _nice_ticks(lo, hi, n=6):
    span = hi - lo if hi > lo else 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=mag * 10)
    t = math.floor(lo / step) * step
    out = []
    while t <= hi + step * 1e-9:
        out.append(t)
        t += step
    return out


def _esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _head(W, H, title, subtitle):
    """The opening elements of a plot: svg, white background, title, subtitle."""
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{_esc(title)}</text>']
    if subtitle:
        o.append(f'<text x="{W / 2}" y="38" text-anchor="middle" font-size="11" fill="#444">{_esc(subtitle)}</text>')
    return o


def box_plot(path, title, ylabel, groups, series, data, lines=(), ymin=0.0, subtitle="", ymax=None,
             dots_from=None):
    """ymax: clip the axis there; values above it are drawn as triangles on
    the top edge and counted in a note. dots_from: draw as dots only the
    values at or above that quantile (e.g. 0.99: the tail of thousands)."""
    W, H = 160 + 150 * len(groups) * max(1, len(series)) // 2 + 60, 420
    W = max(W, 520)
    L, R, T, B = 70, 20, 56, 70
    pw, ph = W - L - R, H - T - B
    vals = [x for v in data.values() for x in v] + [y for y, _ in lines]
    clipped = 0
    if ymax is not None:
        clipped = sum(x > ymax for v in data.values() for x in v)
        vals = [min(x, ymax) for x in vals]
    hi = max(vals) if vals else 1.0
    lo = min(ymin, min(vals)) if vals else 0.0
    hi = hi + (hi - lo) * 0.08
    ticks = _nice_ticks(lo, hi)
    hi = max(hi, ticks[-1])
    lo = min(lo, ticks[0])

    def y(v):
        return T + ph - (v - lo) / (hi - lo) * ph

    o = _head(W, H, title, subtitle)
    for t in ticks:
        o.append(f'<line x1="{L}" x2="{L + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e6e6e6"/>')
        lab = f"{t:g}" if abs(t) < 1e5 else f"{t:.3g}"
        o.append(f'<text x="{L - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{lab}</text>')
    o.append(f'<line x1="{L}" x2="{L}" y1="{T}" y2="{T + ph}" stroke="black"/>')
    o.append(f'<line x1="{L}" x2="{L + pw}" y1="{T + ph}" y2="{T + ph}" stroke="black"/>')
    o.append(f'<text transform="translate(18,{T + ph / 2}) rotate(-90)" text-anchor="middle">{_esc(ylabel)}</text>')
    gw = pw / len(groups)
    bw = min(46, gw / (len(series) + 1))
    for gi, g in enumerate(groups):
        gx = L + gw * gi + gw / 2
        o.append(f'<text x="{gx:.1f}" y="{T + ph + 18}" text-anchor="middle">{_esc(g)}</text>')
        for si, s in enumerate(series):
            v = data.get((g, s), [])
            if not v:
                continue
            cx = gx + (si - (len(series) - 1) / 2) * (bw * 1.25)
            col = COLORS[si % len(COLORS)]
            q1, q2, q3 = _q(v, .25), _q(v, .5), _q(v, .75)
            o.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(min(v)):.1f}" y2="{y(max(v)):.1f}" stroke="{col}"/>')
            o.append(f'<rect x="{cx - bw / 2:.1f}" y="{y(q3):.1f}" width="{bw:.1f}" '
                     f'height="{max(1, y(q1) - y(q3)):.1f}" fill="{col}" fill-opacity="0.25" stroke="{col}"/>')
            o.append(f'<line x1="{cx - bw / 2:.1f}" x2="{cx + bw / 2:.1f}" y1="{y(q2):.1f}" y2="{y(q2):.1f}" '
                     f'stroke="{col}" stroke-width="2.5"/>')
            cut = _q(v, dots_from) if dots_from is not None else None
            for k, x in enumerate(v):
                if cut is not None and x < cut:
                    continue
                jx = cx + ((k * 37) % 11 - 5) / 5 * bw * 0.35
                if ymax is not None and x > ymax:
                    o.append(f'<path d="M{jx - 3:.1f},{T + 6} L{jx + 3:.1f},{T + 6} L{jx:.1f},{T} Z" fill="{col}"/>')
                    continue
                o.append(f'<circle cx="{jx:.1f}" cy="{y(x):.1f}" r="2.2" fill="{col}"/>')
            o.append(f'<text x="{cx:.1f}" y="{y(q2) - 5:.1f}" text-anchor="middle" font-size="10">{q2:.3g}</text>')
    for yv, lab in lines:
        o.append(f'<line x1="{L}" x2="{L + pw}" y1="{y(yv):.1f}" y2="{y(yv):.1f}" stroke="#d62728" '
                 f'stroke-dasharray="6,4"/>')
        o.append(f'<text x="{L + pw - 4}" y="{y(yv) - 4:.1f}" text-anchor="end" fill="#d62728" '
                 f'font-size="11">{_esc(lab)}</text>')
    lx = L
    for si, s in enumerate(series):
        col = COLORS[si % len(COLORS)]
        o.append(f'<rect x="{lx}" y="{H - 22}" width="12" height="12" fill="{col}" fill-opacity="0.5" stroke="{col}"/>')
        o.append(f'<text x="{lx + 16}" y="{H - 12}">{_esc(s)}</text>')
        lx += 24 + 7 * len(s)
    if clipped:
        o.append(f'<text x="{W - R}" y="{H - 12}" text-anchor="end" font-size="10" fill="#444">'
                 f'{clipped} value(s) above {ymax:g}: triangles on the top edge</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def hbar(path, title, xlabel, rows, series, data, lines=(), subtitle=""):
    """Horizontal bars: one row per label, one bar per series (data[(row, s)] = value)."""
    bh, gap = 11, 8
    L, R, T, B = 250, 40, 56, 60
    rh = bh * len(series) + gap
    H = T + B + rh * len(rows)
    W = 760
    pw = W - L - R
    vals = [v for v in data.values()] + [x for x, _ in lines]
    hi = max(vals) * 1.1 if vals else 1.0
    lo = min(0.0, min(vals)) if vals else 0.0
    ticks = _nice_ticks(lo, hi)
    hi = max(hi, ticks[-1])
    lo = min(lo, ticks[0])

    def x(v):
        return L + (v - lo) / (hi - lo) * pw

    o = _head(W, H, title, subtitle)
    ph = rh * len(rows)
    for t in ticks:
        o.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{T}" y2="{T + ph}" stroke="#e6e6e6"/>')
        o.append(f'<text x="{x(t):.1f}" y="{T + ph + 16}" text-anchor="middle">{t:g}</text>')
    o.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{T}" y2="{T + ph}" stroke="black"/>')
    o.append(f'<text x="{L + pw / 2}" y="{T + ph + 34}" text-anchor="middle">{_esc(xlabel)}</text>')
    for ri, r in enumerate(rows):
        y0 = T + ri * rh + gap / 2
        o.append(f'<text x="{L - 6}" y="{y0 + bh * len(series) / 2 + 4:.1f}" text-anchor="end">{_esc(r)}</text>')
        for si, s in enumerate(series):
            v = data.get((r, s))
            if v is None:
                continue
            col = COLORS[(si + 1) % len(COLORS)]
            x0, x1 = sorted((x(0), x(v)))
            o.append(f'<rect x="{x0:.1f}" y="{y0 + si * bh:.1f}" width="{max(1, x1 - x0):.1f}" height="{bh - 1}" '
                     f'fill="{col}" fill-opacity="0.7"/>')
            o.append(f'<text x="{x1 + 3:.1f}" y="{y0 + si * bh + bh - 2:.1f}" font-size="10">{v:.0f}</text>')
    for xv, lab in lines:
        o.append(f'<line x1="{x(xv):.1f}" x2="{x(xv):.1f}" y1="{T}" y2="{T + ph}" stroke="#d62728" stroke-dasharray="6,4"/>')
        o.append(f'<text x="{x(xv) + 3:.1f}" y="{T - 4}" fill="#d62728" font-size="11">{_esc(lab)}</text>')
    lx = L
    for si, s in enumerate(series):
        col = COLORS[(si + 1) % len(COLORS)]
        o.append(f'<rect x="{lx}" y="{H - 18}" width="12" height="12" fill="{col}" fill-opacity="0.7"/>')
        o.append(f'<text x="{lx + 16}" y="{H - 8}">{_esc(s)}</text>')
        lx += 30 + 7 * len(s)
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
