"""Spaced repetition with FSRS-6 (the ``fsrs`` package), wrapped so the UI never touches it.

Items are cards (id = the card id) and quiz questions answered wrongly (id = ``quiz:<id>``).
Each rating is one transaction: the review is appended to ``reviews`` and the item's state
in ``srs_items`` is replaced. Undo appends a row that points at the review it takes back and
restores the state from before that review: history is never rewritten.

The scheduler uses FSRS-6's default parameters (a population average) unless the learner has
accepted parameters fitted to their own history (``llmcore-tui optimize``,
:mod:`llmcore_tui.core.fsrs_fit`); those are kept as one JSON setting, read here.
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Callable

from llmcore_tui.core.clock import utc
from llmcore_tui.core.store import Store

AGAIN, HARD, GOOD, EASY = 1, 2, 3, 4
RATING_NAMES = {AGAIN: "Again", HARD: "Hard", GOOD: "Good", EASY: "Easy"}
LEARNING_STATES = (1, 3)  # fsrs.State.Learning, fsrs.State.Relearning

_COLUMNS = ("item_id", "kind", "module", "day", "due_ts", "state", "stability", "difficulty",
            "reps", "lapses", "fsrs_json", "introduced_ts", "last_review_ts")


@dataclass(frozen=True)
class NewItem:
    """A schedulable item that has never been reviewed."""

    item_id: str
    kind: str
    module: str
    day: int


@dataclass(frozen=True)
class RateResult:
    review_id: int
    item_id: str
    rating: int
    due_ts: float
    interval_s: float


def format_interval(seconds: float) -> str:
    """Compact human interval, as shown on the rating buttons: 10m, 2d, 3.5mo, 1.2y."""
    minutes = seconds / 60
    if minutes < 1:
        return "<1m"
    if minutes < 60:
        return f"{minutes:.0f}m"
    hours = minutes / 60
    if hours < 24:
        return f"{hours:.0f}h"
    days = hours / 24
    if days < 30:
        return f"{days:.0f}d"
    if days < 365:
        return f"{days / 30.4375:.1f}mo"
    return f"{days / 365.25:.1f}y"


DAY_S = 86_400.0
PARAMETERS_KEY = "fsrs_parameters"  # settings table: StoredParameters.to_setting(), or null for the defaults
PARAMETER_COUNT = 21  # FSRS-6


@dataclass(frozen=True)
class StoredParameters:
    """FSRS-6 parameters fitted to this learner's history, with when and on how much."""

    parameters: tuple[float, ...]
    fitted_ts: float
    reviews: int  # the card reviews the fit read
    cross_day: int  # of which a day or more after the card's previous review (what the fit learns from)

    def to_setting(self) -> dict[str, Any]:
        return {"parameters": list(self.parameters), "fitted_ts": self.fitted_ts, "reviews": self.reviews,
                "cross_day": self.cross_day}

    @classmethod
    def from_setting(cls, value: Any) -> StoredParameters | None:
        """The stored fit, or None for the defaults (nothing stored, or a value of another shape)."""
        try:
            fit = cls(tuple(float(p) for p in value["parameters"]), float(value["fitted_ts"]),
                      int(value["reviews"]), int(value["cross_day"]))
        except (TypeError, KeyError, ValueError):
            return None
        return fit if len(fit.parameters) == PARAMETER_COUNT else None


def stored_parameters(store: Store) -> StoredParameters | None:
    return StoredParameters.from_setting(store.get_setting(PARAMETERS_KEY))


def store_parameters(store: Store, fit: StoredParameters | None) -> None:
    """Keep ``fit`` as the learner's parameters (None: back to the defaults)."""
    store.set_setting(PARAMETERS_KEY, fit.to_setting() if fit is not None else None)

DayStart = Callable[[float, int], float]  # (moment, n) -> start of the study day n days after the moment's


