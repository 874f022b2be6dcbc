"""Stats: how well the learner remembers, as numbers.

A 12-week review heatmap (weeks across, weekdays down), true retention against the desired
retention, a 14-day forecast of reviews due, per-module mastery and the weakest cards. The
numbers come from :func:`llmcore_tui.core.stats.report`, computed on a thread worker with a
connection of its own, so the screen paints at once even on a long history; it refreshes
whenever the screen is shown again (or on f5).

``o`` fits FSRS-6's parameters to the learner's own reviews (:mod:`llmcore_tui.core.fsrs_fit`:
a child process, so torch never loads here), shows the figures as they come, and switches only
after the learner confirms in a dialog.
"""

from __future__ import annotations

import math
import threading
from datetime import date, timedelta

from rich.cells import cell_len
from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Static

from llmcore_tui.core import fsrs_fit, stats
from llmcore_tui.core.fsrs_fit import FitReport, Progress
from llmcore_tui.core.srs import store_parameters, stored_parameters
from llmcore_tui.core.stats import Report, Retention
from llmcore_tui.i18n import N_, Localized, _, ngettext

HEATMAP_DAYS = 84  # 12 weeks
RETENTION_DAYS = 30
FIRST_REVIEW_DAYS = 14
FORECAST_DAYS = 14
WEEKDAYS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))
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
            top[2 * w:2 * w + 3] = list(monday.strftime(_("%b")))  # one character a cell: no CJK here
        previous_month = monday.month
    labels = [_(name) for name in WEEKDAYS]
    width = max(cell_len(label) for label in labels)  # a CJK character is two cells wide
    lines = [" " * (width + 1) + "".join(top).rstrip()]
    for weekday in range(7):
        cells = []
        for w in range(weeks):
            day = grid_start + timedelta(weeks=w, days=weekday)
            cells.append(shade(counts[day], peak) if day in counts else "  ")
        label = labels[weekday]
        lines.append(label + " " * (width - cell_len(label) + 1) + "".join(cells))
    lines.append(" " * (width + 1) + _("less") + " " + "".join(SHADES) + " " + _("more"))
    return lines


def retention_line(name: str, retention: Retention, what: str) -> str:
    desired = _("desired {pct}").format(pct=pct(retention.desired))
    if retention.total == 0:
        return f"{name}: [dim]" + _("no {what} yet").format(what=what) + f"[/dim] · {desired}"
    gap = retention.gap or 0.0
    colour = "green" if gap >= -0.02 else ("yellow" if gap >= -0.07 else "red")
    points = f"{abs(100 * gap):.1f}"
    side = _("{n} points above").format(n=points) if gap >= 0 else _("{n} points below").format(n=points)
    return (f"{name}: [b][{colour}]{pct(retention.rate)}[/{colour}][/b] ("
            + _("{passed} of {total} {what}").format(passed=retention.passed, total=retention.total, what=what)
            + f") · {desired} · {side}")


