"""Issue 11, item 6c: two instances on one database do not both introduce the same new cards."""

from __future__ import annotations

import sqlite3

from llmcore_tui.core.course import Course
from llmcore_tui.core.srs import GOOD, NewItem


def _open(path, content, clock) -> Course:
    course = Course.open(path, content, clock=clock, fuzz=False)
    course.settings.set("timezone", "UTC")
    return course


def test_a_second_instance_skips_the_cards_the_first_introduced(tmp_path, content, clock):
    path = tmp_path / "progress.db"
    first, second = _open(path, content, clock), _open(path, content, clock)
    try:
        q1, q2 = first.review_queue(), second.review_queue()  # both built before any rating
        assert [i.item_id for i in q1.new_items] == [i.item_id for i in q2.new_items]
        seen: list[str] = []
        now = clock.now()
        for queue in (q1, q2) * 3:  # the two alternate, each rating the new card it shows
            item = queue.next(now)
            if isinstance(item, NewItem):
                seen.append(item.item_id)
                queue.rate(item, GOOD, now)
            now += 1
        assert len(seen) == len(set(seen)), f"a new card was shown twice: {seen}"
        assert sorted(seen) == ["mdp-one", "mdp-three", "mdp-two"]  # day 1's three cards, each once
        conn = sqlite3.connect(path)
        per_item = conn.execute("SELECT item_id, count(*) FROM reviews GROUP BY item_id").fetchall()
        assert all(n == 1 for _, n in per_item) and len(per_item) == 3
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
    finally:
        first.close()
        second.close()


def test_the_daily_limit_holds_across_instances(tmp_path, content, clock):
    path = tmp_path / "progress.db"
    first, second = _open(path, content, clock), _open(path, content, clock)
    try:
        first.settings.set("new_per_day", 2)
        q1, q2 = first.review_queue(), second.review_queue()
        now = clock.now()
        item = q1.next(now)
        q1.rate(item, GOOD, now)
        item = q2.next(now)
        q2.rate(item, GOOD, now)  # two introduced today, one by each
        assert not isinstance(q1.next(now), NewItem) and not isinstance(q2.next(now), NewItem)
    finally:
        first.close()
        second.close()


def test_undo_still_puts_the_card_back_in_front(tmp_path, content, clock):
    course = _open(tmp_path / "p.db", content, clock)
    try:
        queue = course.review_queue()
        now = clock.now()
        item = queue.next(now)
        queue.rate(item, GOOD, now)
        assert queue.undo(now + 1) == item.item_id
        assert queue.next(now + 2) == item
    finally:
        course.close()
