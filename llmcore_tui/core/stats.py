"""Learning statistics: what the review history says about the learner's memory.

Pure functions over a :class:`~llmcore_tui.core.course.Course`, or over a :class:`Context`
(a store plus the settings the statistics need, e.g. on a worker thread's own connection);
no UI imports. Used by the Stats screen, the ``stats`` command and the technical brief.

Conventions shared by every function here:

- **Valid reviews.** ``reviews`` is append-only. An undo is a row with ``rating`` NULL and
  ``undoes`` = the id of the review it takes back. A review counts when its ``rating`` is not
  NULL and no row undoes it; undo rows themselves never count.
- **Study days.** A timestamp belongs to the study day given by the ``day_start_hour`` and
  ``timezone`` settings (:func:`llmcore_tui.core.clock.study_date`): with a 4 am start, a
  review at 02:00 counts for the day before. Days are bucketed in SQL against per-day
  ``[start, end)`` bounds computed in Python, so daylight-saving days (23 or 25 hours long)
  are exact.
- **Passed / failed.** Again (1) fails; Hard (2), Good (3) and Easy (4) pass, as in Anki.
- **Speed** (500k reviews must stay interactive). Each function is one or two SQL aggregate
  queries; nothing loops over reviews in Python.

  * :func:`review_heatmap` and :func:`forecast` count each day's range in an index
    (``reviews(reviewed_ts)``, ``srs_items(due_ts)``) without reading rows or sorting; the
    heatmap then subtracts the undo rows and the reviews they took back (fetched by id).
  * :func:`first_review_retention` and :func:`true_retention` read the reviews of their
    window only (through the ``reviewed_ts`` index).
  * Undo rows are found through the schema's partial index on ``reviews(undoes)``, which
    holds only the undo rows.
  * :func:`module_mastery` and :func:`weakest_cards` read ``srs_items`` only, never the
    history: a module's review count is the sum of its items' ``reps``, which
    :class:`~llmcore_tui.core.srs.Srs` keeps equal to the ratings in effect (+1 per rating,
    restored by undo). Retrievability is computed in SQL from the ``stability`` and
    ``last_review_ts`` columns (no JSON) when SQLite has its math functions, else in Python.
"""

from __future__ import annotations

import bisect
import heapq
import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from llmcore_tui.core import roadmap
from llmcore_tui.core.clock import day_bounds, local_zone, study_date

if TYPE_CHECKING:
    from llmcore_tui.core.course import Course
    from llmcore_tui.core.store import Store

REVIEW_STATE = 2  # fsrs.State.Review: the item has graduated from its (re)learning steps


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

    ``cards_total``: cards of the module in the deck; ``introduced``: cards seen at least once;
    ``mean_retrievability``: FSRS probability of recall *now*, averaged over the introduced
    cards (0.0 when none); ``reviews``: ratings in effect of the module's cards (undone ones
    excluded); ``lapses``: times a card in Review state was forgotten (rated Again);
    ``quiz_attempts`` and ``quiz_accuracy``: answers given in the module's quizzes and their
    mean score, partly right answers counting in part — the figure the Quiz screen shows for a
    sitting (None when no attempts).
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


@dataclass(frozen=True)
class Context:
    """What the statistics read: a store and the settings that shape them, fixed at one moment.

    :meth:`of` builds it from a course, optionally over another :class:`Store` on the same
    database (a worker thread's own connection): settings are then read through that store."""

    conn: sqlite3.Connection
    now: float
    today: date
    day_start_hour: int
    tz: tzinfo
    desired_retention: float
    decay: float  # the FSRS-6 forgetting curve: R = (1 + factor * days / S) ** decay
    factor: float
    totals: dict[str, int] = field(default_factory=dict)  # module -> cards in the deck

    @classmethod
    def of(cls, course: Course, store: Store | None = None, now: float | None = None) -> Context:
        from llmcore_tui.core.settings import Settings

        settings = Settings(store) if store is not None else course.settings
        hour = int(settings.get("day_start_hour"))
        tz = local_zone(settings.get("timezone"))
        now = course.now() if now is None else now
        scheduler = course.srs.scheduler
        return cls(
            conn=(store or course.store).conn, now=now, today=study_date(now, hour, tz), day_start_hour=hour, tz=tz,
            desired_retention=float(settings.get("desired_retention")),
            decay=float(scheduler._DECAY), factor=float(scheduler._FACTOR),  # noqa: SLF001 - FSRS-6 curve constants
            totals=dict(course.summary.totals),
        )

    def ranges(self, first: date, count: int) -> list[tuple[date, float, float]]:
        """``count`` consecutive study days from ``first``, each with its [start, end) timestamps."""
        out = []
        for i in range(count):
            day = first + timedelta(days=i)
            out.append((day, *day_bounds(day, self.day_start_hour, self.tz)))
        return out


