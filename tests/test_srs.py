"""The FSRS wrapper: golden intervals, previews, append-only history and undo, the daily queue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import fsrs
import pytest

from llmcore_tui.core.srs import AGAIN, EASY, GOOD, HARD, NewItem, ReviewQueue, Srs, format_interval
from llmcore_tui.core.store import Store

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
ITEM = NewItem("mdp-one", "card", "mdp", 1)


@pytest.fixture
def srs(tmp_path):
    store = Store(tmp_path / "p.db")
    yield Srs(store, fuzz=False)
    store.close()


def test_good_four_times_from_new_gives_the_published_intervals(srs):
    expected = [timedelta(minutes=10), timedelta(days=2), timedelta(days=11), timedelta(days=46)]
    now = T0
    intervals = []
    for i in range(4):
        result = srs.rate(ITEM if i == 0 else ITEM.item_id, GOOD, now)
        intervals.append(timedelta(seconds=round(result.interval_s)))
        now = result.due_ts
    assert intervals == expected


def test_intervals_match_the_package_itself(srs):
    scheduler = fsrs.Scheduler(enable_fuzzing=False)
    card = fsrs.Card()
    now = T0
    for rating in (GOOD, HARD, GOOD, AGAIN, GOOD, EASY):
        when = datetime.fromtimestamp(now, timezone.utc)
        card, _ = scheduler.review_card(card, fsrs.Rating(rating), review_datetime=when)
        ours = srs.rate(ITEM if srs.row(ITEM.item_id) is None else ITEM.item_id, rating, now)
        assert ours.due_ts == pytest.approx(card.due.timestamp())
        now = card.due.timestamp()


def test_preview_shows_what_each_rating_would_do(srs):
    preview = srs.preview(ITEM.item_id, T0)
    assert preview[AGAIN] == 60 and preview[GOOD] == 600
    assert preview[AGAIN] < preview[HARD] <= preview[GOOD] < preview[EASY]
    result = srs.rate(ITEM, EASY, T0)
    assert result.interval_s == pytest.approx(preview[EASY])


def test_history_is_append_only_and_undo_restores_state(srs):
    srs.rate(ITEM, GOOD, T0)
    after_first = srs.row(ITEM.item_id)
    srs.rate(ITEM.item_id, GOOD, T0 + 600)
    assert srs.undo(T0 + 700) == ITEM.item_id
    assert srs.row(ITEM.item_id) == after_first
    assert srs.undo(T0 + 800) == ITEM.item_id
    assert srs.row(ITEM.item_id) is None  # back to new
    assert srs.undo(T0 + 900) is None
    rows = srs.store.query("SELECT rating, undoes FROM reviews ORDER BY id")
    assert rows == [{"rating": 3, "undoes": None}, {"rating": 3, "undoes": None},
                    {"rating": None, "undoes": 2}, {"rating": None, "undoes": 1}]


def test_bad_rating_is_rejected(srs):
    with pytest.raises(ValueError):
        srs.rate(ITEM, 5, T0)
    assert srs.store.scalar("SELECT count(*) FROM reviews") == 0


def test_queue_serves_due_then_new_within_the_daily_limit(srs):
    items = [NewItem(f"c{i}", "card", "mdp", 1) for i in range(5)]
    queue = ReviewQueue(srs, list(items), new_left=2)
    first = queue.next(T0)
    assert first == items[0]
    queue.rate(first, GOOD, T0)  # learning: due in 10 minutes
    second = queue.next(T0)
    assert second == items[1]
    queue.rate(second, EASY, T0)
    # new limit reached: the learning card is shown early (learn-ahead), not a third new card
    nxt = queue.next(T0 + 60)
    assert isinstance(nxt, dict) and nxt["item_id"] == "c0"
    # once due, a review comes before anything new
    queue.new_left = 10
    assert queue.next(T0 + 601)["item_id"] == "c0"


def test_undo_of_an_introduction_puts_the_card_back_in_the_queue(srs):
    items = [NewItem("a", "card", "mdp", 1), NewItem("b", "card", "mdp", 1)]
    queue = ReviewQueue(srs, list(items), new_left=1)
    queue.rate(queue.next(T0), GOOD, T0)
    assert queue.new_left == 0
    assert queue.undo(T0 + 1) == "a"
    assert queue.new_left == 1 and queue.next(T0 + 2) == items[0]


@pytest.mark.parametrize("seconds, text", [(30, "<1m"), (600, "10m"), (7200, "2h"), (2 * 86400, "2d"),
                                           (46 * 86400, "1.5mo"), (800 * 86400, "2.2y")])
def test_format_interval(seconds, text):
    assert format_interval(seconds) == text


def test_the_scheduler_uses_the_stored_fit_and_reset_returns_to_the_defaults(tmp_path):
    from llmcore_tui.core.srs import StoredParameters, store_parameters, stored_parameters

    fitted = list(fsrs.scheduler.DEFAULT_PARAMETERS)
    fitted[3] = 3.0  # a learner for whom a first Easy holds 3 days, not 8.3
    with Store(tmp_path / "p.db") as store:
        assert Srs(store, fuzz=False).preview(ITEM.item_id, T0)[EASY] == 8 * 86400  # Easy on a new card: w3 days
        store_parameters(store, StoredParameters(tuple(fitted), T0, 900, 700))
        assert stored_parameters(store) == StoredParameters(tuple(fitted), T0, 900, 700)
        srs = Srs(store, fuzz=False)
        assert list(srs.scheduler.parameters) == fitted
        assert srs.preview(ITEM.item_id, T0)[EASY] == 3 * 86400
        store_parameters(store, None)
        srs.use_parameters()  # what the Stats screen calls after switching
        assert srs.scheduler.parameters == fsrs.scheduler.DEFAULT_PARAMETERS
        assert srs.preview(ITEM.item_id, T0)[EASY] == 8 * 86400


def test_a_stored_value_of_another_shape_means_the_defaults(tmp_path):
    from llmcore_tui.core.srs import PARAMETERS_KEY

    with Store(tmp_path / "p.db") as store:
        for value in ({"parameters": [1.0, 2.0], "fitted_ts": T0, "reviews": 1, "cross_day": 1}, "junk", 3):
            store.set_setting(PARAMETERS_KEY, value)
            assert Srs(store).scheduler.parameters == fsrs.scheduler.DEFAULT_PARAMETERS
