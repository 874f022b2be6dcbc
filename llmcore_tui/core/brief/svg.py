"""The brief's figures as inline SVG, drawn here from a few primitives (no plotting library):
the 14-day timeline, mastery per module, a run's curves, and the charts a lab declared."""

from __future__ import annotations

import html
import math
from typing import Any

from llmcore_tui.core.brief.formatting import num, timeline_labs, timeline_quiz
from llmcore_tui.core.brief.model import Brief, Curve, Figure
from llmcore_tui.core.brief.words import pct, phrase


def esc(text: Any) -> str:
    return html.escape(str(text))


def _fmt_tick(value: float) -> str:
    return num(float(value))


def _tip(title: str) -> str:
    return f"<title>{esc(title)}</title>" if title else ""


class _Svg:
    """A tiny SVG writer: every chart is built from these few primitives."""

    def __init__(self, width: int, height: int, label: str, cls: str = "chart", aria_label: bool = True):
        """``aria_label``: repeat ``label`` as an attribute; the ``<title>`` child names the figure
        anyway, so text a lab wrote (a declared chart's title) is kept out of attributes."""
        self.width, self.height = width, height
        aria = f' aria-label="{esc(label)}"' if aria_label else ""
        self.parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="{cls}" width="{width}" height="{height}" '
                      f'viewBox="0 0 {width} {height}" role="img"{aria}><title>{esc(label)}</title>']

    def rect(self, x: float, y: float, w: float, h: float, cls: str, title: str = "") -> None:
        tip = _tip(title)
        self.parts.append(f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" '
                          f'height="{max(h, 0):.1f}">{tip}</rect>')

    def line(self, x1: float, y1: float, x2: float, y2: float, cls: str) -> None:
        self.parts.append(f'<line class="{cls}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>')

    def text(self, x: float, y: float, text: str, cls: str = "lbl", anchor: str = "start") -> None:
        self.parts.append(f'<text class="{cls}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{esc(text)}</text>')

    def path(self, points: list[tuple[float, float]], cls: str) -> None:
        d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
        self.parts.append(f'<path class="{cls}" d="{d}"/>')

    def circle(self, x: float, y: float, r: float, cls: str, title: str = "") -> None:
        tip = _tip(title)
        self.parts.append(f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}">{tip}</circle>')

    def triangle(self, x: float, y: float, size: float, cls: str, title: str = "") -> None:
        tip = _tip(title)
        self.parts.append(f'<polygon class="{cls}" points="{x:.1f},{y - size:.1f} {x - size:.1f},{y + size * 0.7:.1f} '
                          f'{x + size:.1f},{y + size * 0.7:.1f}">{tip}</polygon>')

    def legend(self, x: float, y: float, items: list[tuple[str, str]]) -> None:
        for cls, label in items:
            self.rect(x, y - 9, 10, 10, cls)
            self.text(x + 14, y, label)
            x += 24 + 7.5 * len(label) if label.isascii() else 24 + 13 * len(label)

    def __str__(self) -> str:
        return "".join(self.parts) + "</svg>"


def svg_timeline(brief: Brief) -> str:
    t = lambda name: phrase(brief.lang, name)  # noqa: E731
    days = [d for d in brief.timeline if d.number]  # days 1-14 only
    width, height, left, top, bottom = 1000, 250, 44, 44, 40
    svg = _Svg(width, height, t("chart_timeline"), "chart wide")
    plot_h = height - top - bottom
    peak = max([d.reviews for d in days] + [d.quiz_answers for d in days] + [1])
    slot = (width - left - 10) / len(days)
    base = top + plot_h
    svg.line(left, base, width - 10, base, "axis")
    svg.line(left, top, left, base, "axis")
    svg.text(left - 6, base + 4, "0", "tick", "end")
    svg.text(left - 6, top + 4, str(peak), "tick", "end")
    svg.line(left, top, width - 10, top, "grid")
    for i, d in enumerate(days):
        x = left + i * slot
        if d.today:
            svg.rect(x + 1, top - 4, slot - 2, plot_h + 4, "today")
        bw = slot * 0.36
        h_r = plot_h * d.reviews / peak
        h_q = plot_h * d.quiz_answers / peak
        svg.rect(x + slot * 0.12, base - h_r, bw, h_r, "b-reviews", f"D{d.number}: {d.reviews} {t('legend_reviews')}")
        svg.rect(x + slot * 0.12 + bw, base - h_q, bw, h_q, "b-quiz",
                 f"D{d.number}: {timeline_quiz(d)} {t('legend_quiz')}")
        if d.reviews:
            svg.text(x + slot * 0.12 + bw / 2, base - h_r - 3, str(d.reviews), "val", "middle")
        if d.lab_runs:
            ok = any(status == "succeeded" for _, status in d.lab_runs)
            svg.triangle(x + slot / 2, top - 12, 5, "m-lab" if ok else "m-labfail",
                         f"D{d.number}: {timeline_labs(d)}")
            if len(d.lab_runs) > 1:
                svg.text(x + slot / 2 + 7, top - 8, f"×{len(d.lab_runs)}", "tick")
        svg.text(x + slot / 2, base + 15, f"D{d.number}", "tick" if not d.future else "tick dim", "middle")
        if d.date and (i == 0 or d.date.day == 1 or i == len(days) - 1):
            svg.text(x + slot / 2, base + 28, d.date.strftime("%m-%d"), "tick dim", "middle")
    svg.legend(left, 14, [("b-reviews", t("legend_reviews")), ("b-quiz", t("legend_quiz")),
                          ("m-lab", t("legend_labs"))])
    return str(svg)


