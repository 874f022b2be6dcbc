"""The Labs screen's two lists: the labs (the current day's first) and the runs of one lab.

Each row's key is the lab name or the run id, so the screen asks for ``selected`` and never
for a row index.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import DataTable

from labs.protocol import fmt_duration
from labs.registry import LabInfo
from llmcore_tui.core.labhistory import RunRecord
from llmcore_tui.i18n import N_, _
from llmcore_tui.tui.widgets.labview import status_text, when

RUNS_LISTED = 50


class _KeyedList(DataTable):
    COLUMNS: tuple[str, ...] = ()

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        self.add_columns(*(_(column) for column in self.COLUMNS))

    @property
    def selected(self) -> str | None:
        if self.row_count == 0:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value


class LabList(_KeyedList):
    """Day, name and the status of the last run; ``▶`` marks the labs of the current day."""

    COLUMNS = (N_("Day"), N_("Lab"), N_("Last run"))

    def show(self, labs: Iterable[tuple[LabInfo, bool]], latest: dict[str, RunRecord]) -> None:
        """List ``labs`` (each with whether it is today's), keeping the selected lab selected."""
        selected = self.selected
        self.clear()
        for lab, today in labs:
            run = latest.get(lab.name)
            last = Text(_("never run"), style="dim") if run is None else status_text(run.status)
            self.add_row(("▶ " if today else "  ") + str(lab.day), lab.name, last, key=lab.name)
        if selected is not None:
            self.move_cursor(row=self.get_row_index(selected))


class RunList(_KeyedList):
    """One lab's runs, newest first: when, how it ended, which preset, how long it took."""

    COLUMNS = (N_("Started"), N_("Status"), N_("Preset"), N_("Took"))

    def show(self, runs: Iterable[RunRecord]) -> None:
        self.clear()
        for run in runs:
            self.add_row(when(run.started_ts), status_text(run.status), run.preset or "—",
                         fmt_duration(run.duration_s), key=run.id)