class Srs:
    """FSRS-6 scheduling with two habits of Anki's that the package leaves to its caller.

    - **A review card is due for its whole study day.** With ``day_start`` given, a card in
      the Review state is due from the start of the study day its interval lands on, so a
      session started in the morning sees all of today's reviews at once, not one more each
      time the clock passes the minute of last time's rating. Learning steps keep minutes.
    - **Fuzz that keeps the buttons in order and means what it shows.** The package fuzzes
      each rating with an independent global ``random()``, so the preview and the rating
      disagree and Hard can land after Good. Here one draw per (item, repetition) fuzzes all
      four ratings, within the package's own fuzz ranges, so the preview is exactly what a
      rating does and Again <= Hard <= Good <= Easy, strictly where the unfuzzed intervals differ.
    """

    def __init__(self, store: Store, desired_retention: float = 0.9, fuzz: bool = True,
                 day_start: DayStart | None = None, parameters: Sequence[float] | None = None):
        """``parameters``: FSRS-6's 21 weights; None reads the learner's stored fit (defaults if none)."""
        import fsrs  # imported here, not at module level: the Today screen does not need it

        self._fsrs = fsrs
        self.store = store
        self.fuzz = fuzz
        self.day_start = day_start
        self.desired_retention = desired_retention
        self.use_parameters(parameters)

    def use_parameters(self, parameters: Sequence[float] | None = None) -> None:
        """Schedule with ``parameters`` from now on; None: the stored fit, else FSRS-6's defaults.
        Cards keep the stability and difficulty they have; the next rating of each uses these."""
        if parameters is None:
            stored = stored_parameters(self.store)
            parameters = stored.parameters if stored is not None else self._fsrs.scheduler.DEFAULT_PARAMETERS
        self.scheduler = self._fsrs.Scheduler(parameters=parameters, desired_retention=self.desired_retention,
                                              enable_fuzzing=False)

    def _outcomes(self, item_id: str, card: Any, reps: int, now: float) -> dict[int, tuple[Any, float, float]]:
        """For each rating: the card after it, its due time, and the interval a button shows (s)."""
        when = utc(now)
        after = {r: self.scheduler.review_card(card, self._fsrs.Rating(r), review_datetime=when)[0]
                 for r in (AGAIN, HARD, GOOD, EASY)}
        review = {r for r, c in after.items() if c.state == self._fsrs.State.Review}
        raw_days = {r: max(1, round((after[r].due - when).total_seconds() / DAY_S)) for r in review}
        days = dict(raw_days)
        if self.fuzz:
            draw = random.Random(f"{item_id}:{reps}").random()  # one draw: the same for preview and rating
            days = {r: self._fuzzed_days(d, draw) for r, d in raw_days.items()}
        previous = None
        for r in (AGAIN, HARD, GOOD, EASY):  # keep the buttons in order
            if r in review and previous in review:
                floor = days[previous] + (1 if raw_days[r] > raw_days[previous] else 0)
                days[r] = min(max(days[r], floor), self.scheduler.maximum_interval)
            previous = r
        out = {}
        for r, c in after.items():
            if r in review:
                due = self.day_start(now, days[r]) if self.day_start else now + days[r] * DAY_S
                c.due = utc(due)
                out[r] = (c, due, days[r] * DAY_S)
            else:
                due = c.due.timestamp()
                out[r] = (c, due, due - now)
        return out

    def _fuzzed_days(self, days: int, draw: float) -> int:
        """The package's fuzz range for an interval, with the caller's uniform draw in [0, 1)."""
        if days < 2.5:
            return days
        delta = 1.0
        for band in self._fsrs.scheduler.FUZZ_RANGES:
            delta += band["factor"] * max(min(float(days), band["end"]) - band["start"], 0.0)
        low = max(2, round(days - delta))
        high = min(round(days + delta), self.scheduler.maximum_interval)
        low = min(low, high)
        return min(round(draw * (high - low + 1) + low - 0.5), high)

    # -- reading --------------------------------------------------------------------------
    def row(self, item_id: str) -> dict[str, Any] | None:
        rows = self.store.query(f"SELECT {', '.join(_COLUMNS)} FROM srs_items WHERE item_id = ?", (item_id,))
        return rows[0] if rows else None

    def _card(self, item_id: str, row: dict[str, Any] | None) -> Any:
        if row is None:
            return self._fsrs.Card(card_id=zlib.crc32(item_id.encode()))
        return self._fsrs.Card.from_dict(json.loads(row["fsrs_json"]))

    def preview(self, item_id: str, now: float) -> dict[int, float]:
        """The interval each of the four ratings would give, in seconds (whole days for reviews)."""
        row = self.row(item_id)
        outcomes = self._outcomes(item_id, self._card(item_id, row), row["reps"] if row else 0, now)
        return {rating: interval for rating, (_, _, interval) in outcomes.items()}

    def retrievability(self, row: dict[str, Any], now: float) -> float:
        card = self._fsrs.Card.from_dict(json.loads(row["fsrs_json"]))
        return float(self.scheduler.get_card_retrievability(card, current_datetime=utc(now)))

    # -- writing --------------------------------------------------------------------------
    def rate(self, item: NewItem | str, rating: int, now: float, duration_ms: int | None = None) -> RateResult:
        """Record one rating (1 Again .. 4 Easy) in one transaction."""
        if rating not in RATING_NAMES:
            raise ValueError(f"rating must be 1-4, got {rating!r}")
        item_id = item if isinstance(item, str) else item.item_id
        with self.store.transaction() as conn:
            before = self.row(item_id)
            if before is None and isinstance(item, str):
                raise KeyError(f"{item_id} has never been introduced; pass a NewItem")
            card = self._card(item_id, before)
            after, due_ts, interval_s = self._outcomes(item_id, card, before["reps"] if before else 0, now)[rating]
            fsrs_dict = after.to_dict()
            state = {
                "item_id": item_id,
                "kind": before["kind"] if before else item.kind,  # type: ignore[union-attr]
                "module": before["module"] if before else item.module,  # type: ignore[union-attr]
                "day": before["day"] if before else item.day,  # type: ignore[union-attr]
                "due_ts": due_ts,
                "state": int(after.state),
                "stability": after.stability,
                "difficulty": after.difficulty,
                "reps": (before["reps"] if before else 0) + 1,
                "lapses": (before["lapses"] if before else 0) + (1 if rating == AGAIN and before and before["state"] == 2 else 0),
                "fsrs_json": json.dumps(fsrs_dict),
                "introduced_ts": before["introduced_ts"] if before else now,
                "last_review_ts": now,
            }
            conn.execute(
                f"INSERT OR REPLACE INTO srs_items({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                tuple(state[c] for c in _COLUMNS),
            )
            cursor = conn.execute(
                "INSERT INTO reviews(item_id, rating, reviewed_ts, duration_ms, state_before, state_after) VALUES (?, ?, ?, ?, ?, ?)",
                (item_id, rating, now, duration_ms, json.dumps(before) if before else None, json.dumps(state)),
            )
        return RateResult(int(cursor.lastrowid), item_id, rating, due_ts, interval_s)

    def last_undoable(self) -> dict[str, Any] | None:
        rows = self.store.query(
            "SELECT id, item_id, rating, state_before FROM reviews r WHERE r.undoes IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM reviews u WHERE u.undoes = r.id) ORDER BY r.id DESC LIMIT 1"
        )
        return rows[0] if rows else None

    def undo(self, now: float) -> str | None:
        """Take back the most recent rating still in effect; returns its item id, or None."""
        with self.store.transaction() as conn:
            last = self.last_undoable()
            if last is None:
                return None
            conn.execute("INSERT INTO reviews(item_id, reviewed_ts, undoes) VALUES (?, ?, ?)",
                         (last["item_id"], now, last["id"]))
            if last["state_before"] is None:  # the rating introduced the item: it becomes new again
                conn.execute("DELETE FROM srs_items WHERE item_id = ?", (last["item_id"],))
            else:
                before = json.loads(last["state_before"])
                conn.execute(
                    f"INSERT OR REPLACE INTO srs_items({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    tuple(before[c] for c in _COLUMNS),
                )
        return last["item_id"]


