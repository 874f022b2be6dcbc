"""Roadmap: the 14 days, their phases and what each still asks for."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from llmcore_tui.core.roadmap import phase_of
from llmcore_tui.i18n import N_, Localized, _, pick

STATUS_LABELS = {"done": ("green", N_("done")), "open": ("yellow", N_("open")), "locked": ("dim", N_("locked"))}


class RoadmapScreen(Localized, Screen):
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(_("The 14-day roadmap"), classes="title")
        yield DataTable(id="roadmap-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="roadmap-detail", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(_("Day"), _("Phase"), _("Module"), _("Status"), _("Progress"))
        self.refresh_table()

    def on_screen_resume(self) -> None:
        self.refresh_table()

    def refresh_table(self) -> None:
        course = self.app.course  # type: ignore[attr-defined]
        self._statuses = course.day_statuses()
        current = course.calendar_day()
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for status in self._statuses:
            day = status.day
            met = sum(c.met for c in status.criteria)
            progress = f"{met}/{len(status.criteria)}" if status.criteria and status.unlocked else "—"
            marker = "▶ " if day.number == current else "  "
            style, word = STATUS_LABELS[status.label]
            label = f"[{style}]{_(word)}[/{style}]"
            table.add_row(f"{marker}{day.number}", pick(phase_of(day).title), pick(day.title), label, progress,
                          key=str(day.number))
        table.move_cursor(row=row if row else current - 1)
        self.show_detail(table.cursor_row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail(event.cursor_row)

    def show_detail(self, index: int) -> None:
        if not 0 <= index < len(getattr(self, "_statuses", [])):
            return
        status = self._statuses[index]
        lines = ["[b]" + _("Day {n}: {title}").format(n=status.day.number, title=pick(status.day.title))
                 + f"[/b] — {pick(status.day.goal)}"]
        if status.completed_on:
            lines.append("[green]" + _("Completed on {date}.").format(date=status.completed_on) + "[/green] "
                         + _("Its cards keep coming back in Review."))
        if not status.unlocked:
            lines.append("[dim]" + _("Unlocks on its calendar day, or when the day before it is done.") + "[/dim]")
        for criterion in status.criteria:
            lines.append(("[green]✓[/green] " if criterion.met else "[yellow]·[/yellow] ") + criterion.detail)
        self.query_one("#roadmap-detail", Static).update("\n".join(lines))