class ConfirmSwitch(Localized, ModalScreen[bool]):
    """Switch to the fitted parameters? True only on an explicit yes."""

    BINDINGS = [
        Binding("y", "answer(True)", N_("Switch"), id="confirm.yes", tooltip=N_("Use the fitted parameters from now on")),
        Binding("n,escape", "answer(False)", N_("Keep"), id="confirm.no", tooltip=N_("Keep the parameters in use")),
    ]
    DEFAULT_CSS = """
    ConfirmSwitch { align: center middle; }
    #confirm-box { width: 72; height: auto; border: thick $accent; padding: 1 2; background: $surface; }
    #confirm-buttons { height: auto; margin-top: 1; }
    #confirm-buttons Button { margin-right: 2; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(escape(self.question), id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button(_("Switch (y)"), variant="primary", id="confirm-yes")
                yield Button(_("Keep (n)"), id="confirm-no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class StatsScreen(Localized, Screen):
    BINDINGS = [
        Binding("f5,ctrl+r", "reload", N_("Refresh"), id="stats.reload", tooltip=N_("Recompute the statistics")),
        Binding("o", "optimize", N_("Optimize FSRS"), id="stats.optimize",
                tooltip=N_("Fit FSRS-6's parameters to your own reviews; asks before switching")),
        Binding("escape", "app.switch_mode('today')", N_("Back"), id="stats.back", tooltip=N_("Back to Today")),
    ]

    DEFAULT_CSS = """
    #stats-body { padding: 0 1; }
    #stats-mastery { height: auto; max-height: 18; margin: 0 1 1 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.report: Report | None = None
        self.fit_report: FitReport | None = None
        self._fit_text = ""
        self._fitting = False
        self._stop_fit = threading.Event()

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="stats-body"):
            yield Static(_("Learning statistics"), classes="title")
            yield Static(_("Computing…"), id="stats-retention", classes="panel")
            yield Static(id="stats-heatmap", classes="panel")
            yield Static(id="stats-forecast", classes="panel")
            yield DataTable(id="stats-mastery", cursor_type="row", zebra_stripes=True)
            yield Static(id="stats-weakest", classes="panel")
            yield Static(id="stats-fsrs", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#stats-heatmap").border_title = _("Reviews per day, last {n} weeks").format(n=HEATMAP_DAYS // 7)
        self.query_one("#stats-forecast").border_title = _("Due in the next {n} days").format(n=FORECAST_DAYS)
        self.query_one("#stats-weakest").border_title = _("Weakest cards")
        self.query_one("#stats-retention").border_title = _("Retention")
        self.query_one("#stats-fsrs").border_title = _("FSRS parameters")
        self._show_parameters()
        table = self.query_one(DataTable)
        table.border_title = _("Mastery by module")
        table.add_columns(_("Day"), _("Module"), _("Cards"), _("Recall now"), _("Reviews"), _("Lapses"), _("Quiz"))
        self.query_one("#stats-body").focus()  # arrows and page keys scroll the page; tab reaches the table

    def on_screen_resume(self) -> None:
        self.action_reload()

    def on_unmount(self) -> None:
        self._stop_fit.set()  # the fit's child process is killed with it

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
            self.query_one("#stats-retention", Static).update(
                "[red]" + escape(_("Could not compute the statistics: {error}").format(error=result)) + "[/red]")
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
            retention_line(_("True retention, last {n} days").format(n=r.retention_days), r.true_retention,
                           _("reviews of cards in review")),
            retention_line(_("First-review retention, last {n} days").format(n=len(r.first_review)),
                           r.first_review_total, _("first reviews of the day")),
        ]
        days = [d for d in r.first_review if d.total]
        if days:
            lines.append("[dim]" + "  ".join(f"{d.day:%m-%d} {d.passed}/{d.total}" for d in days[-7:]) + "[/dim]")
        self.query_one("#stats-retention", Static).update("\n".join(lines))

    def _show_heatmap(self, r: Report) -> None:
        counts = r.heatmap
        total = sum(counts.values())
        active = sum(1 for n in counts.values() if n)
        summary = _("{total} reviews in {days} days · {active} active days · today {today}").format(
            total=total, days=len(counts), active=active, today=counts.get(r.today, 0))
        if total:
            best_day = max(counts, key=lambda d: (counts[d], d))
            summary += " · " + _("busiest {day} ({n})").format(day=best_day.isoformat(), n=counts[best_day])
        self.query_one("#stats-heatmap", Static).update("\n".join([*heatmap_lines(counts), summary]))

    def _show_forecast(self, r: Report) -> None:
        peak = max((n for _day, n in r.forecast), default=0)
        labels = [_("today") if i == 0 else f"{_(WEEKDAYS[day.weekday()])} {day:%m-%d}" for i, (day, _n) in
                  enumerate(r.forecast)]
        width = max([9, *(cell_len(label) for label in labels)])  # right-aligned in cells, CJK included
        lines = []
        for label, (day, n) in zip(labels, r.forecast):
            bar = "█" * (round(BAR_WIDTH * n / peak) if peak else 0)
            if n and not bar:
                bar = "▏"
            lines.append(" " * (width - cell_len(label)) + f"{label} │[cyan]{bar}[/cyan] {n}")
        lines.append("[dim]" + _("{n} due in {days} days; today includes everything overdue").format(
            n=sum(n for _day, n in r.forecast), days=len(r.forecast)) + "[/dim]")
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
            self.query_one("#stats-weakest", Static).update("[dim]" + _("No cards introduced yet.") + "[/dim]")
            return
        lines = [f"{w.item_id} [dim]({w.module})[/dim] · " + _("recall {pct}").format(pct=pct(w.retrievability)) + " · "
                 + ngettext("{n} lapse", "{n} lapses", w.lapses).format(n=w.lapses) + " · "
                 + _("difficulty {d}").format(d=f"{w.difficulty:.1f}") for w in r.weakest]
        self.query_one("#stats-weakest", Static).update("\n".join(lines))

    # -- fitting FSRS to this learner ---------------------------------------------------------
    def _show_parameters(self, extra: str = "") -> None:
        fit = stored_parameters(self.app.course.store)  # type: ignore[attr-defined]
        in_use = (_("In use: FSRS-6's default parameters (a population average).") if fit is None else
                  _("In use: parameters fitted on {date} to {n} reviews (`llmcore-tui optimize --reset` goes back to "
                    "the defaults).").format(date=date.fromtimestamp(fit.fitted_ts).isoformat(), n=fit.reviews))
        hint = "[dim]" + _("o: fit them to your own reviews (a minute or so; asks before switching)") + "[/dim]"
        self.query_one("#stats-fsrs", Static).update("\n".join([escape(in_use), *([extra] if extra else []), hint]))

    def action_optimize(self) -> None:
        if self._fitting:
            self.notify(_("The fit is still running."), timeout=3)
            return
        self._fitting = True
        self._stop_fit.clear()
        self._show_parameters(_("Reading your reviews…"))
        self._fit()

    @work(thread=True, exclusive=True, group="fsrs-fit", exit_on_error=False, description="FSRS fit")
    def _fit(self) -> None:
        course = self.app.course  # type: ignore[attr-defined]
        result: FitReport | Exception
        try:
            with course.store.reopen() as own:
                history = fsrs_fit.load_history(own)
            result = fsrs_fit.fit(history, lambda p: self._from_thread(self._fit_progress, p),
                                  cancelled=self._stop_fit.is_set)
        except Exception as exc:  # shown on the screen: too few reviews, a failed child
            result = exc
        self._from_thread(self._fit_done, result)

    def _from_thread(self, callback, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            self.app.call_from_thread(callback, *args)
        except RuntimeError:  # the app is shutting down
            pass

    def _fit_progress(self, progress: Progress) -> None:
        if self.is_attached:
            self._show_parameters(escape(_("Fitting [{step}/{steps}]: {text}…").format(
                step=progress.step, steps=progress.steps, text=progress.text)))

    def _fit_done(self, result: FitReport | Exception) -> None:
        self._fitting = False
        if not self.is_attached:
            return
        if isinstance(result, Exception):
            colour = "yellow" if isinstance(result, fsrs_fit.NotEnoughReviews) else "red"
            self._show_parameters(f"[{colour}]{escape(str(result))}[/{colour}]")
            return
        self.fit_report = result
        course = self.app.course  # type: ignore[attr-defined]
        lines = fsrs_fit.report_lines(result, float(course.settings.get("desired_retention")))
        verdict = fsrs_fit.verdict(result)
        self._fit_text = escape("\n".join([*lines, verdict]))
        self._show_parameters(self._fit_text)
        self.app.push_screen(ConfirmSwitch(f"{verdict}\n\n" + _("Switch to the parameters fitted to {n} reviews? Each "
                                                                 "card's next rating will use them.").format(
            n=result.reviews)), self._switch)

    def _switch(self, accepted: bool | None) -> None:
        if not accepted or self.fit_report is None:
            self.notify(_("Kept the parameters in use."), timeout=4)
            return
        course = self.app.course  # type: ignore[attr-defined]
        try:
            store_parameters(course.store, self.fit_report.stored(course.now()))
        except Exception as exc:  # a read-only database, say
            self.notify(_("Not switched: {error}").format(error=exc), severity="error", timeout=8)
            return
        course.srs.use_parameters()  # the scheduler the Review screen shares
        self.notify(_("Switched to your fitted FSRS parameters."), timeout=5)
        self._show_parameters(self._fit_text)
        self.action_reload()
