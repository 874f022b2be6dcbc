"""Two weeks as a learner lives them, with a fixed clock and day 6 skipped: what Today says each day."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FIXED_NOW, card_block, write_card_file
from llmcore_tui.core.clock import Clock
from llmcore_tui.core.course import Course
from llmcore_tui.core.roadmap import DAYS
from llmcore_tui.core.srs import EASY, GOOD, NewItem
from llmcore_tui.tui.app import LlmcoreApp

DAY = 86_400
CARDS_PER_MODULE = 3


@pytest.fixture
def walk_course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Course:
    root = tmp_path / "content"
    for day in DAYS:
        if day.number <= 13:
            ids = [f"{day.module.replace('_', '-')}-{i}" for i in range(CARDS_PER_MODULE)]
            write_card_file(root / "cards", f"{day.number:02d}-{day.module}.md", day.module, day.number,
                            [card_block(i) for i in ids])
    (root / "quizzes").mkdir()
    monkeypatch.setenv("LLMCORE_CONTENT", str(root))
    course = Course.open(tmp_path / "progress.db", root, clock=Clock(FIXED_NOW), fuzz=False)
    course.settings.set("timezone", "UTC")
    course.settings.set("new_per_day", 5)
    yield course
    course.close()


def study(course: Course, lab_days: list[int]) -> None:
    """Review everything due, learn every new card allowed, and pass the labs of the given days."""
    from labs.registry import labs_for_day

    queue = course.review_queue()
    now = course.now()
    while (item := queue.next(now)) is not None:
        queue.rate(item, EASY if isinstance(item, NewItem) else GOOD, now)
    with course.store.transaction() as conn:
        for number in lab_days:
            for lab in labs_for_day(number):
                conn.execute("INSERT INTO lab_runs(id, lab, status, started_ts) VALUES (?, ?, 'succeeded', ?)",
                             (f"{lab.name}-{now}", lab.name, now))


async def today_text(course: Course) -> str:
    """Today as the screen shows it, from the app's own connection (the app closes it on exit)."""
    app = LlmcoreApp(Course.open(course.store.path, course.content_root, clock=course.clock, fuzz=False))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        return "\n".join(str(app.screen.query_one(f"#today-{part}").render())
                         for part in ("day", "behind", "counts", "next", "criteria"))


async def test_two_weeks_with_a_missed_day(walk_course):
    course = walk_course
    said: dict[int, str] = {}
    for calendar_day in range(1, 15):
        said[calendar_day] = text = await today_text(course)
        plan = course.today()
        assert plan.calendar_day == calendar_day
        assert "[r]" not in text  # keys are shown bold, not as raw markup
        for action in plan.actions:  # every Next names a real key
            assert action.key in {"r", "l", "k", "e", "+", "s"}
        if calendar_day == 6:
            course.clock.advance(DAY)  # skipped on purpose: the app is not even opened
            continue
        if calendar_day == 7:
            assert plan.day.number == 6 and [o.day.number for o in plan.behind] == [6]
            assert "1 day behind" in text and "Day 6 DPO" in text and "lab dpo not yet run successfully" in text
            # the Next box names what "r" really brings: the owed DPO cards first, then PPO's
            assert "Learn 5 new cards (3 DPO, 2 PPO)" in text
            assert "Run the dpo lab (day 6)" in text
        if calendar_day == 14:
            assert "Export the technical brief" in text and "\n  e" in text
            course.store.set_setting("brief_exported_ts", course.now())  # what the export does
            assert course.today().complete
            said["end"] = await today_text(course)
            break
        # study the focus day and anything owed; where today's cards are not all in, catch up with "+"
        study(course, lab_days=[d for d in range(1, calendar_day + 1)])
        if not all(s.done for s in course.day_statuses()[:calendar_day]):
            assert any(a.key == "+" for a in course.today().actions)
            course.learn_more_today(10)
            study(course, lab_days=[])
        statuses = course.day_statuses()
        assert all(s.done for s in statuses[:calendar_day]), [s.criteria for s in statuses if not s.done]
        course.clock.advance(DAY)

    for day in (1, 7, 14, "end"):  # shown with pytest -s
        print(f"--- Today, day {day} ---\n{said[day]}")
    assert "Day 1 of 14" in said[1] and "Day 1: MDP" in said[1] and "Learn 3 new cards (3 MDP)" in said[1]
    assert "course complete" in said["end"] and "All 14 days are done" in said["end"]
    # a completed day stays completed when its old cards fall due again
    day1 = course.day_statuses()[0]
    assert day1.done and day1.completed_on == "2026-03-02"


async def test_a_completed_day_does_not_reopen_when_its_cards_fall_due(walk_course):
    course = walk_course
    study(course, lab_days=[1])
    assert course.day_statuses()[0].done
    course.clock.advance(30 * DAY)
    statuses = course.day_statuses()
    assert statuses[0].done and not any(c.name == "reviews" for c in statuses[0].criteria)
    assert course.today().due > 0
