"""Small, dependency-free SVG drawing for the HTML report: line charts and box diagrams.

Models nothing of the kernel. Written by hand rather than with a plotting library so that the
report stays self-contained (inline SVG, no fonts or scripts to fetch) and ``make run`` needs no
heavy import. Every figure carries ``data-figure`` so tests (and readers of the DOM) can find it.
"""

from __future__ import annotations

import math
from html import escape

from localmap.units import fmt_bytes

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            ticks.append(round(t, 10))
        t += step
    return ticks


def _log_ticks(lo: float, hi: float) -> list[float]:
    a, b = math.floor(math.log2(lo)), math.ceil(math.log2(hi))
    step = max(1, (b - a) // 8)
    return [2.0 ** e for e in range(a, b + 1, step)]


def _axis_ticks(lo: float, hi: float, log: bool) -> list[float]:
    """The ticks of one axis that fall inside ``[lo, hi]``."""
    return [t for t in (_log_ticks(lo, hi) if log else _nice_ticks(lo, hi)) if lo <= t <= hi]


def line_chart(
    figure_id: str,
    series: list[tuple[str, list[tuple[float, float]]]],
    *,
    xlabel: str,
    ylabel: str,
    xlog: bool = False,
    ylog: bool = False,
    yfmt=fmt_bytes,
    xfmt=lambda v: f"{v:g}",
    width: int = 660,
    height: int = 330,
    step: bool = False,
    xlim: tuple[float, float] | None = None,
) -> str:
    """A line chart of one or more ``(name, [(x, y), ...])`` series, as an ``<svg>`` string.
    ``xlim``: the x range to draw (default: the points' range)."""
    pts = [p for _, s in series for p in s]
    if not pts:
        raise ValueError("line_chart needs at least one point")
    left, right, top, bottom = 78, 150, 16, 44
    pw, ph = width - left - right, height - top - bottom
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    if xlog:
        xs = [x for x in xs if x > 0]
    if ylog:
        ys = [y for y in ys if y > 0] or [1]
    xlo, xhi = xlim if xlim is not None else (min(xs), max(xs))
    ylo, yhi = (min(ys), max(ys)) if ylog else (min(0, min(ys)), max(ys))
    if xhi == xlo:
        xhi = xlo + 1
    if yhi == ylo:
        yhi = ylo + 1

    def fx(x):
        if xlog:
            return left + pw * (math.log2(x) - math.log2(xlo)) / (math.log2(xhi) - math.log2(xlo))
        return left + pw * (x - xlo) / (xhi - xlo)

    def fy(y):
        if ylog:
            y = max(y, ylo)
            return top + ph - ph * (math.log2(y) - math.log2(ylo)) / (math.log2(yhi) - math.log2(ylo))
        return top + ph - ph * (y - ylo) / (yhi - ylo)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" data-figure="{escape(figure_id)}" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'font-family="sans-serif" font-size="11">']
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>')
    for t in _axis_ticks(ylo, yhi, ylog):
        y = fy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(yfmt(t))}</text>')
    for t in _axis_ticks(xlo, xhi, xlog):
        x = fx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" text-anchor="middle">{escape(xfmt(t))}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="12" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + ph / 2})">{escape(ylabel)}</text>')
    for i, (name, s) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        s = [(x, y) for x, y in s if (not xlog or x > 0)]
        if not s:
            continue
        coords = []
        for j, (x, y) in enumerate(s):
            if step and j:
                coords.append(f"{fx(x):.1f},{fy(s[j - 1][1]):.1f}")
            coords.append(f"{fx(x):.1f},{fy(y):.1f}")
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" '
                   f'points="{" ".join(coords)}" data-series="{escape(name)}"/>')
        if len(s) <= 24:
            for x, y in s:
                out.append(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="2.5" fill="{color}"/>')
        ly = top + 12 + 16 * i
        out.append(f'<line x1="{left + pw + 10}" x2="{left + pw + 28}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 32}" y="{ly}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    figure_id: str,
    categories: list[str],
    series: list[tuple[str, list[float]]],
    *,
    ylabel: str,
    ylog: bool = False,
    yfmt=lambda v: f"{v:,.0f}",
    width: int = 660,
    height: int = 330,
) -> str:
    """Grouped vertical bars: one group per category, one bar per series, as an ``<svg>``."""
    vals = [v for _, s in series for v in s]
    if not categories or not vals:
        raise ValueError("bar_chart needs at least one category and one value")
    left, right, top, bottom = 70, 150, 16, 44
    pw, ph = width - left - right, height - top - bottom
    pos = [v for v in vals if v > 0] or [1]
    ylo, yhi = (min(pos), max(pos)) if ylog else (0, max(vals) or 1)
    if ylog and yhi == ylo:
        yhi = ylo * 2

    def fy(y):
        if ylog:
            if y <= 0:
                return top + ph
            return top + ph - ph * (math.log2(y) - math.log2(ylo) + 0.5) / (math.log2(yhi) - math.log2(ylo) + 0.5)
        return top + ph - ph * y / yhi

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" data-figure="{escape(figure_id)}" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'font-family="sans-serif" font-size="11">']
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>')
    for t in (_log_ticks(ylo, yhi) if ylog else _nice_ticks(0, yhi)):
        if (ylog and (t < ylo / 2 or t > yhi)) or (not ylog and t > yhi):
            continue
        y = fy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(yfmt(t))}</text>')
    gw = pw / len(categories)
    bw = gw * 0.8 / len(series)
    for ci, cat in enumerate(categories):
        x0 = left + gw * ci + gw * 0.1
        out.append(f'<text x="{left + gw * ci + gw / 2:.1f}" y="{top + ph + 14}" text-anchor="middle">'
                   f'{escape(cat)}</text>')
        for si, (name, s) in enumerate(series):
            v = s[ci]
            y = fy(v)
            out.append(f'<rect x="{x0 + bw * si:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{top + ph - y:.1f}" '
                       f'fill="{PALETTE[si % len(PALETTE)]}" data-series="{escape(name)}" '
                       f'data-category="{escape(cat)}" data-value="{v}"/>')
    out.append(f'<text x="12" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + ph / 2})">{escape(ylabel)}</text>')
    for si, (name, _s) in enumerate(series):
        ly = top + 12 + 16 * si
        out.append(f'<rect x="{left + pw + 10}" y="{ly - 9}" width="12" height="10" '
                   f'fill="{PALETTE[si % len(PALETTE)]}"/>')
        out.append(f'<text x="{left + pw + 28}" y="{ly}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


class Canvas:
    """A tiny retained-mode SVG canvas for box-and-arrow diagrams."""

    def __init__(self, figure_id: str, width: int, height: int):
        self.figure_id, self.width, self.height = figure_id, width, height
        self.items: list[str] = []

    def box(self, x, y, w, h, text: str | list[str] = "", fill="#f4f4f4", stroke="#555",
            dash: bool = False, kind: str = "", size: int = 11) -> None:
        extra = ' stroke-dasharray="4 3"' if dash else ""
        kattr = f' data-kind="{escape(kind)}"' if kind else ""
        self.items.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="3" '
                          f'fill="{fill}" stroke="{stroke}"{extra}{kattr}/>')
        lines = [text] if isinstance(text, str) else text
        lines = [ln for ln in lines if ln]
        for i, line in enumerate(lines):
            ty = y + h / 2 + (i - (len(lines) - 1) / 2) * (size + 2) + size / 3
            self.items.append(f'<text x="{x + w / 2:.1f}" y="{ty:.1f}" text-anchor="middle" '
                              f'font-size="{size if i == 0 else size - 1}">{escape(line)}</text>')

    def text(self, x, y, s: str, anchor="start", size=11, weight="normal", fill="#000") -> None:
        self.items.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
                          f'font-weight="{weight}" fill="{fill}">{escape(s)}</text>')

    def arrow(self, x1, y1, x2, y2, color="#555", dash: bool = False) -> None:
        extra = ' stroke-dasharray="4 3"' if dash else ""
        self.items.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                          f'stroke="{color}" stroke-width="1.3" marker-end="url(#arr-{self.figure_id})"{extra}/>')

    def svg(self) -> str:
        fid = escape(self.figure_id)
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" data-figure="{fid}" width="{self.width}" '
                f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" role="img" '
                f'font-family="sans-serif" font-size="11"><defs><marker id="arr-{fid}" '
                f'viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
                f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>')
        return head + "".join(self.items) + "</svg>"
