"""Today: where the learner is in the 14 days, what is owed, and what to do next (with its key)."""

from __future__ import annotations

from datetime import datetime

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from llmcore_tui.core.plan import CATCH_UP_STEP, Plan, plural


class TodayScreen(Screen):
    BINDINGS = [
        Binding("enter", "app.open('review')", "Start", id="today.start", tooltip="Review due cards, then learn new ones"),
        Binding("plus", "learn_more", f"+{CATCH_UP_STEP} new", id="today.more",
                tooltip=f"Raise today's new-card limit by {CATCH_UP_STEP} (catching up)"),
        Binding("e", "export_brief", "Export brief", id="today.brief",
                tooltip="Write the technical brief (brief.html) to the current folder"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="today-body"):
            yield Static(id="today-day")
            yield Static(id="today-goal", classes="muted")
            yield Static(id="today-behind")
            yield Static(id="today-counts")
            yield Static(id="today-next")
            yield Static(id="today-criteria")
            yield Static("[b]t[/b] Today · [b]r[/b] Review · [b]m[/b] Roadmap · [b]l[/b] Labs · [b]k[/b] Quiz · "
                         "[b]s[/b] Stats · [b]c[/b] Calculator · [b]?[/b] Help · [b]ctrl+p[/b] everything",
                         id="today-keys", classes="muted")
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self.app.mark_first_paint)  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:  # also the first time the screen is shown
        self.refresh_today()

    def action_export_brief(self) -> None:
        self.app.export_brief("html")  # type: ignore[attr-defined]  # a worker: writes, then notifies

    def action_learn_more(self) -> None:
        limit = self.app.course.learn_more_today(CATCH_UP_STEP)  # type: ignore[attr-defined]
        self.notify(f"Today's new-card limit is now {limit}.", timeout=3)
        self.refresh_today()

    def refresh_today(self) -> None:
        course = self.app.course  # type: ignore[attr-defined]
        lang = self.app.lang  # type: ignore[attr-defined]
        plan: Plan = course.today()
        day = plan.day
        heading = f"Day {plan.calendar_day} of 14 · {plan.date.isoformat()}"
        if plan.complete:
            heading += " · [green]course complete[/green]"
        else:
            heading += f" · {plan.phase.title[lang]} · [b]Day {day.number}: {day.title[lang]}[/b]"
        self.query_one("#today-day", Static).update(heading)
        self.query_one("#today-goal", Static).update("" if plan.complete else day.goal[lang])
        self.query_one("#today-behind", Static).update(self._behind_text(plan))
        self.query_one("#today-counts", Static).update(
            f"Due now (all modules): [b]{plan.due}[/b]  (learning {plan.learning})    "
            f"New cards today: [b]{plan.new_available}[/b] left, {plan.new_today} introduced"
        )
        steps = [f"  [b]{a.key}[/b]  {a.text}" for a in plan.actions]
        self.query_one("#today-next", Static).update("Next:\n" + "\n".join(steps))
        self.query_one("#today-criteria", Static).update(self._criteria_text(plan))

    @staticmethod
    def _behind_text(plan: Plan) -> str:
        if not plan.behind:
            return ""
        lines = [f"[yellow]You are {plural(len(plan.behind), 'day')} behind the calendar.[/yellow] Still owed:"]
        for owed in plan.behind:
            lines.append(f"  Day {owed.day.number} {owed.day.title['en']}: " + "; ".join(owed.unmet))
        lines.append(f"New cards come in course order, so the owed cards come first; [b]+[/b] adds {CATCH_UP_STEP} more today.")
        return "\n".join(lines)

    def _criteria_text(self, plan: Plan) -> str:
        if plan.complete:
            when = ""
            if plan.next_due_ts:
                local = datetime.fromtimestamp(plan.next_due_ts, self.app.course.tz)  # type: ignore[attr-defined]
                when = f" The next card comes back {local:%a %d %b %H:%M}."
            return ("All 14 days are done. What you learned stays only if you keep reviewing: a few minutes a day "
                    f"keeps retention near your target.{when}\nWhere to go next: the frontier topics in the brief's "
                    "'topics to revisit', the labs' full presets (f on the Labs screen), and your weakest cards (s).")
        status = plan.status
        lines = [("[green]✓[/green] " if c.met else "[yellow]·[/yellow] ") + c.detail for c in status.criteria]
        state = f"completed on {status.completed_on}" if status.completed_on else ("done" if status.done else "in progress")
        return f"Day {plan.day.number} is {state}:\n" + "\n".join(lines)
