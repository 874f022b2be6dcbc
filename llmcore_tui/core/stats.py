"""Learning statistics: what the review history says about the learner's memory.

Pure functions over a :class:`~llmcore_tui.core.course.Course` (its store, settings and
clock); no UI imports. They are used by the Stats screen, the ``stats`` command and the
technical brief.

Conventions shared by every function here:

- **Valid reviews.** ``reviews`` is append-only. An undo is a row with ``rating`` NULL and
  ``undoes`` = the id of the review it takes back. A review counts when its ``rating`` is not
  NULL and no row undoes it; undo rows themselves never count.
- **Study days.** A timestamp belongs to the study day given by the course's
  ``day_start_hour`` and ``timezone`` settings (:func:`llmcore_tui.core.clock.study_date`):
  with a 4 am start, a review at 02:00 counts for the day before. Days are bucketed in SQL
  against per-day ``[start, end)`` bounds computed in Python, so daylight-saving days (23 or
  25 hours long) are handled exactly.
- **Passed / failed.** Again (1) is a failure; Hard (2), Good (3) and Easy (4) are passes,
  as in Anki.
- **Speed.** Each function is one or two SQL aggregate queries (the per-day ones walk the
  ``reviews(reviewed_ts)`` / ``srs_items(due_ts)`` indexes once per day). Retrievability is
  computed in Python from the ``stability`` and ``last_review_ts`` columns (no JSON parsing),
  one float expression per introduced item.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from llmcore_tui.core import roadmap
from llmcore_tui.core.clock import day_bounds

if TYPE_CHECKING:
    from llmcore_tui.core.course import Course

REVIEW_STATE = 2  # fsrs.State.Review: the item has graduated from its (re)learning steps

# The ids of undo rows' targets: a non-correlated subquery, built once per statement.
_UNDONE = "(SELECT undoes FROM reviews WHERE undoes IS NOT NULL)"
_VALID = f"r.rating IS NOT NULL AND r.id NOT IN {_UNDONE}"


# -- results ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Retention:
    """``passed`` of ``total`` reviews passed, against the desired retention setting."""

    passed: int
    total: int
    desired: float

    @property
    def rate(self) -> float | None:
        """passed / total, or None when there is nothing to measure."""
        return self.passed / self.total if self.total else None

    @property
    def gap(self) -> float | None:
        """rate - desired (negative: remembering less than the scheduler aims for)."""
        return None if self.rate is None else self.rate - self.desired


@dataclass(frozen=True)
class DayRetention:
    """First-review retention of one study day."""

    day: date
    passed: int
    total: int

    @property
    def rate(self) -> float | None:
        return self.passed / self.total if self.total else None


@dataclass(frozen=True)
class ModuleMastery:
    """How well one module is known.

    ``cards_total``: cards in the deck; ``introduced``: cards seen at least once;
    ``mean_retrievability``: FSRS probability of recall *now*, averaged over the introduced
    cards (0.0 when none); ``reviews``: valid reviews of the module's cards; ``lapses``: times
    a card in Review state was forgotten (rated Again); ``quiz_attempts`` and
    ``quiz_accuracy``: answers given in quizzes of the module and the share fully correct
    (None when no attempts).
    """

    module: str
    day: int
    cards_total: int
    introduced: int
    mean_retrievability: float
    reviews: int
    lapses: int
    quiz_attempts: int
    quiz_accuracy: float | None


@dataclass(frozen=True)
class WeakCard:
    """An introduced card, with its FSRS retrievability now, lapses and difficulty (1-10)."""

    item_id: str
    module: str
    retrievability: float
    lapses: int
    difficulty: float


# -- helpers ----------------------------------------------------------------------------------

def _day_settings(course: Course) -> tuple[int, Any]:
    return course.settings.get("day_start_hour"), course.tz


def _ranges(course: Course, first: date, count: int) -> list[tuple[date, float, float]]:
    """``count`` consecutive study days from ``first``, each with its [start, end) timestamps."""
    hour, tz = _day_settings(course)
    out = []
    for i in range(count):
        day = first + timedelta(days=i)
        lo, hi = day_bounds(day, hour, tz)
        out.append((day, lo, hi))
    return out


def _days_cte(ranges: list[tuple[date, float, float]]) -> str:
    """``days(i, lo, hi)`` as a VALUES list. The bounds are floats we computed (repr() is exact
    and cannot inject anything); inlining them avoids SQLite's bound-parameter limit."""
    rows = ", ".join(f"({i}, {lo!r}, {hi!r})" for i, (_, lo, hi) in enumerate(ranges))
    return f"days(i, lo, hi) AS (VALUES {rows})"