def _ctx(source: Course | Context, now: float | None = None) -> Context:
    if isinstance(source, Context):
        return source if now is None else replace(source, now=now)
    return Context.of(source, now=now)


# -- SQL helpers ------------------------------------------------------------------------------

def _days_cte(ranges: list[tuple[date, float, float]]) -> str:
    """``days(i, lo, hi)`` as a VALUES list. The bounds are floats we computed (repr() is exact
    and cannot inject anything); inlining them avoids SQLite's bound-parameter limit."""
    rows = ", ".join(f"({i}, {lo!r}, {hi!r})" for i, (_, lo, hi) in enumerate(ranges))
    return f"days(i, lo, hi) AS (VALUES {rows})"


def review_in_effect_sql() -> str:
    """SQL: review ``r`` is a rating still in effect (not an undo row, not undone). The undone ids
    come from a non-correlated subquery, evaluated once per statement."""
    return "r.rating IS NOT NULL AND r.id NOT IN (SELECT u.undoes FROM reviews u WHERE u.undoes IS NOT NULL)"


def _is_review_state(column: str) -> str:
    """SQL: the JSON object in ``column`` has ``state`` = Review. Srs writes an ``srs_items``
    row there with ``json.dumps``: flat, keys in column order (``state`` then ``stability``),
    ``": "`` and ``", "`` separators. For that format a substring test answers without parsing
    the JSON (about 4x faster over a long history): inside a JSON string a quote is escaped,
    so ``"state": `` can only be the top-level key. Text without that key (another spacing)
    falls back to ``json_extract``."""
    key = '"state": '
    return (f"(instr({column}, '{key}{REVIEW_STATE},') > 0 OR (instr({column}, '{key}') = 0 "
            f"AND coalesce(json_extract({column}, '$.state') = {REVIEW_STATE}, 0)))")


