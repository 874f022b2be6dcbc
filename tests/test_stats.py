"""Learning statistics against a hand-built review history with known times and ratings.

The course's clock is fixed at 2026-03-02 10:00 UTC (a Monday), time zone UTC, study days
starting at 04:00: study day 2026-03-02 runs from 03-02 04:00 to 03-03 04:00 UTC.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest

from llmcore_tui.core import stats
from llmcore_tui.core.srs import _COLUMNS
from tests.conftest import FIXED_NOW

AGAIN, HARD, GOOD, EASY = 1, 2, 3, 4
NEW, LEARNING, REVIEW, RELEARNING = None, 1, 2, 3


def ts(month: int, day: int, hour: int, minute: int = 0, tz=timezone.utc) -> float:
    return datetime(2026, month, day, hour, minute, tzinfo=tz).timestamp()


def fsrs_json(stability: float, difficulty: float, last: float, due: float, state: int) -> str:
    import fsrs

    card = fsrs.Card(card_id=1, state=fsrs.State(state), step=None if state == REVIEW else 0, stability=stability,
                     difficulty=difficulty, due=datetime.fromtimestamp(due, timezone.utc),
                     last_review=datetime.fromtimestamp(last, timezone.utc))
    return json.dumps(card.to_dict())


def add_item(store, item_id, module, day, due, *, kind="card", state=REVIEW, stability=10.0, difficulty=5.0,
             reps=1, lapses=0, last=None):
    row = {"item_id": item_id, "kind": kind, "module": module, "day": day, "due_ts": due, "state": state,
           "stability": stability, "difficulty": difficulty, "reps": reps, "lapses": lapses,
           "fsrs_json": fsrs_json(stability, difficulty, last, due, state), "introduced_ts": ts(2, 1, 12),
           "last_review_ts": last}
    with store.transaction() as conn:
        conn.execute(f"INSERT INTO srs_items({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                     tuple(row[c] for c in _COLUMNS))


def state_json(item_id: str, state: int, compact: bool = False) -> str:
    """A ``state_before`` as Srs writes it: the srs_items row, flat, in column order."""
    row = {c: None for c in _COLUMNS}
    row.update(item_id=item_id, kind="card", module="mdp", day=1, due_ts=0.0, state=state, stability=3.0,
               difficulty=5.0, reps=2, lapses=0, introduced_ts=0.0, last_review_ts=0.0,
               fsrs_json=json.dumps({"card_id": 1, "state": 1 if state == 2 else 2, "step": 0}))
    return json.dumps(row, separators=(",", ":")) if compact else json.dumps(row)


def review(store, item_id: str, rating: int, when: float, before: int | None, compact: bool = False) -> int:
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO reviews(item_id, rating, reviewed_ts, duration_ms, state_before, state_after) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (item_id, rating, when, 4000, None if before is None else state_json(item_id, before, compact), "{}"))
    return int(cursor.lastrowid)


def undo(store, review_id: int, when: float) -> None:
    with store.transaction() as conn:
        item = conn.execute("SELECT item_id FROM reviews WHERE id = ?", (review_id,)).fetchone()[0]
        conn.execute("INSERT INTO reviews(item_id, reviewed_ts, undoes) VALUES (?, ?, ?)", (item, when, review_id))


@pytest.fixture
def history(course):
    """Items a=mdp-one, b=mdp-two, c=mdp-three, d=td-one, f=td-two and a quiz item e, with
    the reviews below (the comment says how each counts for first-review retention)."""
    s = course.store
    # 2026-02-20: outside the short windows
    review(s, "mdp-one", GOOD, ts(2, 20, 12), REVIEW, compact=True)  # compact JSON: the json_extract path
    # study day 02-28
    review(s, "mdp-one", GOOD, ts(2, 28, 9), REVIEW)            # first of a: pass
    review(s, "mdp-one", AGAIN, ts(2, 28, 9, 10), REVIEW)       # second of a: ignored
    review(s, "mdp-two", AGAIN, ts(2, 28, 10), REVIEW)          # first of b: fail
    review(s, "mdp-two", GOOD, ts(2, 28, 10, 10), RELEARNING)   # ignored
    review(s, "mdp-three", GOOD, ts(3, 1, 3, 30), REVIEW)       # 03:30 on 03-01 is still 02-28: pass
    # study day 03-01
    undone = review(s, "mdp-one", AGAIN, ts(3, 1, 5), REVIEW)   # undone: does not count at all
    undo(s, undone, ts(3, 1, 5, 1))
    review(s, "mdp-one", GOOD, ts(3, 1, 5, 2), REVIEW)          # so this is a's first of the day: pass
    review(s, "mdp-two", HARD, ts(3, 1, 12), REVIEW)            # pass (Hard passes)
    review(s, "td-one", GOOD, ts(3, 1, 13), NEW)                # introduced today: pass (only with include_new)
    # study day 03-02 (today; the clock says 10:00)
    review(s, "mdp-three", AGAIN, ts(3, 2, 6), REVIEW)          # fail
    review(s, "mdp-three", GOOD, ts(3, 2, 6, 10), RELEARNING)   # ignored
    undone = review(s, "quiz:mdp-q1", EASY, ts(3, 2, 7), REVIEW)
    undo(s, undone, ts(3, 2, 7, 1))                             # e's only review of the day: e does not count
    review(s, "td-one", GOOD, ts(3, 2, 8), LEARNING)            # pass

    add_item(s, "mdp-one", "mdp", 1, ts(2, 25, 12), reps=4, lapses=1, stability=10.0, difficulty=5.0,
             last=ts(3, 1, 5, 2))                                # overdue -> today; 1 day elapsed
    add_item(s, "mdp-two", "mdp", 1, ts(3, 2, 20), reps=3, lapses=1, stability=2.0, difficulty=7.0,
             last=ts(3, 1, 12))                                  # later today
    add_item(s, "mdp-three", "mdp", 1, ts(3, 3, 3, 59), reps=3, lapses=1, stability=1.0, difficulty=8.0,
             state=RELEARNING, last=ts(3, 2, 6, 10))             # 03:59 tomorrow is still today's study day
    add_item(s, "td-one", "td_learning", 2, ts(3, 3, 4), reps=2, stability=5.0, difficulty=4.0,
             state=LEARNING, last=ts(3, 2, 8))                   # tomorrow's first second
    add_item(s, "quiz:mdp-q1", "mdp", 1, ts(3, 5, 12), kind="quiz", reps=5, stability=30.0, difficulty=6.0,
             last=ts(2, 25, 10))                                 # in three days; 5 days elapsed
    add_item(s, "td-two", "td_learning", 2, ts(3, 20, 12), reps=1, stability=20.0, difficulty=6.0,
             last=ts(3, 1, 20))                                  # beyond the 14-day forecast
    with s.transaction() as conn:
        for correct in (1, 1, 0, 1):
            conn.execute("INSERT INTO quiz_attempts(sitting, question_id, module, day, answer, correct, score, "
                         "attempted_ts) VALUES ('s1', 'mdp-q1', 'mdp', 1, 'x', ?, ?, ?)", (correct, correct, ts(3, 1, 15)))
    return course


# -- heatmap ----------------------------------------------------------------------------------

def test_heatmap_counts_valid_reviews_per_study_day(history):
    assert stats.review_heatmap(history, days=3) == {
        date(2026, 2, 28): 5,  # including 03:30 on 03-01, before the 4 am day start
        date(2026, 3, 1): 3,   # the undone review and the undo row do not count
        date(2026, 3, 2): 3,   # nor the undone quiz review and its undo
    }
    longer = stats.review_heatmap(history, days=14)
    assert len(longer) == 14 and list(longer)[0] == date(2026, 2, 17) and list(longer)[-1] == date(2026, 3, 2)
    assert longer[date(2026, 2, 20)] == 1 and sum(longer.values()) == 12


def test_heatmap_follows_the_day_start_hour(history):
    history.settings.set("day_start_hour", 3)  # now 03:30 belongs to 03-01
    counts = stats.review_heatmap(history, days=3)
    assert counts[date(2026, 2, 28)] == 4 and counts[date(2026, 3, 1)] == 4


def test_heatmap_study_days_across_a_daylight_saving_change(course):
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")  # clocks jump from 02:00 to 03:00 on 2026-03-08
    course.settings.set("timezone", "America/New_York")
    review(course.store, "mdp-one", GOOD, ts(3, 8, 3, 30, ny), REVIEW)  # before 4 am: still 03-07
    review(course.store, "mdp-one", GOOD, ts(3, 8, 4, 0, ny), REVIEW)   # 4 am EDT: 03-08 (08:00 UTC, not 09:00)
    review(course.store, "mdp-one", GOOD, ts(3, 9, 3, 59, ny), REVIEW)  # still 03-08 (a 23-hour study day)
    counts = stats.review_heatmap(course, days=3, today=date(2026, 3, 9))
    assert counts == {date(2026, 3, 7): 1, date(2026, 3, 8): 2, date(2026, 3, 9): 0}


# -- retention --------------------------------------------------------------------------------

def test_first_review_retention_counts_the_first_review_of_each_item_each_day(history):
    days = stats.first_review_retention(history, days=3)
    assert [(d.day, d.passed, d.total) for d in days] == [
        (date(2026, 2, 28), 2, 3),  # a pass, b fail, c pass; second reviews ignored
        (date(2026, 3, 1), 3, 3),   # a (its undone Again skipped), b Hard, d new
        (date(2026, 3, 2), 1, 2),   # c fail, d pass; e's only review was undone
    ]
    assert days[1].rate == 1.0 and days[2].rate == 0.5
    total = stats.first_review_retention_total(history, days=3)
    assert (total.passed, total.total, total.desired) == (6, 8, 0.9)
    assert total.rate == 0.75 and total.gap == pytest.approx(-0.15)


def test_first_review_retention_without_new_cards(history):
    days = stats.first_review_retention(history, days=3, include_new=False)
    assert [(d.passed, d.total) for d in days] == [(2, 3), (2, 2), (1, 2)]


def test_first_review_retention_reports_against_the_desired_retention_setting(history):
    history.settings.set("desired_retention", 0.85)
    assert stats.first_review_retention_total(history, days=3).desired == 0.85
    assert stats.true_retention(history).desired == 0.85


def test_true_retention_counts_reviews_of_cards_in_review_state(history):
    # Review-state reviews: 02-20 P; 02-28 a P, a F, b F, c P; 03-01 a P (the undone one excluded), b P;
    # 03-02 c F (e's undone review excluded); learning, relearning and new reviews never count
    everything = stats.true_retention(history)
    assert (everything.passed, everything.total) == (5, 8)
    since = stats.true_retention(history, since=date(2026, 3, 1))
    assert (since.passed, since.total) == (2, 3)
    assert stats.true_retention(history, since=ts(2, 28, 9, 30)) == stats.Retention(3, 5, 0.9)


def test_empty_history_gives_no_rate(course):
    assert stats.true_retention(course).rate is None
    assert stats.true_retention(course).gap is None
    assert all(d.total == 0 and d.rate is None for d in stats.first_review_retention(course, days=5))
    assert set(stats.review_heatmap(course, days=7).values()) == {0}


# -- forecast ---------------------------------------------------------------------------------

def test_forecast_buckets_by_study_day_with_overdue_today(history):
    days = stats.forecast(history, days=14)
    assert len(days) == 14 and days[0][0] == date(2026, 3, 2) and days[-1][0] == date(2026, 3, 15)
    counts = dict(days)
    assert counts[date(2026, 3, 2)] == 3  # overdue a, b later today, c at 03:59 tomorrow
    assert counts[date(2026, 3, 3)] == 1  # d at 04:00
    assert counts[date(2026, 3, 5)] == 1  # the quiz item
    assert sum(counts.values()) == 5      # td-two falls on 03-20, after the 14 days


# -- mastery and weakest cards ----------------------------------------------------------------

def test_module_mastery(history):
    srs = history.srs
    rows = {r["item_id"]: r for r in history.store.query("SELECT * FROM srs_items")}
    r_a = srs.retrievability(rows["mdp-one"], FIXED_NOW)
    assert r_a < 1.0
    assert srs.retrievability(rows["mdp-two"], FIXED_NOW) == 1.0
    mastery = {m.module: m for m in stats.module_mastery(history)}
    assert list(mastery)[:2] == ["mdp", "td_learning"]
    mdp = mastery["mdp"]
    assert (mdp.day, mdp.cards_total, mdp.introduced, mdp.reviews, mdp.lapses) == (1, 3, 3, 10, 3)
    assert mdp.mean_retrievability == pytest.approx((r_a + 1.0 + 1.0) / 3)
    assert mdp.quiz_attempts == 4 and mdp.quiz_accuracy == 0.75
    td = mastery["td_learning"]
    assert (td.cards_total, td.introduced, td.reviews, td.lapses, td.mean_retrievability) == (2, 2, 3, 0, 1.0)
    assert td.quiz_attempts == 0 and td.quiz_accuracy is None


def test_mastery_of_a_fresh_course(course):
    mastery = stats.module_mastery(course)
    assert [(m.module, m.cards_total, m.introduced, m.mean_retrievability, m.reviews) for m in mastery] == [
        ("mdp", 3, 0, 0.0, 0), ("td_learning", 2, 0, 0.0, 0)]


def test_retrievability_matches_fsrs(history):
    ctx = stats.Context.of(history)
    for row in history.store.query("SELECT * FROM srs_items"):
        for later in (0, 3 * 86400, 40 * 86400):
            mine = stats.retrievability(row["stability"], row["last_review_ts"], FIXED_NOW + later, ctx.decay, ctx.factor)
            assert mine == pytest.approx(history.srs.retrievability(row, FIXED_NOW + later), abs=1e-12)


def test_weakest_cards(history):
    weak = stats.weakest_cards(history, n=10)
    # a is the only card below R = 1; among the rest, more lapses, then higher difficulty first;
    # td-one (never forgotten, difficulty 4) has shown no weakness and is not listed
    assert [w.item_id for w in weak] == ["mdp-one", "mdp-three", "mdp-two", "td-two"]
    assert weak[0].module == "mdp" and weak[0].lapses == 1 and weak[0].difficulty == 5.0
    assert weak[0].retrievability == pytest.approx(history.srs.retrievability(
        history.store.query("SELECT * FROM srs_items WHERE item_id = 'mdp-one'")[0], FIXED_NOW))
    assert [w.item_id for w in stats.weakest_cards(history, n=2, kinds=("card", "quiz"))] == ["quiz:mdp-q1", "mdp-one"]
    later = stats.weakest_cards(history, n=1, now=FIXED_NOW + 30 * 86400)  # the least stable card fades fastest
    assert later[0].item_id == "mdp-three"


def test_python_fallback_matches_sql(history, monkeypatch):
    sql = (stats.module_mastery(history), stats.weakest_cards(history, n=10, kinds=("card", "quiz")))
    monkeypatch.setattr(stats, "_sql_math", lambda conn: False)
    python = (stats.module_mastery(history), stats.weakest_cards(history, n=10, kinds=("card", "quiz")))
    assert [m.module for m in python[0]] == [m.module for m in sql[0]]
    for a, b in zip(python[0], sql[0]):
        assert a.mean_retrievability == pytest.approx(b.mean_retrievability)
        assert (a.introduced, a.reviews, a.lapses, a.quiz_attempts) == (b.introduced, b.reviews, b.lapses, b.quiz_attempts)
    assert [w.item_id for w in python[1]] == [w.item_id for w in sql[1]]


def test_undo_through_srs_is_excluded(course):
    """The real Srs writes: rate two new cards, undo the second; only the first counts."""
    from llmcore_tui.core.srs import NewItem

    course.srs.rate(NewItem("mdp-one", "card", "mdp", 1), GOOD, FIXED_NOW)
    course.srs.rate(NewItem("mdp-two", "card", "mdp", 1), AGAIN, FIXED_NOW + 10)
    course.srs.undo(FIXED_NOW + 20)
    assert stats.review_heatmap(course, days=1) == {date(2026, 3, 2): 1}
    assert [(d.passed, d.total) for d in stats.first_review_retention(course, days=1)] == [(1, 1)]
    mdp = stats.module_mastery(course)[0]
    assert (mdp.introduced, mdp.reviews, mdp.mean_retrievability) == (1, 1, 1.0)


def test_report_bundles_everything(history):
    report = stats.report(history, heatmap_days=14, retention_days=3, first_review_days=3, forecast_days=14, weakest=2)
    assert report.today == date(2026, 3, 2)
    assert report.heatmap == stats.review_heatmap(history, days=14)
    assert (report.true_retention.passed, report.true_retention.total) == (4, 7)  # 02-28 .. 03-02
    assert (report.first_review_total.passed, report.first_review_total.total) == (6, 8)
    assert report.forecast == stats.forecast(history, 14)
    assert [w.item_id for w in report.weakest] == ["mdp-one", "mdp-three"]


def test_context_on_another_store(history):
    from llmcore_tui.core.store import Store

    other = Store(history.store.path)
    try:
        ctx = stats.Context.of(history, other)
        assert ctx.conn is other.conn and ctx.today == date(2026, 3, 2)
        assert stats.review_heatmap(ctx, days=3) == stats.review_heatmap(history, days=3)
    finally:
        other.close()


def test_format_report(history):
    text = "\n".join(stats.format_report(stats.report(history, heatmap_days=3, retention_days=3, first_review_days=3)))
    assert "true retention, last 3 days: 57.1% (4/7 reviews of cards in review), desired 90.0%" in text
    assert "first-review retention, last 3 days: 75.0% (6/8 first reviews of the day), desired 90.0%" in text
    assert "reviews: 11 in the last 3 days (3 active), today 3" in text
    assert "forecast, 14 days (overdue counted today): today 3, 03-03 1, 03-04 0, 03-05 1," in text
    assert "  1  mdp              3/3" in text and "4 answers, score 75.0%" in text
    assert text.splitlines()[-1].startswith("weakest: mdp-one (recall ")


def test_stats_command_appends_the_statistics(history):
    from typer.testing import CliRunner

    from llmcore_tui.cli import app

    path = history.store.path
    history.close()
    result = CliRunner().invoke(app, ["--db", str(path), "stats"])
    assert result.exit_code == 0, result.output
    assert "database:" in result.output and "next:" in result.output  # the existing lines stay
    assert "true retention, last 30 days:" in result.output
    assert "forecast, 14 days (overdue counted today): today " in result.output
    assert any(line.split()[:3] == ["1", "mdp", "3/3"] for line in result.output.splitlines())


def test_quiz_score_is_the_quiz_screens_figure_and_the_review_quiz_sits_on_day_13(course):
    """One definition of a quiz score: the mean answer score, partial credit in part; computed
    here from the attempts and by the module mastery, the two must agree."""
    with course.store.transaction() as conn:
        for i, (module, score) in enumerate([("mdp", 1.0), ("mdp", 0.5), ("mdp", 0.0), ("review", 1.0)]):
            conn.execute("INSERT INTO quiz_attempts(sitting, question_id, module, day, answer, correct, score, "
                         "attempted_ts) VALUES ('s', ?, ?, 1, 'x', ?, ?, ?)", (f"q{i}", module, int(score == 1.0), score, FIXED_NOW))
    mastery = {m.module: m for m in stats.module_mastery(course)}
    scores = [r[0] for r in course.store.conn.execute("SELECT score FROM quiz_attempts WHERE module = 'mdp'")]
    assert mastery["mdp"].quiz_accuracy == pytest.approx(sum(scores) / len(scores)) == pytest.approx(0.5)
    assert mastery["review"].day == 13