def _since_ts(course: Course, since: date | float | None) -> float:
    if since is None:
        return -math.inf
    if isinstance(since, date):
        hour, tz = _day_settings(course)
        return day_bounds(since, hour, tz)[0]
    return float(since)


def _retrievability_fn(course: Course):
    """R(now) of an item from its stability and last review, exactly as
    ``fsrs.Scheduler.get_card_retrievability`` computes it (whole elapsed days)."""
    scheduler = course.srs.scheduler
    decay, factor = scheduler._DECAY, scheduler._FACTOR  # noqa: SLF001 - FSRS-6 curve constants

    def retrievability(stability: float | None, last_ts: float | None, now: float) -> float:
        if stability is None or last_ts is None or stability <= 0:
            return 0.0
        elapsed_days = max(0, math.floor((now - last_ts) / 86400))
        return (1 + factor * elapsed_days / stability) ** decay

    return retrievability


# -- the statistics ---------------------------------------------------------------------------

def review_heatmap(course: Course, days: int = 84, today: date | None = None) -> dict[date, int]:
    """Valid reviews per study day for the ``days`` study days ending ``today`` (default: the
    course's current study day), oldest first; days without reviews map to 0."""
    if days <= 0:
        return {}
    today = today or course.study_date()
    ranges = _ranges(course, today - timedelta(days=days - 1), days)
    rows = course.store.conn.execute(
        f"WITH {_days_cte(ranges)} "
        f"SELECT days.i, count(*) FROM days JOIN reviews r ON r.reviewed_ts >= days.lo AND r.reviewed_ts < days.hi "
        f"WHERE {_VALID} GROUP BY days.i"
    ).fetchall()
    counts = dict(rows)
    return {day: int(counts.get(i, 0)) for i, (day, _, _) in enumerate(ranges)}


def true_retention(course: Course, since: date | float | None = None) -> Retention:
    """Anki's "true retention": among valid reviews of items that were in the FSRS *Review*
    state when reviewed (``state_before.state == 2``: young and mature review cards, not new
    cards and not (re)learning steps), the share rated Hard, Good or Easy; Again fails.

    ``since``: a study date (from its start) or a timestamp; None means all history.
    """
    lo = _since_ts(course, since)
    passed, total = course.store.conn.execute(
        f"SELECT coalesce(sum(r.rating > 1), 0), count(*) FROM reviews r "
        f"WHERE r.reviewed_ts >= ? AND r.state_before IS NOT NULL "
        f"AND json_extract(r.state_before, '$.state') = {REVIEW_STATE} AND {_VALID}",
        (lo,),
    ).fetchone()
    return Retention(int(passed), int(total), float(course.settings.get("desired_retention")))


def first_review_retention(course: Course, days: int = 30, today: date | None = None,
                           include_new: bool = True) -> list[DayRetention]:
    """Per study day: passed first reviews / all first reviews of the day.

    For each study day and each item reviewed that day, only the item's *first* valid review
    of the day counts (the earliest ``reviewed_ts``; the lower id breaks ties): it passes when
    rated Hard/Good/Easy, fails when rated Again. Later same-day reviews (learning steps,
    relearning after a lapse) are ignored, so a failed card counts once, as failed.

    ``include_new=False`` leaves out an item's very first review ever (the one that
    introduced it, ``state_before`` NULL), which measures prior knowledge, not retention.
    Returns the ``days`` study days ending ``today``, oldest first, including empty days.
    """
    if days <= 0:
        return []
    today = today or course.study_date()
    ranges = _ranges(course, today - timedelta(days=days - 1), days)
    new_filter = "" if include_new else " AND r.state_before IS NOT NULL"
    rows = course.store.conn.execute(
        f"WITH {_days_cte(ranges)}, "
        f"firsts AS (SELECT days.i AS i, r.rating AS rating, row_number() OVER "
        f"(PARTITION BY days.i, r.item_id ORDER BY r.reviewed_ts, r.id) AS k "
        f"FROM days JOIN reviews r ON r.reviewed_ts >= days.lo AND r.reviewed_ts < days.hi "
        f"WHERE {_VALID}) "
        f"SELECT i, coalesce(sum(rating > 1), 0), count(*) FROM firsts WHERE k = 1 GROUP BY i"
    ).fetchall()
    by_day = {i: (int(p), int(n)) for i, p, n in rows}
    return [DayRetention(day, *by_day.get(i, (0, 0))) for i, (day, _, _) in enumerate(ranges)]


def first_review_retention_total(course: Course, days: int = 30, today: date | None = None,
                                 include_new: bool = True) -> Retention:
    """:func:`first_review_retention` summed over its days, against the desired retention."""
    per_day = first_review_retention(course, days, today, include_new)
    return Retention(sum(d.passed for d in per_day), sum(d.total for d in per_day),
                     float(course.settings.get("desired_retention")))


