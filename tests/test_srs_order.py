"""The answer buttons stay in order after fuzz, show what a rating does, and reviews are due by study day."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmcore_tui.core.clock import day_bounds, study_date
from llmcore_tui.core.srs import AGAIN, EASY, GOOD, HARD, NewItem, Srs
from llmcore_tui.core.store import Store

T0 = datetime(2026, 1, 5, 15, 30, tzinfo=timezone.utc).timestamp()
UTC = timezone.utc


def four_am_day_start(ts: float, days: int) -> float:
    from datetime import timedelta

    return day_bounds(study_date(ts, 4, UTC) + timedelta(days=days), 4, UTC)[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ratings=st.lists(st.sampled_from([AGAIN, HARD, GOOD, EASY]), min_size=1, max_size=12),
       gaps=st.lists(st.floats(min_value=0.2, max_value=3.0), min_size=12, max_size=12),
       card=st.sampled_from(["mdp-v-and-q", "ppo-clip-worked-cases", "grpo-no-critic", "x"]))
def test_buttons_are_ordered_after_fuzz_and_preview_is_what_rating_does(tmp_path_factory, ratings, gaps, card):
    store = Store(tmp_path_factory.mktemp("srs") / "p.db")
    fuzzed = Srs(store, fuzz=True, day_start=four_am_day_start)
    plain = Srs(Store(tmp_path_factory.mktemp("plain") / "p.db"), fuzz=False, day_start=four_am_day_start)
    now = T0
    item: NewItem | str = NewItem(card, "card", "mdp", 1)
    plain_item: NewItem | str = item
    for rating, gap in zip(ratings, gaps):
        preview = fuzzed.preview(card, now)
        unfuzzed = plain.preview(card, now)
        order = [AGAIN, HARD, GOOD, EASY]
        for lower, higher in zip(order, order[1:]):
            assert preview[lower] <= preview[higher], (preview, unfuzzed)
            if unfuzzed[higher] > unfuzzed[lower] and unfuzzed[lower] >= 86_400:
                assert preview[higher] > preview[lower], (preview, unfuzzed)
        result = fuzzed.rate(item, rating, now)
        plain.rate(plain_item, rating, now)
        assert result.interval_s == preview[rating]  # the button showed what the rating did
        item = plain_item = card
        # next session: after the due time of the fuzzed card, plus some of the gap
        now = max(result.due_ts, now) + gap * 3600
    store.close()


def test_a_review_card_is_due_from_the_start_of_its_study_day(tmp_path):
    srs = Srs(Store(tmp_path / "p.db"), fuzz=False, day_start=four_am_day_start)
    item = NewItem("mdp-one", "card", "mdp", 1)
    first = srs.rate(item, GOOD, T0)  # a learning step: minutes, not days
    assert first.due_ts == T0 + 600
    second = srs.rate("mdp-one", GOOD, first.due_ts)  # graduates: 2 days
    assert second.interval_s == 2 * 86_400
    due = datetime.fromtimestamp(second.due_ts, UTC)
    assert (due.hour, due.minute) == (4, 0)  # from the day-start hour, not the minute of the rating
    assert due.date() == datetime.fromtimestamp(first.due_ts, UTC).date().replace(day=7)