def svg_mastery(brief: Brief) -> str:
    t = lambda name: phrase(brief.lang, name)  # noqa: E731
    rows = brief.modules
    row_h, left, top, width = 26, 150, 30, 1000
    height = top + row_h * len(rows) + 24
    svg = _Svg(width, height, t("chart_mastery"), "chart wide")
    plot_w = width - left - 70
    for frac in (0.0, 0.5, 0.8, 1.0):
        x = left + plot_w * frac
        svg.line(x, top - 4, x, top + row_h * len(rows), "grid")
        svg.text(x, height - 8, f"{frac:.0%}", "tick", "middle")
    for i, mb in enumerate(rows):
        y = top + i * row_h
        m = mb.mastery
        total = m.cards_total if m else 0
        intro = mb.introduced / total if total else 0.0
        svg.text(left - 8, y + 16, f"D{mb.day.number} {mb.name}", "lbl", "end")
        svg.rect(left, y + 2, plot_w * intro, 5, "b-intro", f"{mb.introduced}/{total}")
        recall = mb.recall
        svg.rect(left, y + 8, plot_w * (recall or 0.0), 7, "b-reviews", f"{t('legend_recall')}: {pct(recall)}")
        acc = m.quiz_accuracy if m else None
        svg.rect(left, y + 16, plot_w * (acc or 0.0), 6, "b-quiz", f"{t('legend_qacc')}: {pct(acc)}")
        label = " / ".join([pct(recall), pct(acc)])
        svg.text(left + plot_w + 6, y + 16, label, "val")
    svg.legend(left, 14, [("b-intro", t("legend_intro")), ("b-reviews", t("legend_recall")),
                          ("b-quiz", t("legend_qacc"))])
    return str(svg)


def svg_curve(curve: Curve, width: int = 360, height: int = 170) -> str:
    svg = _Svg(width, height, curve.key)
    left, right, top, bottom = 58, 10, 20, 28
    pts = list(curve.points)
    log = curve.log_scale
    ys = [math.log10(v) for _, v in pts] if log else [v for _, v in pts]
    xs = [s for s, _ in pts]
    svg.text(left, 13, curve.key + (" (log)" if log else ""), "lbl")
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    if x1 == x0:
        x1 = x0 + 1
    pw, ph = width - left - right, height - top - bottom
    sx = lambda x: left + pw * (x - x0) / (x1 - x0)  # noqa: E731
    sy = lambda y: top + ph * (1 - (y - y0) / (y1 - y0))  # noqa: E731
    svg.line(left, top + ph, left + pw, top + ph, "axis")
    svg.line(left, top, left, top + ph, "axis")
    for y in (y0, y1):
        svg.line(left, sy(y), left + pw, sy(y), "grid")
        svg.text(left - 5, sy(y) + 4, _fmt_tick(10 ** y if log else y), "tick", "end")
    svg.text(left, top + ph + 16, str(x0), "tick", "middle")
    svg.text(left + pw, top + ph + 16, str(x1), "tick", "end")
    svg.path([(sx(x), sy(y)) for x, y in zip(xs, ys)], "curve")
    if len(pts) <= 30:
        for x, y, (_, v) in zip(xs, ys, pts):
            svg.circle(sx(x), sy(y), 2.2, "dot", f"{x}: {num(v)}")
    return str(svg)