def forecast(course: Course, days: int = 14, today: date | None = None) -> list[tuple[date, int]]:
    """Items (cards and missed quiz questions) falling due on each of the next ``days`` study
    days, today first. Today's count includes everything overdue and everything due before
    today's study day ends (learning steps too), i.e. ``due_ts < end of today``."""
    if days <= 0:
        return []
    today = today or course.study_date()
    ranges = _ranges(course, today, days)
    ranges[0] = (ranges[0][0], -1e300, ranges[0][2])  # overdue counts today
    rows = course.store.conn.execute(
        f"WITH {_days_cte(ranges)} "
        f"SELECT days.i, count(*) FROM days JOIN srs_items s ON s.due_ts >= days.lo AND s.due_ts < days.hi "
        f"GROUP BY days.i"
    ).fetchall()
    counts = dict(rows)
    return [(day, int(counts.get(i, 0))) for i, (day, _, _) in enumerate(ranges)]


def module_mastery(course: Course, now: float | None = None) -> list[ModuleMastery]:
    """One :class:`ModuleMastery` per module, in roadmap order, for every module that has cards
    in the deck or any progress (modules not in the roadmap follow, by name)."""
    now = course.now() if now is None else now
    conn = course.store.conn
    r_of = _retrievability_fn(course)
    intro: dict[str, list[float]] = {}  # module -> [introduced, sum R, lapses]
    item_day: dict[str, int] = {}
    for module, day, stability, last_ts, lapses in conn.execute(
            "SELECT module, day, stability, last_review_ts, lapses FROM srs_items WHERE kind = 'card'"):
        acc = intro.setdefault(module, [0, 0.0, 0])
        acc[0] += 1
        acc[1] += r_of(stability, last_ts, now)
        acc[2] += lapses or 0
        item_day.setdefault(module, day)
    reviews = dict(conn.execute(
        f"SELECT s.module, sum(c.n) FROM (SELECT r.item_id, count(*) AS n FROM reviews r WHERE {_VALID} "
        f"GROUP BY r.item_id) c JOIN srs_items s ON s.item_id = c.item_id WHERE s.kind = 'card' GROUP BY s.module"
    ).fetchall())
    quiz = {m: (int(n), int(ok or 0)) for m, n, ok in conn.execute(
        "SELECT module, count(*), sum(correct) FROM quiz_attempts GROUP BY module")}
    totals = course.summary.totals
    modules = [d.module for d in roadmap.DAYS]
    extra = sorted((set(totals) | set(intro) | set(quiz)) - set(modules))
    out = []
    for module in modules + extra:
        total = int(totals.get(module, 0))
        n, r_sum, lapses = intro.get(module, (0, 0.0, 0))
        attempts, correct = quiz.get(module, (0, 0))
        if not (total or n or attempts):
            continue
        out.append(ModuleMastery(
            module=module,
            day=roadmap.MODULE_DAYS.get(module, item_day.get(module, 0)),
            cards_total=total,
            introduced=int(n),
            mean_retrievability=r_sum / n if n else 0.0,
            reviews=int(reviews.get(module, 0) or 0),
            lapses=int(lapses),
            quiz_attempts=attempts,
            quiz_accuracy=correct / attempts if attempts else None,
        ))
    return out


def weakest_cards(course: Course, n: int = 10, now: float | None = None,
                  kinds: Iterable[str] = ("card",)) -> list[WeakCard]:
    """The ``n`` introduced items most at risk: lowest retrievability now first; ties broken
    by more lapses, then higher difficulty, then id. ``kinds`` may add ``"quiz"`` items."""
    now = course.now() if now is None else now
    r_of = _retrievability_fn(course)
    kinds = tuple(kinds)
    marks = ",".join("?" * len(kinds))
    cards = (
        WeakCard(item_id, module, r_of(stability, last_ts, now), int(lapses or 0), float(difficulty or 0.0))
        for item_id, module, stability, last_ts, lapses, difficulty in course.store.conn.execute(
            f"SELECT item_id, module, stability, last_review_ts, lapses, difficulty FROM srs_items "
            f"WHERE kind IN ({marks})", kinds)
    )
    return heapq.nsmallest(n, cards, key=lambda c: (c.retrievability, -c.lapses, -c.difficulty, c.item_id))


__all__ = [
    "Retention", "DayRetention", "ModuleMastery", "WeakCard", "review_heatmap", "true_retention",
    "first_review_retention", "first_review_retention_total", "forecast", "module_mastery", "weakest_cards",
]