def _sql_math(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has its math functions (pow, floor): 3.35+ built with them."""
    try:
        conn.execute("SELECT pow(2.0, 0.5), floor(1.5)").fetchone()
        return True
    except sqlite3.OperationalError:  # no such function
        return False


def retrievability(stability: float | None, last_ts: float | None, now: float, decay: float, factor: float) -> float:
    """R(now) from stability and last review, as ``fsrs.Scheduler.get_card_retrievability``
    computes it: ``(1 + factor * elapsed / S) ** decay`` with elapsed in whole days; 0 when
    the item was never reviewed."""
    if stability is None or last_ts is None or stability <= 0:
        return 0.0
    elapsed_days = max(0, math.floor((now - last_ts) / 86400))
    return (1 + factor * elapsed_days / stability) ** decay


def _r_sql(ctx: Context) -> str:
    """SQL for :func:`retrievability` over ``srs_items`` columns."""
    return (f"(CASE WHEN stability > 0 AND last_review_ts IS NOT NULL THEN pow(1 + {ctx.factor!r} * "
            f"max(0, floor(({ctx.now!r} - last_review_ts) / 86400.0)) / stability, {ctx.decay!r}) ELSE 0.0 END)")


# -- the statistics ---------------------------------------------------------------------------

def review_heatmap(course: Course | Context, days: int = 84, today: date | None = None) -> dict[date, int]:
    """Valid reviews per study day for the ``days`` study days ending ``today`` (default: the
    current study day), oldest first; days without reviews map to 0.

    Computed as all rows per day (a count per day over the ``reviewed_ts`` index alone) minus,
    per day, the undo rows and the reviews they took back."""
    if days <= 0:
        return {}
    ctx = _ctx(course)
    ranges = ctx.ranges((today or ctx.today) - timedelta(days=days - 1), days)
    conn = ctx.conn
    counts = dict(conn.execute(
        f"WITH {_days_cte(ranges)} SELECT days.i, (SELECT count(*) FROM reviews r "
        f"WHERE r.reviewed_ts >= days.lo AND r.reviewed_ts < days.hi) FROM days"
    ).fetchall())
    starts = [lo for _, lo, _ in ranges]
    end = ranges[-1][2]
    pairs = conn.execute(
        f"SELECT u.reviewed_ts, r.reviewed_ts FROM reviews u JOIN reviews r ON r.id = u.undoes "
        "WHERE u.undoes IS NOT NULL"
    ).fetchall()
    for stamps in pairs:
        for ts in stamps:  # the undo row and the review it took back: neither counts
            if starts[0] <= ts < end:
                i = bisect.bisect_right(starts, ts) - 1
                counts[i] = counts.get(i, 0) - 1
    return {day: max(0, int(counts.get(i, 0))) for i, (day, _, _) in enumerate(ranges)}


def true_retention(course: Course | Context, since: date | float | None = None) -> Retention:
    """Anki's "true retention": among valid reviews of items that were in the FSRS *Review*
    state when reviewed (``state_before.state == 2``: young and mature review cards; not new
    cards, not learning or relearning steps), the share rated Hard, Good or Easy; Again fails.

    ``since``: a study date (from its start) or a timestamp; None means all history. The cost
    is one substring test per review since then, so screens ask for a recent window.
    """
    ctx = _ctx(course)
    if since is None:
        lo = -math.inf
    elif isinstance(since, date):
        lo = day_bounds(since, ctx.day_start_hour, ctx.tz)[0]
    else:
        lo = float(since)
    where = "" if lo == -math.inf else f"r.reviewed_ts >= {lo!r} AND "
    passed, total = ctx.conn.execute(
        f"SELECT coalesce(sum(r.rating > 1), 0), count(*) FROM reviews r "
        f"WHERE {where}{review_in_effect_sql()} AND r.state_before IS NOT NULL AND {_is_review_state('r.state_before')}"
    ).fetchone()
    return Retention(int(passed), int(total), ctx.desired_retention)


def first_review_retention(course: Course | Context, days: int = 30, today: date | None = None,
                           include_new: bool = True) -> list[DayRetention]:
    """Per study day: passed first reviews / all first reviews of the day.

    For each study day and each item reviewed that day, only the item's *first* valid review
    of the day counts (the one with the earliest ``reviewed_ts``): it passes when rated
    Hard/Good/Easy, fails when rated Again. Later same-day reviews (learning steps,
    relearning after a lapse) are ignored, so a forgotten card counts once, as failed; an
    undone review does not count, and the item's next valid review that day takes its place.

    ``include_new=False`` leaves out an item's very first review ever (the one that
    introduced it, ``state_before`` NULL), which measures prior knowledge, not retention.
    Returns the ``days`` study days ending ``today``, oldest first, including empty days.
    """
    if days <= 0:
        return []
    ctx = _ctx(course)
    ranges = ctx.ranges((today or ctx.today) - timedelta(days=days - 1), days)
    new_filter = "" if include_new else " AND r.state_before IS NOT NULL"
    rows = ctx.conn.execute(
        f"WITH {_days_cte(ranges)}, "
        # a bare column (rating) is taken from the row holding the group's min()
        f"firsts AS (SELECT days.i AS i, r.rating AS rating, min(r.reviewed_ts) "
        f"FROM days JOIN reviews r ON r.reviewed_ts >= days.lo AND r.reviewed_ts < days.hi "
        f"WHERE {review_in_effect_sql()}{new_filter} GROUP BY days.i, r.item_id) "
        f"SELECT i, coalesce(sum(rating > 1), 0), count(*) FROM firsts GROUP BY i"
    ).fetchall()
    by_day = {i: (int(p), int(n)) for i, p, n in rows}
    return [DayRetention(day, *by_day.get(i, (0, 0))) for i, (day, _, _) in enumerate(ranges)]


def first_review_retention_total(course: Course | Context, days: int = 30, today: date | None = None,
                                 include_new: bool = True) -> Retention:
    """:func:`first_review_retention` summed over its days, against the desired retention."""
    ctx = _ctx(course)
    per_day = first_review_retention(ctx, days, today, include_new)
    return Retention(sum(d.passed for d in per_day), sum(d.total for d in per_day), ctx.desired_retention)


def forecast(course: Course | Context, days: int = 14, today: date | None = None) -> list[tuple[date, int]]:
    """Items (cards and missed quiz questions) falling due on each of the next ``days`` study
    days, today first. Today's count includes everything overdue and everything due before
    today's study day ends (learning steps too), i.e. ``due_ts < end of today``."""
    if days <= 0:
        return []
    ctx = _ctx(course)
    ranges = ctx.ranges(today or ctx.today, days)
    ranges[0] = (ranges[0][0], -1e300, ranges[0][2])  # overdue counts today
    counts = dict(ctx.conn.execute(
        f"WITH {_days_cte(ranges)} SELECT days.i, (SELECT count(*) FROM srs_items s "
        f"WHERE s.due_ts >= days.lo AND s.due_ts < days.hi) FROM days"
    ).fetchall())
    return [(day, int(counts.get(i, 0))) for i, (day, _, _) in enumerate(ranges)]


