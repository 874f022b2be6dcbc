"""Today: where the learner is in the 14 days and what to do next."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class TodayScreen(Screen):
    BINDINGS = [("enter", "app.review", "Start")]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="today-body"):
            yield Static(id="today-day")
            yield Static(id="today-goal", classes="muted")
            yield Static(id="today-counts")
            yield Static(id="today-next")
            yield Static(id="today-criteria")
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self.app.mark_first_paint)  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:  # also the first time the screen is shown
        self.refresh_today()

    def refresh_today(self) -> None:
        course = self.app.course  # type: ignore[attr-defined]
        lang = self.app.lang  # type: ignore[attr-defined]
        today = course.today()
        day = today.day
        self.query_one("#today-day", Static).update(
            f"Day {day.number} of 14 · {today.phase.title[lang]} · {day.title[lang]}   ({today.date.isoformat()})"
        )
        self.query_one("#today-goal", Static).update(day.goal[lang])
        self.query_one("#today-counts", Static).update(
            f"Due now: [b]{today.due}[/b]  (learning {today.learning})    "
            f"New today: [b]{today.new_available}[/b] left, {today.new_today} introduced"
        )
        hint = "  — press [b]enter[/b] or [b]r[/b] to review" if today.due or today.new_available else ""
        self.query_one("#today-next", Static).update(f"Next: {today.next_action}{hint}")
        lines = []
        for criterion in today.status.criteria:
            mark = "[green]✓[/green]" if criterion.met else "[yellow]·[/yellow]"
            lines.append(f"{mark} {criterion.detail}")
        status = "done" if today.status.done else "in progress"
        self.query_one("#today-criteria", Static).update(f"Day {day.number} is {status}:\n" + "\n".join(lines))
