"""The Labs screen's charts: the figures a run declared (``CHARTS`` in its lab), else every metric
that moves, plotted by step.

A declared chart is drawn as the lab wrote it: ``y`` against ``x`` (or the step), log axes with
decade ticks, several series with a legend, reference series (a formula, a baseline) in a
quieter marker and colour and labelled "(reference)", the axis labels, and under the chart the
one line that says what to look for. The legend is a line of its own between the title and the
plot, each label in its line's colour and marker: plotext's legend sits inside the plot's top-left
corner, over the first points of a falling curve. Comparing runs overlays the same chart of each run, one
line per run and series. A run that declared nothing (an older recorded run, a fake lab) gets
one chart per informative metric, as before: a series whose first points dwarf the rest is drawn
on a robust y range that says so (:func:`~llmcore_tui.tui.widgets.labview.robust_ylim`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.color import Color
from rich.markup import escape
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot  # loads with the Labs screen (imported on first use), not at start-up

from labs.protocol import Chart, LiveRun
from llmcore_tui.core.labhistory import informative_keys
from llmcore_tui.i18n import _
from llmcore_tui.tui.widgets.labview import (CLIPPED_NOTE, decade_ticks, integer_ticks, robust_ylim, short_run_id,
                                              thin_points)

SLOTS = 2  # charts side by side when there is room
MIN_SLOT_WIDTH = 44  # narrower than this, one chart fills the width
# Colours as terminal palette numbers, which plotext and Rich both take, so a legend entry has its
# line's colour in every theme: bright blue, green, red, cyan, magenta, yellow, then the plain ones.
LINE_COLORS = (12, 10, 9, 14, 13, 11, 4, 2, 1, 6, 5, 3)
REFERENCE_COLOR = 8  # grey
REFERENCE_MARKER = "dot"
LINE_GLYPH, REFERENCE_GLYPH = "▀▄", "••"  # how each kind of line looks in the plot


def generic_charts(run: LiveRun) -> tuple[Chart, ...]:
    """One chart per metric, the informative ones first (what a run without ``CHARTS`` shows)."""
    return tuple(Chart(key, (key,)) for key in informative_keys(run.series))


def charts_of(run: LiveRun) -> tuple[Chart, ...]:
    return run.charts or generic_charts(run)


@dataclass(frozen=True)
class Drawn:
    """One line as plotted: the label in the legend (None: no legend), thinned points, its kind and
    its colour (a terminal palette number)."""

    label: str | None
    xs: list[float]
    ys: list[float]
    reference: bool
    color: int = REFERENCE_COLOR


def drawn_lines(chart: Chart, runs: dict[str, LiveRun]) -> list[Drawn]:
    """The lines of ``chart`` for one run, or for each of several compared runs (the first run's
    reference series only: a formula is drawn once). A lone measured line needs no legend."""
    lines = []
    for i, (run_id, run) in enumerate(runs.items()):
        for line in run.chart_lines(chart):
            if line.reference and i > 0:
                continue
            label = f"{line.label} (reference)" if line.reference else line.label
            if len(runs) > 1 and not line.reference:
                label = short_run_id(run_id) if len(chart.y) == 1 else f"{short_run_id(run_id)} {line.label}"
            xs, ys = thin_points(list(zip(line.xs, line.ys)))
            measured = sum(not drawn.reference for drawn in lines)
            color = REFERENCE_COLOR if line.reference else LINE_COLORS[measured % len(LINE_COLORS)]
            lines.append(Drawn(label, xs, ys, line.reference, color))
    if len(lines) == 1 and not lines[0].reference:  # the title names it; a formula keeps its label
        lines = [Drawn(None, lines[0].xs, lines[0].ys, False, lines[0].color)]
    return lines


def legend(lines: list[Drawn], width: int) -> Text:
    """The labelled lines in rows of at most ``width`` cells: each label in its line's colour after
    a sample of its marker, the measured lines first (a reference says "(reference)" in its label).
    Entries wrap whole, so a marker never ends a row with its label on the next."""
    rows: list[list[Text]] = [[]]
    for line in sorted(lines, key=lambda line: line.reference):
        if not line.label:
            continue
        entry = Text(f"{REFERENCE_GLYPH if line.reference else LINE_GLYPH} {line.label}",
                     style=Style(color=Color.from_ansi(line.color)))
        if rows[-1] and sum(e.cell_len + 2 for e in rows[-1]) + entry.cell_len > width:  # cells: CJK is two
            rows.append([])
        rows[-1].append(entry)
    return Text("\n").join(Text("  ").join(row) for row in rows)


class ChartPlot(PlotextPlot):
    """A plot that says it could not be drawn rather than stop the app (plotext raises on some
    degenerate inputs; a chart must never take the screen down with it)."""

    def render(self) -> RenderResult:
        try:
            return super().render()
        except (ArithmeticError, ValueError, TypeError, IndexError) as exc:
            return Text(_("this chart could not be drawn ({error})").format(error=f"{type(exc).__name__}: {exc}"),
                        style="dim")


class ChartSlot(Vertical):
    """One chart: its title (and the y axis' name when the plot has no room for it), the legend, the
    plot, and under it what to look for."""

    def compose(self) -> ComposeResult:
        yield Static(classes="labs-chart-title")
        yield Static(classes="labs-chart-legend")
        yield ChartPlot(classes="labs-plot")
        yield Static(classes="labs-look-for muted")

    def draw(self, chart: Chart | None, lines: list[Drawn], placeholder: str = "") -> tuple[float, float] | None:
        """Draw ``chart``'s lines (or only ``placeholder`` without a chart); returns the robust
        y range when one was applied."""
        plot = self.query_one(".labs-plot")
        plt = plot.plt  # type: ignore[attr-defined]
        plt.clear_data()
        plt.clear_figure()
        title = self.query_one(".labs-chart-title", Static)
        look_for = self.query_one(".labs-look-for", Static)
        look_for.update(_("look for: {text}").format(text=escape(chart.look_for)) if chart and chart.look_for else "")
        look_for.display = bool(chart and chart.look_for)
        legend_line = self.query_one(".labs-chart-legend", Static)
        legend_line.update(legend(lines, self.size.width))
        legend_line.display = any(line.label for line in lines)
        if chart is None:
            title.update(escape(placeholder))
            plot.refresh()
            return None
        limits = self._axes(plt, chart, lines)
        x_label = chart.x_label or chart.x or "step"
        x_label = f"{x_label} · {CLIPPED_NOTE}" if limits and chart.x_label else CLIPPED_NOTE if limits else x_label
        if not any(line.xs for line in lines):
            x_label = f"no points yet ({', '.join(chart.y)})"
        plt.xlabel(x_label)
        # plotext writes the y label left of the centred x label and drops the x label when they meet
        y_beside = chart.y_label and len(chart.y_label) + 2 < (self.size.width - len(x_label)) // 2
        if y_beside:
            plt.ylabel(chart.y_label)
        y_note = "" if y_beside or not chart.y_label else f" [dim]· y: {escape(chart.y_label)}[/dim]"
        title.update(f"[b]{escape(chart.title)}[/b]{y_note}")
        for line in sorted(lines, key=lambda line: not line.reference):  # measured lines on top of formulas
            if line.xs:  # no plotext label: its legend would cover the plot's top-left corner
                plt.plot(line.xs, line.ys, color=line.color, **({"marker": REFERENCE_MARKER} if line.reference else {}))
        plot.refresh()
        return limits

    @staticmethod
    def _axes(plt, chart: Chart, lines: list[Drawn]) -> tuple[float, float] | None:
        """Log scales with decade ticks, whole-number ticks for steps; on a linear y axis, the
        robust range when a few points would flatten the rest (a log axis shows every decade)."""
        xs = [x for line in lines for x in line.xs]
        ys = [y for line in lines for y in line.ys]
        if chart.log_x and xs:  # plotext fails to draw a log axis without a point on it
            plt.xscale("log")
        if chart.log_y and ys:
            plt.yscale("log")
        x_ticks = decade_ticks(xs) if chart.log_x else integer_ticks(xs)
        y_ticks = decade_ticks(ys) if chart.log_y else None
        if x_ticks:
            plt.xticks(*x_ticks)
        if y_ticks:
            plt.yticks(*y_ticks)
        if chart.log_y:
            return None
        limits = robust_ylim(ys)
        if limits is not None:
            plt.ylim(*limits)
        return limits


class LabCharts(Horizontal):
    """The charts of the run on screen (``show``); ``n`` moves on to the next chart."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs: dict[str, LiveRun] = {}  # the run shown first, then the runs compared with it
        self.first_chart = 0
        self.titles: list[str] = []  # the charts drawn now, left to right
        self.clipped: dict[str, tuple[float, float]] = {}  # chart title -> the robust y range drawn

    def compose(self) -> ComposeResult:
        for i in range(SLOTS):
            yield ChartSlot(id=f"labs-chart-{i}", classes="labs-chart")

    def show(self, run: LiveRun | None, run_id: str = "", compared: dict[str, LiveRun] | None = None,
             keep_chart: bool = False) -> None:
        """Chart ``run`` (None: nothing) and, overlaid, the ``compared`` runs (ids to runs)."""
        self.runs = {} if run is None else {run_id: run, **{k: v for k, v in (compared or {}).items() if k != run_id}}
        if not keep_chart:
            self.first_chart = 0
        self.redraw()

    @property
    def charts(self) -> tuple[Chart, ...]:
        run = next(iter(self.runs.values()), None)
        return () if run is None else charts_of(run)

    def next_chart(self) -> bool:
        if len(self.charts) < 2:
            return False
        self.first_chart += 1
        self.redraw()
        return True

    def on_resize(self) -> None:
        self.call_after_refresh(self.redraw)  # once the slots have their new sizes too

    def redraw(self) -> None:
        if not self.is_mounted:
            return
        charts = self.charts
        if charts:
            start = self.first_chart % len(charts)
            charts = charts[start:] + charts[:start]
        room = SLOTS if self.size.width >= SLOTS * MIN_SLOT_WIDTH else 1
        shown = charts[: min(room, len(charts)) or 1]
        self.titles, self.clipped = [c.title for c in shown], {}
        for i, slot in enumerate(self.query(ChartSlot)):
            slot.display = i < len(shown) or i == 0
            if i < len(shown):
                limits = slot.draw(shown[i], drawn_lines(shown[i], self.runs))
                if limits is not None:
                    self.clipped[shown[i].title] = limits
            else:
                slot.draw(None, [], _("metrics appear here") if i == 0 else "")
        legends = [slot.query_one(".labs-chart-legend") for slot in self.query(ChartSlot)][: len(shown)]
        if any(line.display for line in legends):  # side by side, the plots start on the same row
            for line in legends:
                line.display = True