def module_mastery(course: Course | Context, now: float | None = None) -> list[ModuleMastery]:
    """One :class:`ModuleMastery` per module, in roadmap order, for every module that has cards
    in the deck or any progress (modules not in the roadmap follow, by name). Cards only;
    quiz questions count through ``quiz_attempts``. ``now`` defaults to the course's clock."""
    ctx = _ctx(course, now)
    conn = ctx.conn
    per_module: dict[str, tuple[int, int, float, int, int]] = {}  # day, introduced, sum R, lapses, reps
    if _sql_math(conn):
        for module, day, n, r_sum, lapses, reps in conn.execute(
                f"SELECT module, min(day), count(*), sum({_r_sql(ctx)}), sum(lapses), sum(reps) "
                f"FROM srs_items WHERE kind = 'card' GROUP BY module"):
            per_module[module] = (int(day), int(n), float(r_sum or 0.0), int(lapses or 0), int(reps or 0))
    else:
        for module, day, stability, last_ts, lapses, reps in conn.execute(
                "SELECT module, day, stability, last_review_ts, lapses, reps FROM srs_items WHERE kind = 'card'"):
            d, n, r_sum, la, re = per_module.get(module, (day, 0, 0.0, 0, 0))
            per_module[module] = (d, n + 1, r_sum + retrievability(stability, last_ts, ctx.now, ctx.decay, ctx.factor),
                                  la + (lapses or 0), re + (reps or 0))
    quiz = {m: (int(n), float(score or 0.0)) for m, n, score in conn.execute(
        "SELECT module, count(*), sum(score) FROM quiz_attempts GROUP BY module")}
    modules = [d.module for d in roadmap.DAYS]
    extra = sorted((set(ctx.totals) | set(per_module) | set(quiz)) - set(modules))
    out = []
    for module in modules + extra:
        total = int(ctx.totals.get(module, 0))
        day, n, r_sum, lapses, reps = per_module.get(module, (0, 0, 0.0, 0, 0))
        attempts, score_sum = quiz.get(module, (0, 0.0))
        if not (total or n or attempts):
            continue
        out.append(ModuleMastery(
            module=module,
            day=roadmap.MODULE_DAYS.get(module) or roadmap.EXTRA_QUIZ_DAYS.get(module, day),
            cards_total=total,
            introduced=n,
            mean_retrievability=r_sum / n if n else 0.0,
            reviews=reps,
            lapses=lapses,
            quiz_attempts=attempts,
            quiz_accuracy=score_sum / attempts if attempts else None,
        ))
    return out


WEAK_DIFFICULTY = 5.0  # FSRS difficulty runs 1-10; a card answered Good every time stays near 2-3


def weakest_cards(course: Course | Context, n: int = 10, now: float | None = None,
                  kinds: Iterable[str] = ("card",)) -> list[WeakCard]:
    """The ``n`` introduced items most at risk among those that showed weakness (forgotten at
    least once, or rated hard enough that FSRS put their difficulty at ``WEAK_DIFFICULTY`` or
    more): lowest retrievability now first; ties broken by more lapses, then higher difficulty,
    then id. A card answered Good every time is not weak, however soon it is due. ``kinds`` may
    add ``"quiz"`` items."""
    if n <= 0:
        return []
    ctx = _ctx(course, now)
    conn = ctx.conn
    kinds = tuple(kinds)
    marks = ",".join("?" * len(kinds))
    if _sql_math(conn):
        rows = conn.execute(
            f"SELECT item_id, module, {_r_sql(ctx)} AS r, coalesce(lapses, 0) AS l, "
            f"coalesce(difficulty, 0.0) AS d FROM srs_items WHERE kind IN ({marks}) "
            f"AND (lapses > 0 OR difficulty >= ?) "
            f"ORDER BY r, l DESC, d DESC, item_id LIMIT ?", (*kinds, WEAK_DIFFICULTY, n)).fetchall()
    else:
        rows = heapq.nsmallest(n, (
            (item_id, module, retrievability(stability, last_ts, ctx.now, ctx.decay, ctx.factor),
             lapses or 0, difficulty or 0.0)
            for item_id, module, stability, last_ts, lapses, difficulty in conn.execute(
                f"SELECT item_id, module, stability, last_review_ts, lapses, difficulty FROM srs_items "
                f"WHERE kind IN ({marks}) AND (lapses > 0 OR difficulty >= ?)", (*kinds, WEAK_DIFFICULTY))
        ), key=lambda t: (t[2], -t[3], -t[4], t[0]))
    return [WeakCard(item_id, module, float(r), int(lapses), float(difficulty))
            for item_id, module, r, lapses, difficulty in rows]


