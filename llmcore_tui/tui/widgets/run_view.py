"""The Labs screen's right side: one run, live or recorded, or what to do when a lab has none.

From the top: the run's title line, a progress bar (live runs only), its charts, the panel
(headline, error or a comparison) and its log. The view remembers which run it shows
(``run``, ``run_id``, ``live``, ``compared``); the screen decides which run that is.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar

from labs.protocol import Charts, Event, LiveRun, Metric, Summary, Table
from llmcore_tui.core.labhistory import Comparison, RunRecord
from llmcore_tui.core.labruns import RunHandle
from llmcore_tui.i18n import N_, _
from llmcore_tui.tui.widgets.lab_charts import LabCharts
from llmcore_tui.tui.widgets.live_feed import LiveFeed
from llmcore_tui.tui.widgets.run_panel import RunLog, RunPanel, RunTitle

INTRO = N_("Pick a lab: [b]t[/b] or [b]enter[/b] runs its toy preset, [b]f[/b] the full one.")
REDRAWN_BY = (Metric, Table, Charts)  # events that change a chart


class RunView(Vertical):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run: LiveRun | None = None  # what the charts show
        self.run_id: str | None = None  # its id (None before a live run has one)
        self.live = False  # the run started on this screen, following it (or a recorded one)
        self.compared: list[str] = []  # run ids overlaid on the charts

    def compose(self) -> ComposeResult:
        yield RunTitle(_(INTRO), id="labs-run-title")
        yield ProgressBar(id="labs-progress", show_eta=True)
        yield LabCharts(id="labs-charts")
        yield RunPanel(id="labs-panel")
        yield RunLog(id="labs-log")

    def on_mount(self) -> None:
        self.progress.display = False  # shown for a live run only

    title = property(lambda self: self.query_one(RunTitle))
    progress = property(lambda self: self.query_one(ProgressBar))
    charts = property(lambda self: self.query_one(LabCharts))
    panel = property(lambda self: self.query_one(RunPanel))
    log_view = property(lambda self: self.query_one(RunLog))

    def clear(self, run: LiveRun | None = None, run_id: str | None = None) -> None:
        """Forget what was shown; chart ``run`` (if any) from scratch."""
        self.run, self.run_id, self.live, self.compared = run, run_id, False, []
        self.title.update("")
        self.progress.display = False
        self.log_view.clear()
        self.panel.hide()
        self.charts.show(run, run_id or "")

    def no_run(self, lab: str, runs_dir: str) -> None:
        self.clear()
        self.title.no_run(lab, runs_dir)

    def show_recorded(self, record: RunRecord, run: LiveRun) -> None:
        self.clear(run, record.id)
        self.title.show_run(record.lab, record.preset, record.id, record.status, record.error)
        self.log_view.show_record(record, run.tables.values())
        if record.headline:
            self.panel.headline(record.headline)
        elif record.error:
            self.panel.error(record.error)

    # -- the run started here -------------------------------------------------------------------
    def show_live(self, feed: LiveFeed, handle: RunHandle | None) -> None:
        """Follow ``feed``'s run from what it has said so far; ``handle`` once its child started."""
        self.clear(feed.run)
        self.live = True
        if handle is None:
            self.title.starting(feed.lab, feed.preset)
        else:
            self.run_id = handle.run_id
            self.title.show_run(handle.lab, handle.preset, handle.run_id, handle.status, handle.error)
        if feed.out_dir:
            self.log_view.files(feed.out_dir)
        self.log_view.write_events(list(feed.transcript))
        self.progress.display = True
        self._progress()
        if feed.run.headline is not None:
            self.panel.headline(feed.run.headline)

    def follow(self, events: Iterable[Event]) -> None:
        """What the followed run said since the last tick."""
        events = list(events)
        self.log_view.write_events(events)
        self._progress()
        if self.run is not None and self.run.headline is not None and any(isinstance(e, Summary) for e in events):
            self.panel.headline(self.run.headline)
        if any(isinstance(e, REDRAWN_BY) for e in events):
            self.charts.redraw()

    def started(self, handle: RunHandle) -> None:
        self.log_view.files(handle.out_dir)
        self.run_id = handle.run_id
        self.title.show_run(handle.lab, handle.preset, handle.run_id, "running")

    def ended(self, handle: RunHandle) -> None:
        self.run_id = handle.run_id
        self.title.show_run(handle.lab, handle.preset, handle.run_id, handle.status, handle.error)
        self._progress()
        if handle.status == "succeeded":
            self.panel.headline(handle.headline or {})

    def _progress(self) -> None:
        if self.run is not None:
            self.progress.update(total=self.run.total_steps, progress=self.run.done)

    # -- either kind ------------------------------------------------------------------------------
    def error(self, message: str) -> None:
        self.panel.error(message)
        self.log_view.error(message)

    def compare(self, result: Comparison, others: dict[str, LiveRun]) -> None:
        """Runs side by side in the panel, their curves overlaid on the charts."""
        self.panel.comparison(result)
        self.compared = [run.id for run in result.runs]
        self.charts.show(self.run, self.run_id or "", others, keep_chart=True)
