"""Labs: run the course's algorithms as child processes and watch their metrics live.

The screen never imports a lab (or torch): :class:`~llmcore_tui.core.labruns.LabRunner` starts
``python -m labs NAME --json`` in its own process group and records the run. A Textual thread
worker starts the lab and waits for it; the lab's events land in a :class:`LiveFeed` that a
4 Hz timer folds (through the lab protocol's one decoder) into the progress bar, the charts and
the log, so a chatty lab cannot flood the UI and the other screens stay responsive. Leaving
the app cancels a running lab (its whole group).

Selecting a lab (or a row of its runs) shows its latest recorded run at once: headline, tables
and the charts its lab declares, whether it ran here, from ``llmcore-tui lab run`` or in an
earlier session, with the folder its files are in. The screen composes the widgets and routes
keys and messages; the widgets draw (``tui/widgets/``: ``lab_lists``, ``run_view`` with
``lab_charts`` and ``run_panel``; ``live_feed`` folds the running lab's events).
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import get_current_worker

from labs.registry import BY_NAME, LABS, LabInfo
from llmcore_tui.core import labhistory
from llmcore_tui.core.labruns import LabRunner, RunHandle
from llmcore_tui.i18n import N_, Localized, _
from llmcore_tui.tui.widgets.lab_lists import RUNS_LISTED, LabList, RunList
from llmcore_tui.tui.widgets.live_feed import LiveFeed
from llmcore_tui.tui.widgets.run_view import RunView

COMPARE_RUNS = 5


class LabsScreen(Localized, Screen):
    CSS_PATH = "../labs.tcss"

    BINDINGS = [
        Binding("t", "launch('toy')", N_("Toy"), id="labs.toy",
                tooltip=N_("Run the selected lab's toy preset (seconds on a CPU); enter does the same")),
        Binding("f", "launch('full')", N_("Full"), id="labs.full", tooltip=N_("Run the full preset (minutes or more)")),
        Binding("c", "cancel", N_("Cancel"), id="labs.cancel",
                tooltip=N_("Stop the running lab and everything it started")),
        Binding("h", "show_run", N_("Show"), id="labs.show", show=False,  # selecting a lab or a run shows it already
                tooltip=N_("Headline, charts and log of the selected run (or the lab's latest)")),
        Binding("x", "compare", N_("Compare"), id="labs.compare",
                tooltip=N_("The run side by side with earlier runs of the same lab, their curves overlaid")),
        Binding("n", "next_chart", N_("Chart"), id="labs.chart", tooltip=N_("The next chart of the run")),
        Binding("escape", "app.switch_mode('today')", N_("Back"), id="labs.back", tooltip=N_("Back to Today")),
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
        self.feed: LiveFeed | None = None  # the latest run started here, kept while another is on screen
        self.shown_lab: str | None = None  # whose run (or empty view) is on screen

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="labs-main"):
            with Vertical(id="labs-side"):
                yield Static(_("Labs"), classes="title")
                yield LabList(id="labs-table")
                yield Static(id="labs-about", classes="muted")
                yield Static(_("Runs"), id="labs-runs-title", classes="title")
                yield RunList(id="labs-runs")
            yield RunView(id="labs-view")
        yield Footer(compact=True)  # every key and the palette's fit in 80 columns

    def on_mount(self) -> None:
        self.refresh_labs()
        self.set_interval(0.25, self._drain)
        self.lab_list.focus()

    def on_screen_resume(self) -> None:
        self.refresh_labs()

    def on_unmount(self) -> None:
        """The app is closing (or the screen goes): no lab may outlive it."""
        self.workers.cancel_group(self, "labs")  # a run still starting is cancelled by its worker
        handle = self.active
        if handle is not None and not handle.done:
            handle.cancel(1.0)
            handle.wait(3.0)

    # -- parts ----------------------------------------------------------------------------
    @property
    def course(self):
        return self.app.course  # type: ignore[attr-defined]

    @property
    def runner(self) -> LabRunner:
        """The app's ``lab_runner`` when it has one (tests inject a fake lab), else a default runner."""
        if self._runner is None:
            self._runner = getattr(self.app, "lab_runner", None) or LabRunner(self.course.store)
        return self._runner

    lab_list = property(lambda self: self.query_one("#labs-table", LabList))
    run_list = property(lambda self: self.query_one("#labs-runs", RunList))
    view = property(lambda self: self.query_one("#labs-view", RunView))

    # what is on screen, as the tests read it
    live = property(lambda self: None if self.feed is None else self.feed.run)  # the latest run started here
    showing_live = property(lambda self: self.view.live)
    shown_run = property(lambda self: self.view.run_id)
    compared = property(lambda self: self.view.compared)
    series = property(lambda self: {} if self.view.run is None else self.view.run.series)
    chart_keys = property(lambda self: self.view.charts.titles)
    clipped = property(lambda self: self.view.charts.clipped)

    def selected_lab(self) -> str | None:
        return self.lab_list.selected

    def selected_run(self) -> str | None:
        return self.run_list.selected

    def ordered_labs(self) -> list[tuple[LabInfo, bool]]:
        """The labs of the current roadmap day first, then every other lab by day."""
        try:
            day = self.course.today().day.number
        except Exception:  # an empty course still lists its labs
            day = self.course.calendar_day()
        return [(lab, True) for lab in LABS if lab.day == day] + [(lab, False) for lab in LABS if lab.day != day]

    def refresh_labs(self) -> None:
        self.lab_list.show(self.ordered_labs(), labhistory.latest_runs(self.course.store))
        self.refresh_runs()

    def refresh_runs(self) -> None:
        lab = self.selected_lab()
        if lab is None:
            self.run_list.show([])
            return
        info = BY_NAME[lab]
        self.query_one("#labs-about", Static).update(f"[b]{info.title}[/b] (" + _("day {n}").format(n=info.day)
                                                     + f")\n{info.summary}")
        self.query_one("#labs-runs-title", Static).update(_("Runs of {lab}").format(lab=lab))
        self.run_list.show(labhistory.list_runs(self.course.store, lab, limit=RUNS_LISTED))

    def on_data_table_row_highlighted(self, event: LabList.RowHighlighted) -> None:
        if event.data_table is self.lab_list:
            self.refresh_runs()
            self.follow_selection()
        elif event.data_table is self.run_list and event.data_table.has_focus:
            run_id = event.row_key.value
            if run_id is not None and run_id != self.shown_run:
                self.show_run(run_id)

    def on_data_table_row_selected(self, event: LabList.RowSelected) -> None:
        if event.data_table is self.lab_list:
            self.action_launch("toy")
        else:
            self.action_show_run()

    def follow_selection(self) -> None:
        """Selecting a lab shows its latest run at once (headline, tables, charts), whether it
        ran here, from the CLI or in an earlier session; the lab running here shows live."""
        lab = self.selected_lab()
        if lab is None or lab == self.shown_lab:
            return
        if self.feed is not None and self.feed.lab == lab and (self.active is not None or self.launching is not None):
            self._show_live()
            return
        runs = labhistory.list_runs(self.course.store, lab, limit=1)
        if runs:
            self.show_run(runs[0].id)
        else:
            self.view.no_run(lab, str(self.runner.runs_dir))
            self.shown_lab = lab

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return True if self.active is not None else None
        if action == "launch":
            return None if self.active is not None or self.launching is not None else True
        return True

    # -- running ------------------------------------------------------------------------------
    def action_launch(self, preset: str = "toy") -> None:
        lab = self.selected_lab()
        if lab is None:
            return
        if self.active is not None or self.launching is not None:
            running = self.active.lab if self.active else self.launching
            self.notify(_("{lab} is running; c cancels it.").format(lab=running), severity="warning", timeout=3)
            return
        self.launching = lab
        self.feed = LiveFeed(lab, preset)
        self._show_live()
        self.refresh_bindings()
        self._run_lab(self.feed, preset == "toy")

    @work(thread=True, exclusive=False, exit_on_error=False, group="labs", description="lab run")
    def _run_lab(self, feed: LiveFeed, toy: bool) -> None:
        worker = get_current_worker()
        try:
            handle = self.runner.start(feed.lab, toy=toy, on_event=feed.receive)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the app keeps running
            self.post_message(self.LaunchFailed(feed.lab, str(exc)))
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
        if self.feed is not None and self.feed.lab == handle.lab:
            self.feed.out_dir = str(handle.out_dir)
        if self.showing_live:
            self.view.started(handle)
        self.refresh_labs()
        self.refresh_bindings()

    def on_labs_screen_launch_failed(self, message: LaunchFailed) -> None:
        self.launching = None
        self.refresh_bindings()
        self._show_error(_("{lab} could not start: {error}").format(lab=message.lab, error=message.error))

    def on_labs_screen_run_ended(self, message: RunEnded) -> None:
        handle = message.handle
        self._drain()
        if self.active is handle:
            self.active = None
        self.refresh_bindings()
        self.refresh_labs()
        live = self.live
        if live is not None:
            if live.total_steps is None:
                live.total_steps = 1  # it never said how long it would be: stop the indeterminate bar
            if handle.status == "succeeded":
                live.done = live.total_steps
        if self.showing_live:
            self.view.ended(handle)
        if handle.status == "succeeded":
            self.notify(_("{lab} succeeded.").format(lab=handle.lab), timeout=4)
        elif handle.status == "cancelled":
            self.notify(_("{lab} cancelled.").format(lab=handle.lab), severity="warning", timeout=4)
        else:
            self._show_error(f"{handle.lab} {handle.status}: {handle.error}", in_panel=self.showing_live)

    def action_cancel(self) -> None:
        if self.active is None:
            self.notify(_("No lab is running."), timeout=2)
            return
        if self.active.cancel():
            self.notify(_("Cancelling {lab} …").format(lab=self.active.lab), timeout=2)

    # -- the live view ---------------------------------------------------------------------------
    def _drain(self) -> None:
        """Apply what the lab reported since the last tick (4 times a second)."""
        if self.feed is None:
            return
        events = self.feed.drain()
        if events and self.showing_live:
            self.view.follow(events)

    def _show_live(self) -> None:
        feed = self.feed
        if feed is None:
            return
        handle = self.active or self.last_handle
        started = handle is not None and handle.lab == feed.lab and self.launching is None
        self.view.show_live(feed, handle if started else None)
        self.shown_lab = feed.lab

    def _show_error(self, message: str, in_panel: bool = True) -> None:
        self.notify(message, severity="error", timeout=10)
        if in_panel:
            self.view.error(message)

    def action_next_chart(self) -> None:
        self.view.charts.next_chart()

    # -- recorded runs -----------------------------------------------------------------------------
    def _run_to_show(self) -> str | None:
        if self.focused is self.run_list:
            return self.selected_run()
        lab = self.selected_lab()
        runs = labhistory.list_runs(self.course.store, lab, limit=1) if lab else []
        return runs[0].id if runs else None

    def action_show_run(self) -> None:
        run_id = self._run_to_show()
        if run_id is None:
            self.notify(_("No run yet: t runs the toy preset."), timeout=3)
            return
        self.show_run(run_id)

    def show_run(self, run_id: str) -> None:
        if self.active is not None and self.active.run_id == run_id:
            self._show_live()
            return
        record = labhistory.get_run(self.course.store, run_id)
        if record is None:
            return
        self.view.show_recorded(record, labhistory.load_run(self.course.store, run_id))
        self.shown_lab = record.lab

    def action_compare(self) -> None:
        run_id = self.selected_run() if self.focused is self.run_list else None
        run_id = run_id or self.shown_run or self._run_to_show()
        run = labhistory.get_run(self.course.store, run_id) if run_id else None
        if run is None or not run.finished:
            self.notify(_("Pick a finished run to compare (h shows one)."), timeout=3)
            return
        earlier = [r for r in labhistory.list_runs(self.course.store, run.lab)
                   if r.finished and r.started_ts <= run.started_ts and r.id != run.id]
        if not earlier:
            self.notify(_("No earlier run of {lab} to compare with.").format(lab=run.lab), timeout=3)
            return
        ids = [run.id] + [r.id for r in earlier[:COMPARE_RUNS - 1]]
        if self.shown_run != run.id:
            self.show_run(run.id)
        others = {other: labhistory.load_run(self.course.store, other) for other in ids[1:]}
        self.view.compare(labhistory.compare(self.course.store, ids), others)
