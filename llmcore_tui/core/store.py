"""The progress store: one SQLite file (``progress.db``) holding everything the learner did.

- The schema is versioned with ``PRAGMA user_version`` and upgraded by numbered migrations,
  each in one transaction. A database written by a newer version, or a file that is not a
  database, raises :class:`StoreError` with a message for the user; it is never overwritten.
- WAL journal and ``synchronous=NORMAL``: a committed transaction survives the process being
  killed (it is in the WAL before ``COMMIT`` returns); only a power cut can lose the last ones.
- Every user action runs in :meth:`Store.transaction` and is committed before the UI moves on.
- The hot paths use :mod:`sqlite3` directly; sqlite-utils (which pulls in numpy) is imported
  only by migrations and bulk tools, to keep the TUI's start-up fast.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class StoreError(Exception):
    """The database cannot be used; the message tells the user what happened and what to do."""


def _migration_1(db: Any) -> None:
    """The first schema. ``db`` is a ``sqlite_utils.Database`` on the open connection."""
    db["settings"].create({"key": str, "value": str}, pk="key")
    # One row per scheduled item (a card, or a quiz question answered wrongly).
    db["srs_items"].create(
        {
            "item_id": str, "kind": str, "module": str, "day": int,
            "due_ts": float, "state": int, "stability": float, "difficulty": float,
            "reps": int, "lapses": int, "fsrs_json": str,
            "introduced_ts": float, "last_review_ts": float,
        },
        pk="item_id", not_null={"kind", "module", "day", "due_ts", "fsrs_json", "introduced_ts"},
        defaults={"reps": 0, "lapses": 0},
    )
    db["srs_items"].create_index(["due_ts", "state"])  # covers the due count on the Today screen
    db["srs_items"].create_index(["introduced_ts", "kind"])  # covers "new cards introduced today"
    db["srs_items"].create_index(["kind", "module", "due_ts"])  # covers the roadmap's per-module counts
    # Append-only: an undo is a new row pointing at the review it takes back.
    db["reviews"].create(
        {
            "id": int, "item_id": str, "rating": int, "reviewed_ts": float, "duration_ms": int,
            "state_before": str, "state_after": str, "undoes": int,
        },
        pk="id", not_null={"item_id", "reviewed_ts"},
    )
    db["reviews"].create_index(["item_id"])
    db["reviews"].create_index(["reviewed_ts"])
    # partial: holds only undo rows, so statistics can exclude undone reviews without a scan
    db.execute("CREATE INDEX idx_reviews_undoes ON reviews(undoes) WHERE undoes IS NOT NULL")
    db["quiz_attempts"].create(
        {
            "id": int, "sitting": str, "question_id": str, "module": str, "day": int,
            "answer": str, "correct": int, "score": float, "attempted_ts": float,
        },
        pk="id", not_null={"question_id", "module", "attempted_ts"},
    )
    db["quiz_attempts"].create_index(["module"])
    db["quiz_sittings"].create(
        {
            "id": str, "module": str, "day": int, "started_ts": float, "finished_ts": float,
            "questions": int, "correct": int, "score": float, "passed": int,
        },
        pk="id", not_null={"module", "started_ts"},
    )
    db["lab_runs"].create(
        {
            "id": str, "lab": str, "day": int, "preset": str, "config_json": str, "status": str,
            "started_ts": float, "ended_ts": float, "exit_code": int, "headline_json": str,
            "error": str, "log_tail": str, "out_dir": str, "pid": int,
        },
        pk="id", not_null={"lab", "status", "started_ts"},
    )
    db["lab_runs"].create_index(["lab", "started_ts"])
    db["lab_metrics"].create({"run_id": str, "step": int, "key": str, "value": float},
                             not_null={"run_id", "step", "key"})
    db["lab_metrics"].create_index(["run_id", "key", "step"])
    db["lab_tables"].create({"run_id": str, "name": str, "columns_json": str, "rows_json": str},
                            not_null={"run_id", "name"})


MIGRATIONS: dict[int, Callable[[Any], None]] = {1: _migration_1}


class Store:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        if str(path) != ":memory:":
            if self.path.exists() and self.path.is_dir():
                raise StoreError(f"{self.path} is a folder, not a database file.")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
            self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
            self.conn.execute("PRAGMA busy_timeout = 5000")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a usable llmcore-tui database ({exc}). It was left untouched; "
                "move it aside (or pass --db with another file) to start a new one."
            ) from None
        if version > SCHEMA_VERSION:
            self.conn.close()
            raise StoreError(
                f"{self.path} was written by a newer llmcore-tui (schema {version}; this version knows "
                f"up to {SCHEMA_VERSION}). It was left untouched; upgrade llmcore-tui to open it."
            )
        if str(path) != ":memory:":
            self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:
            self._migrate(version)

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self, current: int) -> None:
        import sqlite_utils

        db = sqlite_utils.Database(self.conn)
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                MIGRATIONS[version](db)
                self.conn.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One user action: all of it is committed, or none of it."""
        if self.conn.in_transaction:  # nested: the outer transaction commits
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    # -- small helpers --------------------------------------------------------------------
    def query(self, sql: str, params: tuple | dict = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        columns = [c[0] for c in cursor.description or ()]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]

    def scalar(self, sql: str, params: tuple | dict = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def get_setting(self, key: str, default: Any = None) -> Any:
        raw = self.scalar("SELECT value FROM settings WHERE key = ?", (key,))
        return default if raw is None else json.loads(raw)

    def set_setting(self, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )


def now_ts() -> float:
    return time.time()