# -- the daily queue ------------------------------------------------------------------------

@dataclass
class Counts:
    due: int  # reviews and learning steps due now
    learning: int  # of which in (re)learning
    new_available: int  # new items that may still be introduced today
    new_today: int  # items introduced today already


def count_due(store: Store, now: float) -> tuple[int, int]:
    """(items due now, of which in (re)learning), cards and quiz questions alike; answered from
    the ``(due_ts, state)`` index alone."""
    row = store.conn.execute(
        "SELECT count(*), coalesce(sum(state IN (1, 3)), 0) FROM srs_items WHERE due_ts <= ?", (now,)
    ).fetchone()
    return int(row[0]), int(row[1])


def next_due_ts(store: Store, after: float) -> float | None:
    """When the next item falls due after ``after`` (None: nothing scheduled); from the due index."""
    value = store.scalar("SELECT min(due_ts) FROM srs_items WHERE due_ts > ?", (after,))
    return None if value is None else float(value)


def introduced_since(store: Store, since: float) -> int:
    # "+kind": keep SQLite on the (introduced_ts, kind) index, not the (kind, ...) one
    return int(store.scalar("SELECT count(*) FROM srs_items WHERE introduced_ts >= ? AND +kind = 'card'", (since,)))


def introduced_ids(store: Store) -> set[str]:
    return {r[0] for r in store.conn.execute("SELECT item_id FROM srs_items")}


