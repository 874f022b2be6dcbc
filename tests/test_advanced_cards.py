"""Advanced cards: introduced after every unlocked day's core cards, never required to finish a day."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FIXED_NOW, card_block, write_card_file
from llmcore_tui.core import plan
from llmcore_tui.core.clock import Clock
from llmcore_tui.core.course import Course
from llmcore_tui.core.srs import GOOD

DAY = 86_400


@pytest.fixture
def mixed_course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Course:
    root = tmp_path / "content"
    write_card_file(root / "cards", "01-mdp.md", "mdp", 1, [card_block("mdp-a"), card_block("mdp-b")])
    write_card_file(root / "cards", "01-mdp-extra.md", "mdp", 1,
                    [card_block("mdp-x", tags="advanced"), card_block("mdp-c", tags="definition")])
    write_card_file(root / "cards", "02-td.md", "td_learning", 2,
                    [card_block("td-x", tags="bellman, advanced"), card_block("td-a")])
    (root / "quizzes").mkdir()
    monkeypatch.setenv("LLMCORE_CONTENT", str(root))
    course = Course.open(tmp_path / "progress.db", root, clock=Clock(FIXED_NOW + 2 * DAY), fuzz=False)
    course.settings.set("timezone", "UTC")
    yield course
    course.close()


def learn(course: Course, *card_ids: str) -> None:
    items = {item.item_id: item for item in course.new_items({1, 2})}
    for card_id in card_ids:
        course.srs.rate(items[card_id], GOOD, course.now())


def test_core_cards_of_every_unlocked_day_come_before_any_advanced_card(mixed_course):
    order = [item.item_id for item in mixed_course.new_items({1, 2})]
    assert order == ["mdp-a", "mdp-b", "mdp-c", "td-a", "mdp-x", "td-x"]
    assert mixed_course.summary.core_total("mdp") == 3 and mixed_course.summary.advanced == {
        "mdp": ["mdp-x"], "td_learning": ["td-x"]}


def test_a_day_is_done_without_its_advanced_cards(mixed_course):
    course = mixed_course
    learn(course, "mdp-a", "mdp-b", "mdp-c")
    status = course.day_statuses()[0]
    cards = next(c for c in status.criteria if c.name == "cards")
    assert cards.met
    assert cards.detail == "3/3 MDP cards introduced (+0/1 advanced)"
    learn(course, "mdp-x")
    cards = next(c for c in course.day_statuses()[0].criteria if c.name == "cards")
    assert cards.detail == "3/3 MDP cards introduced (+1/1 advanced)"


def test_a_missing_core_card_still_holds_the_day(mixed_course):
    course = mixed_course
    learn(course, "mdp-a", "mdp-b", "mdp-x")  # an advanced card does not stand in for a core one
    cards = next(c for c in course.day_statuses()[0].criteria if c.name == "cards")
    assert not cards.met and cards.detail.startswith("2/3 ")


def test_the_plan_names_where_the_next_new_cards_come_from(mixed_course):
    split = plan.new_card_split(mixed_course, {1, 2}, {}, 6)
    assert split == [("MDP", 3), ("TD learning", 1), ("MDP advanced", 1), ("TD learning advanced", 1)]
