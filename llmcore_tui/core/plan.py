"""Today's plan: the day the learner is on, what late days still owe, and the next actions with their keys.

**Policy for a missed day.** The calendar keeps moving and the plan carries the backlog: days
open by the calendar as before, new cards always come in curriculum order (so an owed day's
cards come first), and the plan's *focus* is the earliest open day that is not done. Today
says how many days the learner is behind and what each late day still owes (cards, lab,
quiz), and ``+`` raises today's new-card limit to catch up. Shifting the whole roadmap by a
day would hide the delay and move the course's end without the learner deciding it; a
visible backlog keeps the end date honest and lets a motivated learner catch up in a day.

**Every action names its key**: ``r`` review or learn, ``l`` the lab, ``k`` the quiz,
``e`` export the brief, ``+`` more new cards today, ``s`` statistics. The texts are in the
interface language (``llmcore_tui.i18n``), built when the plan is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from llmcore_tui.core import roadmap
from llmcore_tui.core.roadmap import Day, DayStatus, Phase
from llmcore_tui.core.srs import count_due, introduced_since, next_due_ts
from llmcore_tui.i18n import _, ngettext, pick

if TYPE_CHECKING:
    from llmcore_tui.core.course import Course

CATCH_UP_STEP = 10  # new cards that one press of "+" adds to today's limit


@dataclass(frozen=True)
class Action:
    key: str
    text: str

    def __str__(self) -> str:
        return f"[{self.key}] {self.text}"


@dataclass(frozen=True)
class Owed:
    """A day before the calendar day that is not done, and what it still asks for."""

    day: Day
    unmet: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    date: date
    calendar_day: int
    day: Day  # the focus: the earliest open day that is not done (or the calendar day)
    phase: Phase
    status: DayStatus
    due: int  # every item due now: cards of all modules and missed quiz questions
    learning: int
    new_available: int
    new_today: int
    new_by_module: tuple[tuple[str, int], ...]  # what "r" introduces next: (module title, count), in order
    behind: tuple[Owed, ...]
    actions: tuple[Action, ...]
    complete: bool  # all 14 days done
    next_due_ts: float | None

    @property
    def next_action(self) -> str:
        return self.actions[0].text if self.actions else ""


def new_card_split(course: "Course", unlocked: set[int], introduced: dict[str, int], n: int,
                   advanced_in: dict[str, int] | None = None) -> list[tuple[str, int]]:
    """Which modules the next ``n`` new cards come from, in the order ``Course.new_items`` gives
    them: every unlocked day's core cards, day by day, then the advanced ones. ``advanced_in``
    (advanced cards introduced per module) is read from the store when not given."""
    summary = course.summary
    if advanced_in is None:
        advanced_in = course.advanced_introduced() if summary.advanced else {}
    out = []
    for advanced in (False, True):
        for day in roadmap.DAYS:
            if n <= 0 or day.number not in unlocked:
                continue
            module, extra_in = day.module, advanced_in.get(day.module, 0)
            core_in = introduced.get(module, 0) - extra_in
            if advanced:
                left = len(summary.advanced.get(module, ())) - extra_in
            else:
                left = summary.core_total(module) - core_in
            take = min(max(0, left), n)
            if take:
                title = pick(day.title)
                out.append((_("{module} advanced").format(module=title) if advanced else title, take))
                n -= take
    return out


def _day_actions(status: DayStatus, owed_cards_blocked: bool) -> list[Action]:
    """Keyed actions for a day's unmet criteria (cards are handled by the review actions)."""
    actions = []
    for criterion in status.criteria:
        if criterion.met:
            continue
        day = status.day.number
        if criterion.name == "lab":
            actions.append(Action("l", _("Run the {lab} lab (day {n})").format(lab=criterion.subject, n=day)))
        elif criterion.name == "quiz":
            quiz = criterion.subject
            if quiz == status.day.module:
                title = pick(status.day.title)
            else:
                title = _(roadmap.EXTRA_QUIZ_TITLES.get(quiz, quiz))
            actions.append(Action("k", _("Take the {quiz} quiz (day {n})").format(quiz=title, n=day)))
        elif criterion.name == "brief":
            actions.append(Action("e", _("Export the technical brief")))
        elif criterion.name == "cards" and owed_cards_blocked:
            actions.append(Action("+", _("Learn {n} more new cards today: {detail}").format(
                n=CATCH_UP_STEP, detail=criterion.detail)))
    return actions


def build(course: "Course") -> Plan:
    now = course.now()
    counts = course.module_counts(now)
    statuses = course.day_statuses(counts)
    calendar = course.calendar_day()
    unlocked = {s.day.number for s in statuses if s.unlocked}
    open_not_done = [s for s in statuses if s.unlocked and not s.done]
    focus = open_not_done[0] if open_not_done else statuses[max(unlocked) - 1]
    complete = all(s.done for s in statuses)
    due, learning = count_due(course.store, now)
    start, _end = course.today_bounds()
    new_today = introduced_since(course.store, start)
    new_left = course.new_left_today()
    introduced = {m: n for m, (n, _due) in counts.items()}
    advanced_in = course.advanced_introduced() if course.summary.advanced else {}
    split = new_card_split(course, unlocked, introduced, new_left, advanced_in)
    new_available = sum(n for _title, n in split)
    unseen_open = sum(n for _title, n in new_card_split(course, unlocked, introduced, 10**9, advanced_in))
    behind = tuple(Owed(s.day, tuple(c.detail for c in s.criteria if not c.met))
                   for s in statuses if s.unlocked and not s.done and s.day.number < calendar)

    actions: list[Action] = []
    if due:
        actions.append(Action("r", ngettext("Review {n} due card", "Review {n} due cards", due).format(n=due)))
    if new_available:
        parts = ", ".join(_("{n} {module}").format(n=n, module=title) for title, n in split)
        actions.append(Action("r", ngettext("Learn {n} new card ({parts})", "Learn {n} new cards ({parts})",
                                            new_available).format(n=new_available, parts=parts)))
    for status in [s for s in statuses if s.unlocked and not s.done][:2]:
        actions += _day_actions(status, owed_cards_blocked=not new_available and unseen_open > 0)
    if complete:
        actions += [Action("r", _("Keep reviewing: FSRS brings each card back just before you would forget it")),
                    Action("e", _("Export the technical brief again")),
                    Action("s", _("See your retention and what is weakest"))]
    elif not actions:
        actions.append(Action("r", _("Nothing is due: the next card comes back later (Review says when)")))
    return Plan(course.study_date(), calendar, focus.day, roadmap.phase_of(focus.day), focus, due, learning,
                new_available, new_today, tuple(split), behind, tuple(actions), complete,
                next_due_ts(course.store, now))