@dataclass
class ReviewQueue:
    """What to show next: due items first (oldest due first), then new cards, then learning
    steps that fall due within the learn-ahead window when nothing else is left."""

    srs: Srs
    new_items: list[NewItem]  # candidates in curriculum order, none introduced yet
    new_left: int  # how many more may be introduced today
    learn_ahead_s: float = 20 * 60
    shown_new: list[NewItem] = field(default_factory=list)

    def next(self, now: float) -> NewItem | dict[str, Any] | None:
        row = self._first_due(now)
        if row is not None:
            return row
        if self.new_left > 0 and self.new_items:
            return self.new_items[0]
        return self._first_due(now + self.learn_ahead_s, learning_only=True)

    def _first_due(self, until: float, learning_only: bool = False) -> dict[str, Any] | None:
        extra = " AND state IN (1, 3)" if learning_only else ""
        rows = self.srs.store.query(
            f"SELECT {', '.join(_COLUMNS)} FROM srs_items WHERE due_ts <= ?{extra} ORDER BY due_ts LIMIT 1", (until,)
        )
        return rows[0] if rows else None

    def rate(self, item: NewItem | dict[str, Any], rating: int, now: float, duration_ms: int | None = None) -> RateResult:
        if isinstance(item, NewItem):
            result = self.srs.rate(item, rating, now, duration_ms)
            self.new_items.remove(item)
            self.shown_new.append(item)
            self.new_left -= 1
            return result
        return self.srs.rate(item["item_id"], rating, now, duration_ms)

    def undo(self, now: float) -> str | None:
        item_id = self.srs.undo(now)
        if item_id is not None and self.srs.row(item_id) is None:
            # the undone rating had introduced a new card: it goes back to the front of the queue
            match = next((i for i in self.shown_new if i.item_id == item_id), None)
            if match is not None:
                self.shown_new.remove(match)
                self.new_items.insert(0, match)
                self.new_left += 1
        return item_id


def interval_labels(srs: Srs, item_id: str, now: float) -> dict[int, str]:
    return {rating: format_interval(seconds) for rating, seconds in srs.preview(item_id, now).items()}


__all__ = [
    "AGAIN", "HARD", "GOOD", "EASY", "RATING_NAMES", "NewItem", "RateResult", "Srs", "ReviewQueue",
    "PARAMETERS_KEY", "StoredParameters", "stored_parameters", "store_parameters",
    "Counts", "count_due", "next_due_ts", "introduced_since", "introduced_ids", "format_interval", "interval_labels",
]
