"""Roadmap and the course: study days, unlocking, what a day asks for, today's plan."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from llmcore_tui.core import roadmap
from llmcore_tui.core.clock import day_bounds, study_date
from llmcore_tui.core.srs import GOOD, EASY

DAY = 86400


def test_fourteen_days_in_three_phases():
    assert [d.number for d in roadmap.DAYS] == list(range(1, 15))
    assert [len(p.days) for p in roadmap.PHASES] == [4, 5, 5]
    assert roadmap.MODULE_DAYS["gae"] == 4 and roadmap.MODULE_DAYS["parallelism"] == 12


def test_calendar_day_is_capped():
    start = date(2026, 3, 1)
    assert roadmap.calendar_day(start, date(2026, 3, 1)) == 1
    assert roadmap.calendar_day(start, date(2026, 3, 5)) == 5
    assert roadmap.calendar_day(start, date(2026, 5, 1)) == 14
    assert roadmap.calendar_day(start, date(2026, 2, 1)) == 1


def test_study_day_starts_at_the_configured_hour():
    tz = ZoneInfo("Europe/Berlin")
    late = datetime(2026, 3, 3, 3, 30, tzinfo=tz).timestamp()  # 03:30 local: still the 2nd
    assert study_date(late, 4, tz) == date(2026, 3, 2)
    assert study_date(late, 0, tz) == date(2026, 3, 3)
    # a daylight-saving day is 23 hours long
    start, end = day_bounds(date(2026, 3, 28), 4, tz)
    assert end - start == 23 * 3600


def test_first_run_sets_the_start_date_and_only_day_one_is_open(course):
    assert course.start_date == date(2026, 3, 2)
    statuses = course.day_statuses()
    assert [s.unlocked for s in statuses[:3]] == [True, False, False]
    today = course.today()
    assert today.day.number == 1 and today.new_available == 3 and today.due == 0
    assert today.next_action == "Learn 3 new cards (3 MDP)"


def test_new_cards_respect_the_daily_limit_across_sessions(course):
    course.settings.set("new_per_day", 2)
    queue = course.review_queue()
    now = course.now()
    queue.rate(queue.next(now), GOOD, now)
    assert course.review_queue().new_left == 1
    course.clock.advance(DAY)
    assert course.review_queue().new_left == 2


def test_a_day_is_done_when_cards_are_learned_and_the_lab_succeeded(course):
    queue = course.review_queue()
    now = course.now()
    for _ in range(3):
        queue.rate(queue.next(now), EASY, now)
    status = course.day_statuses()[0]
    assert {c.name: c.met for c in status.criteria} == {"cards": True, "reviews": True, "lab": False}
    assert not status.done and not course.day_statuses()[1].unlocked
    with course.store.transaction() as conn:
        conn.execute("INSERT INTO lab_runs(id, lab, status, started_ts) VALUES ('r1', 'mdp', 'succeeded', 0)")
    statuses = course.day_statuses()
    assert statuses[0].done
    assert statuses[1].unlocked  # working ahead: a finished day opens the next
    assert [c.item_id for c in course.new_items({1, 2})] == ["td-one", "td-two"]


def test_calendar_opens_days_as_time_passes(course):
    course.clock.advance(3 * DAY)
    assert [s.unlocked for s in course.day_statuses()[:5]] == [True, True, True, True, False]
    today = course.today()
    assert today.calendar_day == 4
    # nothing done yet: the plan's focus stays on the earliest open day, and says what is owed
    assert today.day.number == 1
    assert [owed.day.number for owed in today.behind] == [1, 2, 3]


def test_the_review_day_asks_for_both_its_quizzes(real_course):
    day13 = real_course.day_statuses()[12]
    quizzes = [c.detail for c in day13.criteria if c.name == "quiz"]
    assert quizzes == ["Review quiz not passed yet", "course-wide review quiz not passed yet"]
