"""Today: where the learner is in the 14 days, what is owed, and what to do next (with its key)."""

from __future__ import annotations

from datetime import datetime

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from llmcore_tui.core.plan import CATCH_UP_STEP, Plan
from llmcore_tui.i18n import N_, Localized, _, ngettext, pick


class TodayScreen(Localized, Screen):
    BINDINGS = [
        Binding("enter", "app.open('review')", N_("Start"), id="today.start",
                tooltip=N_("Review due cards, then learn new ones")),
        Binding("plus", "learn_more", N_("+10 new"), id="today.more",
                tooltip=N_("Raise today's new-card limit by 10 (catching up)")),
        Binding("e", "export_brief", N_("Export brief"), id="today.brief",
                tooltip=N_("Write the technical brief (brief.html) to the current folder")),
    ]  # "10" is CATCH_UP_STEP (tests/test_i18n.py checks it)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="today-body"):
            yield Static(id="today-day")
            yield Static(id="today-goal", classes="muted")
            yield Static(id="today-behind")
            yield Static(id="today-counts")
            yield Static(id="today-next")
            yield Static(id="today-criteria")
            yield Static(_("[b]t[/b] Today · [b]r[/b] Review · [b]m[/b] Roadmap · [b]l[/b] Labs · [b]k[/b] Quiz · "
                           "[b]s[/b] Stats · [b]c[/b] Calculator · [b]?[/b] Help · [b]ctrl+p[/b] everything"),
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
        self.notify(_("Today's new-card limit is now {n}.").format(n=limit), timeout=3)
        self.refresh_today()

    def refresh_today(self) -> None:
        course = self.app.course  # type: ignore[attr-defined]
        plan: Plan = course.today()
        day = plan.day
        heading = _("Day {n} of 14").format(n=plan.calendar_day) + f" · {plan.date.isoformat()}"
        if plan.complete:
            heading += " · [green]" + _("course complete") + "[/green]"
        else:
            heading += f" · {pick(plan.phase.title)} · [b]" + _("Day {n}: {title}").format(
                n=day.number, title=pick(day.title)) + "[/b]"
        self.query_one("#today-day", Static).update(heading)
        self.query_one("#today-goal", Static).update("" if plan.complete else pick(day.goal))
        self.query_one("#today-behind", Static).update(self._behind_text(plan))
        self.query_one("#today-counts", Static).update(
            _("Due now (all modules): [b]{due}[/b]  (learning {learning})    "
              "New cards today: [b]{left}[/b] left, {introduced} introduced").format(
                due=plan.due, learning=plan.learning, left=plan.new_available, introduced=plan.new_today)
        )
        steps = [f"  [b]{a.key}[/b]  {a.text}" for a in plan.actions]
        self.query_one("#today-next", Static).update(_("Next:") + "\n" + "\n".join(steps))
        self.query_one("#today-criteria", Static).update(self._criteria_text(plan))

    @staticmethod
    def _behind_text(plan: Plan) -> str:
        if not plan.behind:
            return ""
        behind = len(plan.behind)
        lines = ["[yellow]" + ngettext("You are {n} day behind the calendar.", "You are {n} days behind the calendar.",
                                       behind).format(n=behind) + "[/yellow] " + _("Still owed:")]
        for owed in plan.behind:
            lines.append("  " + _("Day {n} {title}:").format(n=owed.day.number, title=pick(owed.day.title)) + " "
                         + "; ".join(owed.unmet))
        lines.append(_("New cards come in course order, so the owed cards come first; [b]+[/b] adds {n} more today.")
                     .format(n=CATCH_UP_STEP))
        return "\n".join(lines)

    def _criteria_text(self, plan: Plan) -> str:
        if plan.complete:
            when = ""
            if plan.next_due_ts:
                local = datetime.fromtimestamp(plan.next_due_ts, self.app.course.tz)  # type: ignore[attr-defined]
                when = " " + _("The next card comes back {when}.").format(when=local.strftime(_("%a %d %b %H:%M")))
            return (_("All 14 days are done. What you learned stays only if you keep reviewing: a few minutes a day "
                      "keeps retention near your target.") + when + "\n"
                    + _("Where to go next: the frontier topics in the brief's 'topics to revisit', the labs' full "
                        "presets (f on the Labs screen), and your weakest cards (s)."))
        status = plan.status
        lines = [("[green]✓[/green] " if c.met else "[yellow]·[/yellow] ") + c.detail for c in status.criteria]
        if status.completed_on:
            head = _("Day {n} is completed on {date}:").format(n=plan.day.number, date=status.completed_on)
        elif status.done:
            head = _("Day {n} is done:").format(n=plan.day.number)
        else:
            head = _("Day {n} is in progress:").format(n=plan.day.number)
        return head + "\n" + "\n".join(lines)
