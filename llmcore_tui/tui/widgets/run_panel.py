"""The run on the Labs screen: its title line, the panel (headline, error or a comparison) and
its log. Each widget renders typed things (protocol events, run records, a comparison); none
decodes or queries anything itself.

The log opens a table at its title and header rather than scrolling past to its last rows, and
a recorded run opens at the top: its tables first, then the log tail.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.markup import escape
from rich.table import Table as RichTable
from rich.text import Text
from textual.widgets import RichLog, Static

from labs.protocol import Error, Event, Log, Other, Table, fmt_duration, fmt_value
from llmcore_tui.core.labhistory import Comparison, RunRecord
from llmcore_tui.i18n import _
from llmcore_tui.tui.widgets.labview import STATUS_STYLE, lab_table, status_text, when

LOG_LINES = 1000


class RunTitle(Static):
    """Which run is on screen: lab, preset, id and status (and the error of one that failed)."""

    def show_run(self, lab: str, preset: str | None, run_id: str, status: str, error: str | None = None) -> None:
        style = STATUS_STYLE.get(status, "default")
        text = f"[b]{lab}[/b] ({preset}) · {run_id} · [{style}]{_(status)}[/{style}]"
        if error and status != "succeeded":
            text += f"\n[red]{escape(error)}[/red]"
        self.update(text)

    def starting(self, lab: str, preset: str) -> None:
        self.update(f"[b]{lab}[/b] ({preset}) · " + _("starting …"))

    def no_run(self, lab: str, runs_dir: str) -> None:
        self.update(f"[b]{lab}[/b]: " + _("no run yet. [b]t[/b] or [b]enter[/b] runs its toy preset, [b]f[/b] the full "
                                           "one; files go to {folder}/").format(folder=escape(runs_dir)))


class RunPanel(Static):
    """The headline of a finished run, the error of a failed one, or runs side by side."""

    def on_mount(self) -> None:
        self.display = False

    def _show(self, renderable: Any) -> None:
        self.update(renderable)
        self.display = True

    def hide(self) -> None:
        self.display = False

    def headline(self, headline: dict[str, Any]) -> None:
        table = RichTable(title=_("headline"), show_header=False, box=None, padding=(0, 1))
        for key, value in headline.items():
            table.add_row(key, fmt_value(value))
        self._show(table)

    def error(self, message: str) -> None:
        self._show(Text(message, style="bold red"))

    def comparison(self, result: Comparison) -> None:
        """Headline numbers and the settings that differ, one column per run (the first is the
        run on screen)."""
        lab = result.runs[0].lab
        table = RichTable(title=_("{lab}: this run and {n} earlier").format(lab=lab, n=len(result.runs) - 1),
                          title_justify="left", padding=(0, 1))
        table.add_column("")
        for run in result.runs:
            table.add_column(Text.assemble(when(run.started_ts), "\n", status_text(run.status)))
        for title, section in (("", result.headline), (_("settings"), result.config)):
            if title and section:
                table.add_row(Text(title, style="bold"))
            for key, values in section.items():
                table.add_row(key, *(fmt_value(v) for v in values))
        self._show(table)


class RunLog(RichLog):
    """A run's log lines, tables, errors and the lab's stderr."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=LOG_LINES, wrap=True, markup=False, highlight=False, **kwargs)

    def _table(self, table: Table) -> RichTable:
        width = self.scrollable_content_region.width or max(40, self.screen.size.width - 52)
        return lab_table(table.name, table.columns, table.rows, width)

    def renderable(self, event: Event) -> Any:
        """What the log shows for an event (None: nothing; metrics and progress are charted)."""
        if isinstance(event, Log):
            return event.text
        if isinstance(event, Table):
            return self._table(event)
        if isinstance(event, Error):
            return Text(_("error: {message}").format(message=event.message), style="bold red")
        if isinstance(event, Other) and event.kind == "stderr":
            return Text(str(event.data.get("text", "")), style="dim")
        if isinstance(event, Other) and event.kind == "malformed":
            return Text(_("not an event: {text}").format(text=event.data.get("text", "")), style="yellow")
        return None

    def error(self, message: str) -> None:
        self.write(Text(message, style="bold red"))

    def files(self, out_dir: Any) -> None:
        self.write(Text(_("files: {path}").format(path=out_dir or "—"), style="dim"), scroll_end=False)

    def write_events(self, events: Iterable[Event]) -> None:
        """Append what a live run said; a table is shown from its title and header, not scrolled
        past to its last rows (the log follows the end again with the next batch)."""
        table_start: int | None = None
        for event in events:
            renderable = self.renderable(event)
            if renderable is None:
                continue
            if isinstance(event, Table) and table_start is None:
                table_start = len(self.lines)
            self.write(renderable, scroll_end=False if table_start is not None else None)
        if table_start is not None:  # after the scrolls to the end that the lines before it queued
            self.call_after_refresh(self.scroll_to, y=table_start, animate=False)

    def show_record(self, run: RunRecord, tables: Iterable[Table]) -> None:
        """A recorded run, from the top: when and how it ran, its files, its tables, its log tail."""
        self.clear()
        settings = ", ".join(f"{k}={fmt_value(v)}" for k, v in run.config.items())
        self.write(Text(_("started {when}, took {took}; {settings}").format(
            when=when(run.started_ts), took=fmt_duration(run.duration_s), settings=settings), style="dim"),
            scroll_end=False)
        self.files(run.out_dir)
        for table in tables:
            self.write(self._table(table), scroll_end=False)
        if run.log_tail:
            self.write(run.log_tail, scroll_end=False)
        self.scroll_home(animate=False)
        self.call_after_refresh(self.scroll_home, animate=False)  # past any scroll a live write queued