# -- everything the Stats screen shows --------------------------------------------------------

@dataclass(frozen=True)
class Report:
    today: date
    heatmap: dict[date, int]
    true_retention: Retention  # over the last ``retention_days`` study days
    retention_days: int
    first_review: list[DayRetention]
    first_review_total: Retention
    forecast: list[tuple[date, int]]
    mastery: list[ModuleMastery]
    weakest: list[WeakCard]


def report(course: Course | Context, heatmap_days: int = 84, retention_days: int = 30,
           first_review_days: int = 14, forecast_days: int = 14, weakest: int = 5) -> Report:
    """All of the statistics above, as of one moment (one :class:`Context`)."""
    ctx = _ctx(course)
    first = first_review_retention(ctx, first_review_days)
    return Report(
        today=ctx.today,
        heatmap=review_heatmap(ctx, heatmap_days),
        true_retention=true_retention(ctx, ctx.today - timedelta(days=retention_days - 1)),
        retention_days=retention_days,
        first_review=first,
        first_review_total=Retention(sum(d.passed for d in first), sum(d.total for d in first), ctx.desired_retention),
        forecast=forecast(ctx, forecast_days),
        mastery=module_mastery(ctx),
        weakest=weakest_cards(ctx, weakest),
    )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def format_report(r: Report) -> list[str]:
    """The report as plain-text lines (the ``stats`` command prints them)."""
    def retention(name: str, ret: Retention, what: str) -> str:
        if not ret.total:
            return f"{name}: no {what} yet, desired {_pct(ret.desired)}"
        return f"{name}: {_pct(ret.rate)} ({ret.passed}/{ret.total} {what}), desired {_pct(ret.desired)}"

    total = sum(r.heatmap.values())
    active = sum(1 for n in r.heatmap.values() if n)
    lines = [
        retention(f"true retention, last {r.retention_days} days", r.true_retention, "reviews of cards in review"),
        retention(f"first-review retention, last {len(r.first_review)} days", r.first_review_total,
                  "first reviews of the day"),
        f"reviews: {total} in the last {len(r.heatmap)} days ({active} active), today {r.heatmap.get(r.today, 0)}",
        f"forecast, {len(r.forecast)} days (overdue counted today): "
        + ", ".join(f"{'today' if i == 0 else f'{d:%m-%d}'} {n}" for i, (d, n) in enumerate(r.forecast)),
        "",
        f"{'day':>3}  {'module':<12} {'cards':>7} {'recall':>7} {'reviews':>7} {'lapses':>6}  quiz",
    ]
    for m in r.mastery:
        recall = _pct(m.mean_retrievability) if m.introduced else "—"
        quiz = f"{m.quiz_attempts} answers, score {_pct(m.quiz_accuracy)}" if m.quiz_attempts else "—"
        lines.append(f"{m.day:>3}  {m.module:<12} {f'{m.introduced}/{m.cards_total}':>7} {recall:>7} "
                     f"{m.reviews:>7} {m.lapses:>6}  {quiz}")
    if r.weakest:
        lines.append("weakest: " + "; ".join(
            f"{w.item_id} (recall {_pct(w.retrievability)}, {w.lapses} lapses)" for w in r.weakest))
    return lines


__all__ = [
    "Context", "Retention", "DayRetention", "ModuleMastery", "WeakCard", "Report", "review_heatmap",
    "true_retention", "first_review_retention", "first_review_retention_total", "forecast", "module_mastery",
    "weakest_cards", "retrievability", "report", "format_report",
]
