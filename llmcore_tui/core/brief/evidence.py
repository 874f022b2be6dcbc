"""A lab's evidence in the brief: the latest successful run's headline, and its figures.

A run whose lab declared charts (``labs.protocol.Chart``, recorded with the run) is shown
through exactly those charts: each y and reference series against its declared x, on the
declared axes. A run without declared charts (recorded before labs declared them) keeps the
older choice: the most informative metric curves against the step.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from llmcore_tui.core.brief.model import MAX_CURVE_POINTS, MAX_CURVES, MAX_HEADLINE, Curve, Figure, LabEvidence

if TYPE_CHECKING:
    from labs.protocol import LiveRun
    from llmcore_tui.core.labhistory import RunRecord


def series_curve(key: str, series: Sequence[tuple[Any, float | None]], reference: bool = False) -> Curve:
    """``series`` as a curve: finite points only, evenly subsampled to MAX_CURVE_POINTS (the last
    one kept); first/last/low/high are taken before subsampling. Integral x values stay ints."""
    points = [(x if isinstance(x, int) or not float(x).is_integer() else int(x), float(v))
              for x, v in series if v is not None and math.isfinite(v)]
    values = [v for _, v in points]
    kept = points
    if len(points) > MAX_CURVE_POINTS:
        stride = len(points) / (MAX_CURVE_POINTS - 1)
        kept = [points[min(len(points) - 1, round(i * stride))] for i in range(MAX_CURVE_POINTS - 1)] + [points[-1]]
    return Curve(key, tuple(kept), len(series), values[0] if values else None, values[-1] if values else None,
                 min(values) if values else None, max(values) if values else None, reference)


def pick_curves(series: dict[str, list[tuple[int, float | None]]], n: int = MAX_CURVES) -> list[str]:
    """The run's curves worth showing: series that move, in :func:`labhistory.informative_keys`
    order (eval/ and charts/ first) but the longest first within a rank, one per metric group
    (the part before ``/``) while other groups are left."""
    from llmcore_tui.core.labhistory import informative_keys

    order = {k: i for i, k in enumerate(informative_keys(series))}
    prefix_rank = {"eval": 0, "charts": 1, "losses": 2}
    moving = [k for k in series if len({v for _, v in series[k] if v is not None}) >= 2]
    moving.sort(key=lambda k: (prefix_rank.get(k.split("/", 1)[0], 3), -len(series[k]), order[k]))
    picked: list[str] = []
    groups: set[str] = set()
    for key in moving:
        group = key.split("/", 1)[0] if "/" in key else key
        if group not in groups:
            picked.append(key)
            groups.add(group)
    picked += [k for k in moving if k not in picked]
    return picked[:n]


def figures(run: "LiveRun") -> tuple[Figure, ...]:
    """The charts ``run`` declared, each with its lines sorted by x (so a line reads left to
    right whatever order the lab swept its x in). A chart none of whose series were recorded is
    kept: the brief says so rather than dropping what the lab meant to show."""
    out = []
    for chart in run.charts:
        lines = tuple(series_curve(line.label, sorted(zip(line.xs, line.ys), key=lambda p: p[0]), line.reference)
                      for line in run.chart_lines(chart))
        out.append(Figure(chart.title, chart.look_for, chart.x_label or chart.x or "step",
                          chart.y_label or ", ".join(chart.y), chart.log_x, chart.log_y, lines))
    return tuple(out)


def lab_evidence(store: Any, lab: Any, runs: list["RunRecord"]) -> LabEvidence:
    """What ``lab``'s runs (newest first) show: the latest successful one is the evidence."""
    from llmcore_tui.core.labhistory import load_run

    ok = [r for r in runs if r.status == "succeeded"]
    chosen = ok[0] if ok else None
    headline: tuple[tuple[str, Any], ...] = ()
    curves: tuple[Curve, ...] = ()
    declared: tuple[Figure, ...] = ()
    if chosen is not None:
        headline = tuple(list((chosen.headline or {}).items())[:MAX_HEADLINE])
        live = load_run(store, chosen.id)
        declared = figures(live)
        if not declared:
            curves = tuple(series_curve(k, live.series[k]) for k in pick_curves(live.series))
    return LabEvidence(lab.name, lab.title, len(runs), len(ok), chosen, runs[0] if runs else None, headline, curves,
                       declared)
