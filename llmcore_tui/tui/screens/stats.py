"""Stats: how well the learner remembers, as numbers.

A 12-week review heatmap (weeks across, weekdays down), true retention against the desired
retention, a 14-day forecast of reviews due, per-module mastery and the weakest cards. The
numbers come from :func:`llmcore_tui.core.stats.report`, computed on a thread worker with a
connection of its own, so the screen paints at once even on a long history; it refreshes
whenever the screen is shown again (or on f5).
"""

from __future__ import annotations

import math
from datetime import date, timedelta

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from llmcore_tui.core import stats
from llmcore_tui.core.stats import Report, Retention

HEATMAP_DAYS = 84  # 12 weeks
RETENTION_DAYS = 30
FIRST_REVIEW_DAYS = 14
FORECAST_DAYS = 14
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SHADES = ("[dim]·[/dim] ", "[green]░░[/green]", "[green]▒▒[/green]", "[green]▓▓[/green]", "[green]██[/green]")
BAR_WIDTH = 40


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def shade(count: int, peak: int) -> str:
    """A two-cell heatmap square: blank-ish for no reviews, then four shades up to ``peak``."""
    if count <= 0 or peak <= 0:
        return SHADES[0]
    return SHADES[max(1, min(4, math.ceil(4 * count / peak)))]


def heatmap_lines(counts: dict[date, int]) -> list[str]:
    """Weeks as columns (Monday first), weekdays as rows; days outside ``counts`` stay blank."""
    if not counts:
        return []
    first, last = min(counts), max(counts)
    grid_start = first - timedelta(days=first.weekday())
    weeks = (last - grid_start).days // 7 + 1
    peak = max(counts.values())
    top = [" "] * (2 * weeks + 2)  # month names over the week in which each month starts
    previous_month = None
    for w in range(weeks):
        monday = grid_start + timedelta(weeks=w)
        if monday.month != previous_month and (w == 0 or top[2 * w - 1] == " "):
            top[2 * w:2 * w + 3] = list(monday.strftime("%b"))
        previous_month = monday.month
    lines = ["    " + "".join(top).rstrip()]
    for weekday in range(7):
        cells = []
        for w in range(weeks):
            day = grid_start + timedelta(weeks=w, days=weekday)
            cells.append(shade(counts[day], peak) if day in counts else "  ")
        lines.append(f"{WEEKDAYS[weekday]} " + "".join(cells))
    lines.append("    less " + "".join(SHADES) + " more")
    return lines


def retention_line(name: str, retention: Retention, what: str) -> str:
    if retention.total == 0:
        return f"{name}: [dim]no {what} yet[/dim] · desired {pct(retention.desired)}"
    gap = retention.gap or 0.0
    colour = "green" if gap >= -0.02 else ("yellow" if gap >= -0.07 else "red")
    side = "above" if gap >= 0 else "below"
    return (f"{name}: [b][{colour}]{pct(retention.rate)}[/{colour}][/b] ({retention.passed} of {retention.total} {what}) "
            f"· desired {pct(retention.desired)} · {abs(100 * gap):.1f} points {side}")


