"""Spaced repetition with FSRS-6 (the ``fsrs`` package), wrapped so the UI never touches it.

Items are cards (id = the card id) and quiz questions answered wrongly (id = ``quiz:<id>``).
Each rating is one transaction: the review is appended to ``reviews`` and the item's state
in ``srs_items`` is replaced. Undo appends a row that points at the review it takes back and
restores the state from before that review: history is never rewritten.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

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


class Srs:
    def __init__(self, store: Store, desired_retention: float = 0.9, fuzz: bool = True):
        import fsrs  # imported here, not at module level: the Today screen does not need it

        self._fsrs = fsrs
        self.store = store
        self.scheduler = fsrs.Scheduler(desired_retention=desired_retention, enable_fuzzing=fuzz)

    # -- reading --------------------------------------------------------------------------
    def row(self, item_id: str) -> dict[str, Any] | None:
        rows = self.store.query(f"SELECT {', '.join(_COLUMNS)} FROM srs_items WHERE item_id = ?", (item_id,))
        return rows[0] if rows else None

    def _card(self, item_id: str, row: dict[str, Any] | None) -> Any:
        if row is None:
            return self._fsrs.Card(card_id=zlib.crc32(item_id.encode()))
        return self._fsrs.Card.from_dict(json.loads(row["fsrs_json"]))

    def preview(self, item_id: str, now: float) -> dict[int, float]:
        """Seconds until the item would be due again, for each of the four ratings."""
        card = self._card(item_id, self.row(item_id))
        when = utc(now)
        out = {}
        for rating in (AGAIN, HARD, GOOD, EASY):
            after, _ = self.scheduler.review_card(card, self._fsrs.Rating(rating), review_datetime=when)
            out[rating] = (after.due - when).total_seconds()
        return out

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
            when = utc(now)
            after, _ = self.scheduler.review_card(card, self._fsrs.Rating(rating), review_datetime=when)
            fsrs_dict = after.to_dict()
            state = {
                "item_id": item_id,
                "kind": before["kind"] if before else item.kind,  # type: ignore[union-attr]
                "module": before["module"] if before else item.module,  # type: ignore[union-attr]
                "day": before["day"] if before else item.day,  # type: ignore[union-attr]
                "due_ts": after.due.timestamp(),
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
        return RateResult(int(cursor.lastrowid), item_id, rating, state["due_ts"], state["due_ts"] - now)

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
    "Counts", "count_due", "introduced_since", "introduced_ids", "format_interval", "interval_labels",
]
