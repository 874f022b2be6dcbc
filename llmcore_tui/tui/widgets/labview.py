"""How a lab's results are drawn in the terminal: its tables with whole column names, a chart's
y range that a few extreme points cannot flatten, decade ticks for a log axis, and a run's status
and time. Pure functions of the recorded values (no widget state), so the Labs widgets and their
tests share them."""

from __future__ import annotations

import math
import time
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from labs.protocol import fmt_value
from llmcore_tui.i18n import N_, _

MAX_POINTS = 400  # per drawn series: long runs are thinned for the terminal
STATUS_STYLE = {N_("succeeded"): "green", N_("failed"): "red", N_("cancelled"): "yellow", N_("running"): "cyan",
                N_("rejected"): "red"}  # a run's status: its key, shown through _()


def status_text(status: str) -> Text:
    return Text(_(status), style=STATUS_STYLE.get(status, ""))


def when(ts: float | None) -> str:
    """A run's start as the runs list shows it (local time, to the minute)."""
    return "—" if ts is None else time.strftime("%m-%d %H:%M", time.localtime(ts))


def short_run_id(run_id: str) -> str:
    """``mdp-20260302-101500-ab12`` -> ``101500-ab12`` (a legend label)."""
    return "-".join(run_id.rsplit("-", 2)[-2:])


def _quantile(sorted_values: list[float], q: float) -> float:
    """The q-quantile of sorted values, linearly interpolated."""
    pos = q * (len(sorted_values) - 1)
    i = int(pos)
    j = min(i + 1, len(sorted_values) - 1)
    return sorted_values[i] + (sorted_values[j] - sorted_values[i]) * (pos - i)


ROBUST_Q = 0.05  # the y range a chart keeps when a few points would flatten the rest ...
ROBUST_STRETCH = 3.0  # ... i.e. when the full range is this many times the 5th-95th percentile range
CLIPPED_NOTE = "y clipped to 5-95th pct"


def robust_ylim(values: list[float]) -> tuple[float, float] | None:
    """A y range for a chart whose few extreme points (the first episodes of a cliff walk at
    -1,784 where the rest sit near -25..-50) would squash every other point into one line: the
    5th-95th percentile range, padded by a tenth, widened to the real extremes where they are
    close. None when the full range is fine (less than ``ROBUST_STRETCH`` times that range)."""
    finite = sorted(v for v in values if v is not None and v == v and abs(v) != float("inf"))
    if len(finite) < 20:
        return None
    lo, hi = _quantile(finite, ROBUST_Q), _quantile(finite, 1 - ROBUST_Q)
    span = hi - lo
    full = finite[-1] - finite[0]
    if span <= 0 or full <= ROBUST_STRETCH * span:
        return None
    pad = 0.1 * span
    low = finite[0] if finite[0] >= lo - pad else lo - pad
    high = finite[-1] if finite[-1] <= hi + pad else hi + pad
    return low, high


def _wrap_name(name: str, width: int = 10) -> str:
    """A long column name broken after ``_`` or ``/`` onto lines of about ``width`` characters."""
    if len(name) <= width:
        return name
    parts, part = [], ""
    for ch in name:
        part += ch
        if ch in "_/":
            parts.append(part)
            part = ""
    parts.append(part)
    lines, line = [], ""
    for part in parts:
        if line and len(line) + len(part) > max(width, max(len(p) for p in parts)):
            lines.append(line)
            line = ""
        line += part
    lines.append(line)
    return "\n".join(lines)


def lab_table(name: str, columns: list[Any], rows: list[list[Any]], width: int | None = None) -> Table:
    """A lab's table whose column names stay whole at ``width``: boxed, each column as wide as
    its name, when that fits; else long names wrap after ``_`` or ``/`` and the columns are
    separated by one space instead of a box. Cells that still do not fit fold; nothing is cut
    to "…"."""
    cells = [[fmt_value(c) for c in row] for row in rows]
    heads = [str(c) for c in columns]

    def name_width(head: str) -> int:
        return max(len(p) for p in head.split("\n")) if head else 0

    def needed(names: list[str], per_column: int, with_cells: bool = True) -> int:
        widths = [max([name_width(h)] + ([len(r[i]) for r in cells if i < len(r)] if with_cells else []))
                  for i, h in enumerate(names)]
        return sum(widths) + per_column * len(names) + 1

    if width is None or needed(heads, 3) <= width:
        table = Table(title=name, title_justify="left", padding=(0, 1))
    else:
        heads = [_wrap_name(h) for h in heads]
        table = Table(title=name, title_justify="left", padding=(0, 0), box=box.SIMPLE_HEAD, show_edge=False)
    keep_names = width is None or needed(heads, 1, with_cells=False) <= width
    for head in heads:
        table.add_column(head, overflow="fold", min_width=name_width(head) if keep_names else None)
    for row in cells:
        table.add_row(*row)
    return table


def thin_points(points: list[tuple[float, float | None]]) -> tuple[list[float], list[float]]:
    """At most about ``MAX_POINTS`` of a series' finite points, evenly spaced, the last one kept."""
    finite = [(s, v) for s, v in points if v is not None]
    stride = max(1, len(finite) // MAX_POINTS)
    kept = finite[::stride]
    if finite and kept[-1] != finite[-1]:
        kept.append(finite[-1])
    return [s for s, _ in kept], [v for _, v in kept]


def decade_ticks(values: list[float]) -> tuple[list[float], list[str]] | None:
    """Ticks at the powers of ten inside ``values``' range (all positive) for a log axis:
    ``1e-8 1e-6 ...``, every second decade when there are many, so the labels stay short (plotext's
    own log ticks print ``0.00000049``). None when the range holds fewer than two decades."""
    if not values:
        return None
    low, high = math.ceil(math.log10(min(values))), math.floor(math.log10(max(values)))
    step = 1 if high - low <= 5 else 2
    exponents = list(range(high, low - 1, -step))[::-1]  # the top decade always labelled
    if len(exponents) < 2:
        return None
    return [10.0 ** e for e in exponents], [f"1e{e}" for e in exponents]


def integer_ticks(values: list[float], count: int = 5) -> tuple[list[float], list[str]] | None:
    """About ``count`` whole-number ticks for an axis of whole numbers (steps, sweeps, episodes),
    where plotext would print ``14.8``; None for other values."""
    if len(values) < 2 or any(v != int(v) for v in values):
        return None
    low, high = int(min(values)), int(max(values))
    if high - low < count:
        return None
    ticks = sorted({round(low + i * (high - low) / (count - 1)) for i in range(count)})
    return [float(t) for t in ticks], [str(t) for t in ticks]
