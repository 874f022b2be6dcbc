"""Labs: run the course's algorithms as child processes and watch their metrics live.

The screen never imports a lab (or torch): :class:`~llmcore_tui.core.labruns.LabRunner` starts
``python -m labs NAME --json`` in its own process group and records the run. A Textual thread
worker starts the lab and waits for it; the lab's events land in a queue that a 4 Hz timer
drains into the progress bar, the charts and the log, so a chatty lab cannot flood the UI and
the other screens stay responsive. Leaving the app cancels a running lab (its whole group).

Selecting a lab (or a row of its runs) shows its latest recorded run at once: headline, tables
and curves, whether it ran here, from ``llmcore-tui lab run`` or in an earlier session, with the
folder its files are in. Tables open at their title and header, column names whole
(:func:`lab_table`); a chart whose first points dwarf the rest is drawn on a robust range and
says so (:func:`robust_ylim`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, RichLog, Static
from textual.worker import get_current_worker

from labs.registry import BY_NAME, LABS, LabInfo
from llmcore_tui.core import labruns
from llmcore_tui.core.labruns import LabRunner, RunHandle, fmt_duration, fmt_value
from llmcore_tui.tui.widgets.labview import CLIPPED_NOTE, lab_table, robust_ylim, thin_points

STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "rejected": "red"}
CHARTS = 2  # charts side by side
COMPARE_RUNS = 5


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _when(ts: float | None) -> str:
    return "—" if ts is None else time.strftime("%m-%d %H:%M", time.localtime(ts))


def _short(run_id: str) -> str:
    """``mdp-20260302-101500-ab12`` -> ``101500-ab12`` (a chart label)."""
    return "-".join(run_id.rsplit("-", 2)[-2:])


@dataclass
class LiveRun:
    """What the running lab has reported so far (kept while another run is on screen)."""

    lab: str
    preset: str
    series: dict[str, list[tuple[int, float | None]]] = field(default_factory=dict)
    log: deque[Any] = field(default_factory=lambda: deque(maxlen=1000))
    total: int | None = None
    done: int = 0
    headline: dict[str, Any] | None = None


class LabsScreen(Screen):
    CSS_PATH = "../labs.tcss"

    BINDINGS = [
        Binding("t", "launch('toy')", "Toy", id="labs.toy",
                tooltip="Run the selected lab's toy preset (seconds on a CPU); enter does the same"),
        Binding("f", "launch('full')", "Full", id="labs.full", tooltip="Run the full preset (minutes or more)"),
        Binding("c", "cancel", "Cancel", id="labs.cancel", tooltip="Stop the running lab and everything it started"),
        Binding("h", "show_run", "Show", id="labs.show",
                tooltip="Headline, curves and log of the selected run (or the lab's latest)"),
        Binding("x", "compare", "Compare", id="labs.compare",
                tooltip="The run side by side with earlier runs of the same lab"),
        Binding("n", "next_chart", "Chart", id="labs.chart", tooltip="Chart the next metrics"),
        Binding("escape", "app.switch_mode('today')", "Back", id="labs.back", tooltip="Back to Today"),
    ]

    class RunStarted(Message):
        def __init__(self, handle: RunHandle) -> None:
            super().__init__()
            self.handle = handle

    class RunEnded(Message):
        def __init__(self, handle: RunHandle) -> None:
            super().__init__()
            self.handle = handle

    class LaunchFailed(Message):
        def __init__(self, lab: str, error: str) -> None:
            super().__init__()
            self.lab = lab
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self._runner: LabRunner | None = None
        self.active: RunHandle | None = None  # the run in progress
        self.last_handle: RunHandle | None = None  # the latest run started here (for tests and the title)
        self.launching: str | None = None  # a lab whose child process is being started
        self._inbox: deque[dict[str, Any]] = deque()  # filled by the reader thread, drained by a timer
        self.live: LiveRun | None = None  # the latest run started here
        self.showing_live = False  # is the live run on screen (or a recorded one)?
        self.series: dict[str, list[tuple[int, float | None]]] = {}  # what the charts show
        self.chart_keys: list[str] = []
        self.chart_offset = 0
        self.shown_run: str | None = None  # the run in the panel (a live or a recorded one)
        self.compared: list[str] = []  # run ids overlaid on the charts by `x`
        self.shown_lab: str | None = None  # whose run (or empty view) is on screen
        self.clipped: dict[str, tuple[float, float]] = {}  # chart key -> the robust y range drawn
        self._dirty = False

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        from textual_plotext import PlotextPlot  # plotext loads with this screen, not at start-up

        yield Header()
        with Horizontal(id="labs-main"):
            with Vertical(id="labs-side"):
                yield Static("Labs", classes="title")
                yield DataTable(id="labs-table", cursor_type="row", zebra_stripes=True)
                yield Static(id="labs-about", classes="muted")
                yield Static("Runs", id="labs-runs-title", classes="title")
                yield DataTable(id="labs-runs", cursor_type="row", zebra_stripes=True)
            with Vertical(id="labs-view"):
                yield Static("Pick a lab: [b]t[/b] or [b]enter[/b] runs its toy preset, [b]f[/b] the full one.",
                             id="labs-run-title")
                yield ProgressBar(id="labs-progress", show_eta=True)
                with Horizontal(id="labs-charts"):
                    for i in range(CHARTS):
                        yield PlotextPlot(id=f"labs-chart-{i}", classes="labs-chart")
                yield Static(id="labs-panel")
                yield RichLog(id="labs-log", max_lines=1000, wrap=True, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#labs-table", DataTable).add_columns("Day", "Lab", "Last run")
        self.query_one("#labs-runs", DataTable).add_columns("Started", "Status", "Preset", "Took")
        self.query_one("#labs-panel", Static).display = False
        self.query_one("#labs-progress", ProgressBar).display = False  # shown for a live run only
        self.refresh_labs()
        self.set_interval(0.25, self._drain)
        self.query_one("#labs-table", DataTable).focus()

    def on_screen_resume(self) -> None:
        self.refresh_labs()

    def on_unmount(self) -> None:
        """The app is closing (or the screen goes): no lab may outlive it."""
        self.workers.cancel_group(self, "labs")  # a run still starting is cancelled by its worker
        handle = self.active
        if handle is not None and not handle.done:
            handle.cancel(1.0)
            handle.wait(3.0)

    # -- helpers ----------------------------------------------------------------------------
    @property
    def course(self):
        return self.app.course  # type: ignore[attr-defined]

    @property
    def runner(self) -> LabRunner:
        """The app's ``lab_runner`` when it has one (tests inject a fake lab), else a default runner."""
        if self._runner is None:
            self._runner = getattr(self.app, "lab_runner", None) or LabRunner(self.course.store)
        return self._runner

    def current_day(self) -> int:
        try:
            return self.course.today().day.number
        except Exception:  # an empty course still lists its labs
            return self.course.calendar_day()

    def ordered_labs(self) -> list[tuple[LabInfo, bool]]:
        """The labs of the current roadmap day first, then every other lab by day."""
        day = self.current_day()
        today = [lab for lab in LABS if lab.day == day]
        return [(lab, True) for lab in today] + [(lab, False) for lab in LABS if lab.day != day]

    def selected_lab(self) -> str | None:
        table = self.query_one("#labs-table", DataTable)
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def selected_run(self) -> str | None:
        table = self.query_one("#labs-runs", DataTable)
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def refresh_labs(self) -> None:
        table = self.query_one("#labs-table", DataTable)
        selected = self.selected_lab()
        latest = labruns.latest_runs(self.course.store)
        table.clear()
        for lab, today in self.ordered_labs():
            run = latest.get(lab.name)
            last = Text("never run", style="dim") if run is None else _status(run.status)
            table.add_row(("▶ " if today else "  ") + str(lab.day), lab.name, last, key=lab.name)
        if selected is not None:
            table.move_cursor(row=table.get_row_index(selected))
        self.refresh_runs()

    def refresh_runs(self) -> None:
        lab = self.selected_lab()
        table = self.query_one("#labs-runs", DataTable)
        table.clear()
        if lab is None:
            return
        info = BY_NAME[lab]
        self.query_one("#labs-about", Static).update(f"[b]{info.title}[/b] (day {info.day})\n{info.summary}")
        self.query_one("#labs-runs-title", Static).update(f"Runs of {lab}")
        for run in labruns.list_runs(self.course.store, lab, limit=50):
            table.add_row(_when(run.started_ts), _status(run.status), run.preset or "—",
                          fmt_duration(run.duration_s), key=run.id)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "labs-table":
            self.refresh_runs()
            self.follow_selection()
        elif event.data_table.id == "labs-runs" and event.data_table.has_focus:
            run_id = event.row_key.value
            if run_id is not None and run_id != self.shown_run:
                self.show_run(run_id)

    def follow_selection(self) -> None:
        """Selecting a lab shows its latest run at once (headline, tables, curves), whether it
        ran here, from the CLI or in an earlier session; the lab running here shows live."""
        lab = self.selected_lab()
        if lab is None or lab == self.shown_lab:
            return
        live = self.live
        if live is not None and live.lab == lab and (self.active is not None or self.launching is not None):
            self._show_live()
            return
        runs = labruns.list_runs(self.course.store, lab, limit=1)
        if runs:
            self.show_run(runs[0].id)
        else:
            self._reset_view(f"[b]{lab}[/b]: no run yet. [b]t[/b] or [b]enter[/b] runs its toy preset, "
                             f"[b]f[/b] the full one; files go to {escape(str(self.runner.runs_dir))}/")
            self.query_one("#labs-progress", ProgressBar).display = False
            self.shown_lab = lab

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "labs-table":
            self.action_launch("toy")
        else:
            self.action_show_run()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        busy = self.active is not None or self.launching is not None
        if action == "cancel":
            return True if self.active is not None else None
        if action == "launch":
            return None if busy else True
        return True

    # -- running ------------------------------------------------------------------------------
    def action_launch(self, preset: str = "toy") -> None:
        lab = self.selected_lab()
        if lab is None:
            return
        if self.active is not None or self.launching is not None:
            running = self.active.lab if self.active else self.launching
            self.notify(f"{running} is running; c cancels it.", severity="warning", timeout=3)
            return
        self.launching = lab
        self._inbox.clear()
        self.live = LiveRun(lab, preset)
        self.shown_lab = lab
        self._show_live()
        self.query_one("#labs-run-title", Static).update(f"[b]{lab}[/b] ({preset}) · starting …")
        self.refresh_bindings()
        self._run_lab(lab, preset == "toy")

    @work(thread=True, exclusive=False, exit_on_error=False, group="labs", description="lab run")
    def _run_lab(self, lab: str, toy: bool) -> None:
        worker = get_current_worker()
        try:
            handle = self.runner.start(lab, toy=toy, on_event=self._inbox.append)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the app keeps running
            self.post_message(self.LaunchFailed(lab, str(exc)))
            return
        self.post_message(self.RunStarted(handle))
        while not handle.wait(0.2):
            if worker.is_cancelled:  # the app is closing
                handle.cancel(1.0)
        self.post_message(self.RunEnded(handle))

    def on_labs_screen_run_started(self, message: RunStarted) -> None:
        handle = message.handle
        self.active = self.last_handle = handle
        self.launching = None
        if self.live is not None and self.live.lab == handle.lab:
            self.live.log.appendleft(Text(f"files: {handle.out_dir}", style="dim"))
            if self.showing_live:
                self.query_one("#labs-log", RichLog).write(Text(f"files: {handle.out_dir}", style="dim"))
        if self.showing_live:
            self.shown_run = handle.run_id
            self._set_title(handle.lab, handle.preset, handle.run_id, "running")
        self.refresh_labs()
        self.refresh_bindings()

    def on_labs_screen_launch_failed(self, message: LaunchFailed) -> None:
        self.launching = None
        self.refresh_bindings()
        self._show_error(f"{message.lab} could not start: {message.error}")

    def on_labs_screen_run_ended(self, message: RunEnded) -> None:
        handle = message.handle
        self._drain()
        if self.active is handle:
            self.active = None
        self.refresh_bindings()
        self.refresh_labs()
        shown = self.showing_live
        live = self.live
        if live is not None and live.total is None:
            live.total = 1  # it never said how long it would be: stop the indeterminate bar
        if shown and live is not None:
            self.shown_run = handle.run_id
            self._set_title(handle.lab, handle.preset, handle.run_id, handle.status, handle.error)
            if handle.status == "succeeded":
                live.done = live.total or 0
            self.query_one("#labs-progress", ProgressBar).update(total=live.total, progress=live.done)
        if handle.status == "succeeded":
            self.notify(f"{handle.lab} succeeded.", timeout=4)
            if shown:
                self._show_headline(handle.headline or {})
        elif handle.status == "cancelled":
            self.notify(f"{handle.lab} cancelled.", severity="warning", timeout=4)
        else:
            self._show_error(f"{handle.lab} {handle.status}: {handle.error}", in_panel=shown)

    def action_cancel(self) -> None:
        if self.active is None:
            self.notify("No lab is running.", timeout=2)
            return
        if self.active.cancel():
            self.notify(f"Cancelling {self.active.lab} …", timeout=2)

    # -- the live view ---------------------------------------------------------------------------
    def _drain(self) -> None:
        """Apply what the lab reported since the last tick (4 times a second)."""
        live = self.live
        if not self._inbox or live is None:
            return
        written: list[Any] = []
        metrics = summary = False
        while self._inbox:
            event = self._inbox.popleft()
            kind = event.get("event")
            if kind == "metric":
                step = event.get("step", 0)
                for key, value in (event.get("values") or {}).items():
                    if value is None or isinstance(value, (int, float)):
                        live.series.setdefault(key, []).append((step, None if value is None else float(value)))
                metrics = True
            elif kind == "start":
                live.total, live.done = event.get("total_steps"), 0
            elif kind == "progress":
                live.total, live.done = event.get("total"), event.get("done", 0)
            elif kind == "summary":
                live.headline = event.get("headline") or {}
                summary = True
            else:
                renderable = self._event_renderable(event)
                if renderable is not None:
                    written.append(renderable)
        live.log.extend(written)
        if not self.showing_live:
            return
        self._write_log(written)
        self.query_one("#labs-progress", ProgressBar).update(total=live.total, progress=live.done)
        if summary:
            self._show_headline(live.headline or {})
        if metrics:
            self.draw_charts()

    def _event_renderable(self, event: dict[str, Any]) -> Any:
        kind = event.get("event")
        if kind == "log":
            return str(event.get("text", ""))
        if kind == "stderr":
            return Text(str(event.get("text", "")), style="dim")
        if kind == "malformed":
            return Text(f"not an event: {event.get('text', '')}", style="yellow")
        if kind == "table":
            return self._rich_table(str(event.get("name")), event.get("columns") or [], event.get("rows") or [])
        if kind == "error":
            return Text(f"error: {event.get('message')}", style="bold red")
        return None

    def _write_log(self, renderables: list[Any]) -> None:
        """Append to the log; a table is shown from its title and header, not scrolled past
        to its last rows (the log follows the end again with the next batch)."""
        log = self.query_one("#labs-log", RichLog)
        table_start: int | None = None
        for renderable in renderables:
            if isinstance(renderable, Table) and table_start is None:
                table_start = len(log.lines)
            log.write(renderable, scroll_end=False if table_start is not None else None)
        if table_start is not None:  # after the scrolls to the end that the lines before it queued
            log.call_after_refresh(log.scroll_to, y=table_start, animate=False)

    def _show_live(self) -> None:
        live = self.live
        if live is None:
            return
        self._reset_view("")
        self.showing_live = True
        self.shown_lab = live.lab
        self.series = live.series
        handle = self.active or self.last_handle
        if handle is not None and handle.lab == live.lab and self.launching is None:
            self.shown_run = handle.run_id
            self._set_title(handle.lab, handle.preset, handle.run_id, handle.status, handle.error)
        self._write_log(list(live.log))
        bar = self.query_one("#labs-progress", ProgressBar)
        bar.display = True
        bar.update(total=live.total, progress=live.done)
        if live.headline is not None:
            self._show_headline(live.headline)
        self.draw_charts()

    def _reset_view(self, title: str) -> None:
        self.showing_live = False
        self.shown_run = None
        self.series = {}
        self.chart_keys = []
        self.chart_offset = 0
        self.compared = []
        self.query_one("#labs-run-title", Static).update(title)
        self.query_one("#labs-log", RichLog).clear()
        self.query_one("#labs-panel", Static).display = False
        self.draw_charts()

    def _set_title(self, lab: str, preset: str | None, run_id: str, status: str, error: str | None = None) -> None:
        style = STATUS_STYLE.get(status, "default")
        text = f"[b]{lab}[/b] ({preset}) · {run_id} · [{style}]{status}[/{style}]"
        if error and status != "succeeded":
            text += f"\n[red]{escape(error)}[/red]"
        self.query_one("#labs-run-title", Static).update(text)

    def _show_headline(self, headline: dict[str, Any]) -> None:
        table = Table(title="headline", show_header=False, box=None, padding=(0, 1))
        for key, value in headline.items():
            table.add_row(key, fmt_value(value))
        self._panel(table)

    def _show_error(self, message: str, in_panel: bool = True) -> None:
        self.notify(message, severity="error", timeout=10)
        if in_panel:
            self._panel(Text(message, style="bold red"))
            self.query_one("#labs-log", RichLog).write(Text(message, style="bold red"))

    def _panel(self, renderable: Any) -> None:
        panel = self.query_one("#labs-panel", Static)
        panel.update(renderable)
        panel.display = True

    def _rich_table(self, name: str, columns: list[Any], rows: list[list[Any]]) -> Table:
        log = self.query_one("#labs-log", RichLog)
        width = log.scrollable_content_region.width or max(40, self.size.width - 52)
        return lab_table(name, columns, rows, width)

    def draw_charts(self) -> None:
        keys = labruns.informative_keys(self.series)
        if keys:
            offset = self.chart_offset % len(keys)
            keys = keys[offset:] + keys[:offset]
        self.chart_keys = keys[:CHARTS]
        self.clipped = {}
        overlays = self._compare_series()
        for i in range(CHARTS):
            plot = self.query_one(f"#labs-chart-{i}")
            plt = plot.plt  # type: ignore[attr-defined]
            plt.clear_data()
            plt.clear_figure()
            if i < len(self.chart_keys):
                key = self.chart_keys[i]
                drawn = [thin_points(series.get(key, [])) for series in overlays.values()] if overlays \
                    else [thin_points(self.series[key])]
                limits = robust_ylim([v for _, ys in drawn for v in ys])
                if limits is None:
                    plt.title(key)
                else:  # a few extreme points (first episodes) would flatten the lesson: say so
                    self.clipped[key] = limits
                    plt.title(key)
                    plt.xlabel(CLIPPED_NOTE)  # under the chart: a title this long would not be drawn
                    plt.ylim(*limits)
                for label, (xs, ys) in zip(overlays or [None], drawn):
                    if xs:
                        if label is None:
                            plt.plot(xs, ys)
                        else:
                            plt.plot(xs, ys, label=_short(label))
            else:
                plt.title("metrics appear here" if i == 0 and not self.series else "")
            plot.refresh()

    def _compare_series(self) -> dict[str, dict[str, list[tuple[int, float | None]]]]:
        return {run_id: labruns.run_metrics(self.course.store, run_id) for run_id in self.compared}

    def action_next_chart(self) -> None:
        if self.series:
            self.chart_offset += 1
            self.draw_charts()

    # -- recorded runs -----------------------------------------------------------------------------
    def _run_to_show(self) -> str | None:
        if self.focused is self.query_one("#labs-runs", DataTable):
            return self.selected_run()
        lab = self.selected_lab()
        runs = labruns.list_runs(self.course.store, lab, limit=1) if lab else []
        return runs[0].id if runs else None

    def action_show_run(self) -> None:
        run_id = self._run_to_show()
        if run_id is None:
            self.notify("No run yet: t runs the toy preset.", timeout=3)
            return
        self.show_run(run_id)

    def show_run(self, run_id: str) -> None:
        if self.active is not None and self.active.run_id == run_id:
            self._show_live()
            return
        run = labruns.get_run(self.course.store, run_id)
        if run is None:
            return
        self._reset_view("")
        self.shown_run = run.id
        self.shown_lab = run.lab
        self._set_title(run.lab, run.preset, run.id, run.status, run.error)
        self.series = labruns.run_metrics(self.course.store, run.id)
        self.query_one("#labs-progress", ProgressBar).display = False
        log = self.query_one("#labs-log", RichLog)
        info = ", ".join(f"{k}={fmt_value(v)}" for k, v in run.config.items())
        # a recorded run opens at the top: its tables with their headers first, then the log
        log.write(Text(f"started {_when(run.started_ts)}, took {fmt_duration(run.duration_s)}; {info}", style="dim"),
                  scroll_end=False)
        log.write(Text(f"files: {run.out_dir or '—'}", style="dim"), scroll_end=False)
        for table in labruns.run_tables(self.course.store, run.id):
            log.write(self._rich_table(table.name, table.columns, table.rows), scroll_end=False)
        if run.log_tail:
            log.write(run.log_tail, scroll_end=False)
        log.scroll_home(animate=False)
        log.call_after_refresh(log.scroll_home, animate=False)  # past any scroll a live write queued
        if run.headline:
            self._show_headline(run.headline)
        elif run.error:
            self._panel(Text(run.error, style="bold red"))
        self.draw_charts()

    def action_compare(self) -> None:
        run_id = self._run_to_show() if self.focused is self.query_one("#labs-runs", DataTable) else None
        run_id = run_id or self.shown_run or self._run_to_show()
        run = labruns.get_run(self.course.store, run_id) if run_id else None
        if run is None or not run.finished:
            self.notify("Pick a finished run to compare (h shows one).", timeout=3)
            return
        earlier = [r for r in labruns.list_runs(self.course.store, run.lab)
                   if r.finished and r.started_ts <= run.started_ts and r.id != run.id]
        if not earlier:
            self.notify(f"No earlier run of {run.lab} to compare with.", timeout=3)
            return
        ids = [run.id] + [r.id for r in earlier[:COMPARE_RUNS - 1]]
        if self.shown_run != run.id:
            self.show_run(run.id)
        result = labruns.compare(self.course.store, ids)
        table = Table(title=f"{run.lab}: this run and {len(ids) - 1} earlier", title_justify="left", padding=(0, 1))
        table.add_column("")
        for r in result.runs:
            table.add_column(Text.assemble(_when(r.started_ts), "\n", _status(r.status)))
        for title, section in (("", result.headline), ("settings", result.config)):
            if title and section:
                table.add_row(Text(title, style="bold"))
            for key, values in section.items():
                table.add_row(key, *(fmt_value(v) for v in values))
        self._panel(table)
        self.compared = ids
        self.draw_charts()