class StatsScreen(Screen):
    BINDINGS = [
        Binding("f5,ctrl+r", "reload", "Refresh", id="stats.reload", tooltip="Recompute the statistics"),
        Binding("escape", "app.switch_mode('today')", "Back", id="stats.back", tooltip="Back to Today"),
    ]

    DEFAULT_CSS = """
    #stats-body { padding: 0 1; }
    #stats-mastery { height: auto; max-height: 18; margin: 0 1 1 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.report: Report | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="stats-body"):
            yield Static("Learning statistics", classes="title")
            yield Static("Computing…", id="stats-retention", classes="panel")
            yield Static(id="stats-heatmap", classes="panel")
            yield Static(id="stats-forecast", classes="panel")
            yield DataTable(id="stats-mastery", cursor_type="row", zebra_stripes=True)
            yield Static(id="stats-weakest", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#stats-heatmap").border_title = f"Reviews per day, last {HEATMAP_DAYS // 7} weeks"
        self.query_one("#stats-forecast").border_title = f"Due in the next {FORECAST_DAYS} days"
        self.query_one("#stats-weakest").border_title = "Weakest cards"
        self.query_one("#stats-retention").border_title = "Retention"
        table = self.query_one(DataTable)
        table.border_title = "Mastery by module"
        table.add_columns("Day", "Module", "Cards", "Recall now", "Reviews", "Lapses", "Quiz")
        self.query_one("#stats-body").focus()  # arrows and page keys scroll the page; tab reaches the table

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    # -- computing off the UI thread ------------------------------------------------------
    @work(thread=True, exclusive=True, group="stats", exit_on_error=False, description="statistics")
    def _load(self) -> None:
        course = self.app.course  # type: ignore[attr-defined]
        try:
            with course.store.reopen() as own:  # a connection of the worker's own
                result: Report | Exception = stats.report(
                    stats.Context.of(course, own), heatmap_days=HEATMAP_DAYS, retention_days=RETENTION_DAYS,
                    first_review_days=FIRST_REVIEW_DAYS, forecast_days=FORECAST_DAYS)
        except Exception as exc:  # shown on the screen rather than crashing the app
            result = exc
        try:
            self.app.call_from_thread(self._show, result)
        except RuntimeError:  # the app is shutting down
            pass

    def _show(self, result: Report | Exception) -> None:
        if not self.is_attached:
            return
        if isinstance(result, Exception):
            self.query_one("#stats-retention", Static).update(f"[red]Could not compute the statistics: {result}[/red]")
            return
        self.report = result
        self._show_retention(result)
        self._show_heatmap(result)
        self._show_forecast(result)
        self._show_mastery(result)
        self._show_weakest(result)

    # -- panels ---------------------------------------------------------------------------
    def _show_retention(self, r: Report) -> None:
        lines = [
            retention_line(f"True retention, last {r.retention_days} days", r.true_retention, "reviews of cards in review"),
            retention_line(f"First-review retention, last {len(r.first_review)} days", r.first_review_total,
                           "first reviews of the day"),
        ]
        days = [d for d in r.first_review if d.total]
        if days:
            lines.append("[dim]" + "  ".join(f"{d.day:%m-%d} {d.passed}/{d.total}" for d in days[-7:]) + "[/dim]")
        self.query_one("#stats-retention", Static).update("\n".join(lines))

    def _show_heatmap(self, r: Report) -> None:
        counts = r.heatmap
        total = sum(counts.values())
        active = sum(1 for n in counts.values() if n)
        summary = f"{total} reviews in {len(counts)} days · {active} active days · today {counts.get(r.today, 0)}"
        if total:
            best_day = max(counts, key=lambda d: (counts[d], d))
            summary += f" · busiest {best_day.isoformat()} ({counts[best_day]})"
        self.query_one("#stats-heatmap", Static).update("\n".join([*heatmap_lines(counts), summary]))

    def _show_forecast(self, r: Report) -> None:
        peak = max((n for _, n in r.forecast), default=0)
        lines = []
        for i, (day, n) in enumerate(r.forecast):
            bar = "█" * (round(BAR_WIDTH * n / peak) if peak else 0)
            if n and not bar:
                bar = "▏"
            label = "today" if i == 0 else f"{day:%a %m-%d}"
            lines.append(f"{label:>9} │[cyan]{bar}[/cyan] {n}")
        lines.append(f"[dim]{sum(n for _, n in r.forecast)} due in {len(r.forecast)} days; "
                     "today includes everything overdue[/dim]")
        self.query_one("#stats-forecast", Static).update("\n".join(lines))

    def _show_mastery(self, r: Report) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for m in r.mastery:
            recall = pct(m.mean_retrievability) if m.introduced else "—"
            quiz = f"{m.quiz_attempts} · {pct(m.quiz_accuracy)}" if m.quiz_attempts else "—"
            table.add_row(str(m.day), m.module, f"{m.introduced}/{m.cards_total}", recall, str(m.reviews),
                          str(m.lapses), quiz, key=m.module)
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def _show_weakest(self, r: Report) -> None:
        if not r.weakest:
            self.query_one("#stats-weakest", Static).update("[dim]No cards introduced yet.[/dim]")
            return
        lines = [f"{w.item_id} [dim]({w.module})[/dim] · recall {pct(w.retrievability)} · "
                 f"{w.lapses} lapse{'s' if w.lapses != 1 else ''} · difficulty {w.difficulty:.1f}" for w in r.weakest]
        self.query_one("#stats-weakest", Static).update("\n".join(lines))