def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    """Tick positions (in plotted units: log10 of the value on a log axis) between ``lo`` and ``hi``:
    whole decades on a log axis, else steps of 1, 2 or 5 times a power of ten; the ends when no
    round step gives enough ticks."""
    if log:
        decades = list(range(math.ceil(lo), math.floor(hi) + 1))
        while len(decades) > 6:
            decades = decades[::2]
        return [float(d) for d in decades] if len(decades) >= 2 else [lo, hi]
    raw = (hi - lo) / 4  # about four steps across the axis ...
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = [m * magnitude for m in (0.5, 1, 2, 5, 10)]
    for step in reversed(steps[:next(i for i, s in enumerate(steps) if s >= raw) + 1]):  # ... and three ticks or more
        first = math.ceil(lo / step - 1e-9)
        ticks = [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]
        if len(ticks) >= 3:
            return ticks
    return [lo, hi]


def _span(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def svg_figure(fig: Figure, lang: str = "en", width: int = 460) -> str:
    """A declared chart: every line against its x on the declared (log) axes, ticks and grid, the
    axis names, reference lines dashed and labelled at their end, and a legend below."""
    t = lambda name: phrase(lang, name)  # noqa: E731
    lines = fig.drawn
    left, right, top, plot_h = 62, 16, 34, 150
    legend_top = top + plot_h + 40
    height = legend_top + 16 * max(len(lines), 1)
    svg = _Svg(width, height, fig.title, aria_label=False)
    svg.text(left, 14, fig.title, "lbl")
    svg.text(left, top - 8, fig.y_label + (" (log)" if fig.log_y else ""), "tick")
    pw = width - left - right
    svg.line(left, top + plot_h, left + pw, top + plot_h, "axis")
    svg.line(left, top, left, top + plot_h, "axis")
    svg.text(left + pw / 2, top + plot_h + 30, fig.x_label + (" (log)" if fig.log_x else ""), "tick", "middle")
    if not lines:
        svg.text(left + pw / 2, top + plot_h / 2, t("no_points"), "tick", "middle")
        return str(svg)
    tx = (lambda v: math.log10(v)) if fig.log_x else (lambda v: v)
    ty = (lambda v: math.log10(v)) if fig.log_y else (lambda v: v)
    x0, x1 = _span([tx(x) for line in lines for x, _ in line.points])
    y0, y1 = _span([ty(y) for line in lines for _, y in line.points])
    sx = lambda x: left + pw * (tx(x) - x0) / (x1 - x0)  # noqa: E731
    sy = lambda y: top + plot_h * (1 - (ty(y) - y0) / (y1 - y0))  # noqa: E731
    for tick in _ticks(y0, y1, fig.log_y):
        y = top + plot_h * (1 - (tick - y0) / (y1 - y0))
        svg.line(left, y, left + pw, y, "grid")
        svg.text(left - 5, y + 4, _fmt_tick(10 ** tick if fig.log_y else tick), "tick", "end")
    for tick in _ticks(x0, x1, fig.log_x):
        x = left + pw * (tick - x0) / (x1 - x0)
        svg.line(x, top + plot_h, x, top + plot_h + 4, "axis")
        svg.text(x, top + plot_h + 15, _fmt_tick(10 ** tick if fig.log_x else tick), "tick", "middle")
    measured = 0
    for i, line in enumerate(lines):
        cls = "ref" if line.reference else f"s{measured % 6}"
        measured += not line.reference
        svg.path([(sx(x), sy(y)) for x, y in line.points], f"line {cls}")
        if len(line.points) <= 30:
            for x, y in line.points:
                svg.circle(sx(x), sy(y), 2.2, f"pt {cls}", f"{line.key}: {num(x)}, {num(y)}")
        if line.reference:
            x, y = line.points[-1]
            svg.text(sx(x) - 2, sy(y) - 5, line.key, "tick", "end")
        ly = legend_top + 16 * i
        svg.line(left, ly - 4, left + 22, ly - 4, f"line {cls}")
        svg.text(left + 28, ly, line.key + (f" ({t('reference')})" if line.reference else ""), "tick")
    return str(svg)
