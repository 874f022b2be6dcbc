"""The progress store: one SQLite file (``progress.db``) holding everything the learner did.

- The schema is versioned with ``PRAGMA user_version`` and upgraded by numbered migrations,
  each in one transaction. Our databases carry ``PRAGMA application_id`` = :data:`APPLICATION_ID`
  (set at creation, and on the first writable open of an older database of ours).
- **A file is inspected before anything is written to it.** Its 100-byte header is read with a
  plain ``open`` and, when needed, its table list through a read-only (``mode=ro``) connection.
  Only a missing or empty file, or one of ours (our application id; or, from before the id, a
  user_version > 0 with all our tables), is opened for writing. Another program's SQLite file, a
  file that is not a database or one written by a newer version raises :class:`StoreError` and
  is left byte for byte as it was (no journal mode change, no -wal/-shm files).
- A database of ours that cannot be written (the file or its folder is read-only) is opened
  read-only (``Store.readonly``): reading works, and every :meth:`Store.transaction` raises
  :class:`ReadOnlyStoreError` before anything is changed.
- WAL journal and ``synchronous=NORMAL``: a committed transaction survives the process being
  killed (it is in the WAL before ``COMMIT`` returns); only a power cut can lose the last ones.
- Every user action runs in :meth:`Store.transaction` and is committed before the UI moves on.
- The hot paths use :mod:`sqlite3` directly; sqlite-utils (which pulls in numpy) is imported
  only by migrations and bulk tools, to keep the TUI's start-up fast.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from urllib.parse import quote
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
APPLICATION_ID = 0x4C4C4D43  # "LLMC": PRAGMA application_id of every llmcore-tui database
OUR_TABLES = frozenset({"settings", "srs_items", "reviews", "quiz_attempts", "quiz_sittings", "lab_runs",
                        "lab_metrics", "lab_tables"})
SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(Exception):
    """The database cannot be used; the message tells the user what happened and what to do."""


class ReadOnlyStoreError(StoreError):
    """A write was asked of a database opened read-only; nothing was changed."""


def _ro_uri(path: Path, immutable: bool = False) -> str:
    return f"file:{quote(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")


def _connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection that writes nothing next to the file (``immutable`` when a WAL
    database sits in a folder where its -shm file cannot be created)."""
    conn = sqlite3.connect(_ro_uri(path), uri=True, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if "unable to open" not in str(exc):
            raise
    conn = sqlite3.connect(_ro_uri(path, immutable=True), uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def _writable(path: Path) -> bool:
    """Can SQLite write this file and create its journal next to it?"""
    folder = path.parent if str(path.parent) else Path(".")
    return os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)


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


def _migration_2(db: Any) -> None:
    """A lab run keeps the charts its lab declared (JSON list of ``labs.protocol.Chart``), so a recorded
    run is drawn with the same figures as a live one."""
    db["lab_runs"].add_column("charts_json", str)


MIGRATIONS: dict[int, Callable[[Any], None]] = {1: _migration_1, 2: _migration_2}


class Store:
    """``readonly``: None opens read-only only when the file cannot be written; True always.

    After opening, ``readonly`` says how it was opened and ``created`` whether this call made a
    new database file (``created_folders``: the folders it had to make for it), so that a
    typo in ``--db`` is reported rather than silently looking like lost progress.
    """

    def __init__(self, path: Path | str, readonly: bool | None = None):
        self.path = Path(path)
        self._borrowed = False  # a reopen() of an in-memory database: close() leaves the connection
        self.readonly = False
        self.created = False
        self.created_folders: list[Path] = []
        if str(path) == ":memory:":
            self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self._migrate(0)
            return
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a database file.")
        if self.path.exists():
            version, app_id = self._inspect()
            ours_with_id = app_id == APPLICATION_ID
            self.readonly = bool(readonly) or not _writable(self.path)
        else:
            if readonly:
                raise StoreError(f"{self.path} does not exist (and a read-only open cannot create it).")
            self._create_folders()
            version, ours_with_id = 0, False
            self.created = True
        if self.readonly:
            self._open_readonly(version)
            return
        try:
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
            self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0)
            self.conn.execute("PRAGMA busy_timeout = 5000")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            if version < SCHEMA_VERSION:
                self._migrate(version)
            elif not ours_with_id:  # a database of ours from before the application id
                with self.transaction():
                    self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc) and "read-only" not in str(exc):
                raise StoreError(f"{self.path} cannot be opened: {exc}.") from None
            # os.access said yes, SQLite says no (a read-only mount, say): browse it read-only
            self.conn.close()
            self.readonly = True
            self._open_readonly(version)

    def _create_folders(self) -> None:
        missing = []
        folder = self.path.parent
        while str(folder) not in ("", ".") and not folder.exists():
            missing.append(folder)
            folder = folder.parent
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path}: {exc.strerror or exc}.") from None
        self.created_folders = list(reversed(missing))

    def _inspect(self) -> tuple[int, int]:
        """(user_version, application_id) of an existing file, read without writing anything;
        StoreError when the file is not an llmcore-tui database we may open."""
        untouched = "It was left untouched"
        try:
            with open(self.path, "rb") as fh:
                header = fh.read(100)
        except OSError as exc:
            raise StoreError(f"{self.path} cannot be read: {exc.strerror or exc}. {untouched}.") from None
        if not header:
            return 0, 0  # an empty file: a new database may be created in it
        if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
            raise StoreError(
                f"{self.path} is not a usable llmcore-tui database (it is not an SQLite file). {untouched}; "
                "move it aside (or pass --db with another file) to start a new one.")
        version = int.from_bytes(header[60:64], "big", signed=True)
        app_id = int.from_bytes(header[68:72], "big", signed=False)
        if app_id not in (0, APPLICATION_ID):
            raise StoreError(
                f"{self.path} is another program's SQLite database (application id {app_id:#x}), not an "
                f"llmcore-tui one. {untouched}; pass --db with a new file name.")
        try:
            conn = _connect_ro(self.path)
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]  # the header may lag a WAL
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a usable llmcore-tui database ({exc}). {untouched}; "
                "move it aside (or pass --db with another file) to start a new one.") from None
        if version > SCHEMA_VERSION and (app_id == APPLICATION_ID or OUR_TABLES & tables):
            raise StoreError(
                f"{self.path} was written by a newer llmcore-tui (schema {version}; this version knows "
                f"up to {SCHEMA_VERSION}). {untouched}; upgrade llmcore-tui to open it.")
        ours = app_id == APPLICATION_ID or (version > 0 and OUR_TABLES <= tables) or (version == 0 and not tables)
        if not ours:
            shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
            what = f"it holds other tables: {shown}" if tables else f"it has user_version {version} and no tables"
            raise StoreError(
                f"{self.path} is not an llmcore-tui database ({what}). "
                f"{untouched}; pass --db with a new file name.")
        return version, app_id

    def _open_readonly(self, version: int) -> None:
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} is read-only and needs {'setting up' if version == 0 else 'an upgrade'} "
                f"(schema {version} -> {SCHEMA_VERSION}). It was left untouched; make it and its folder "
                "writable, or pass --db with another file.")
        try:
            self.conn = _connect_ro(self.path)
            self.conn.execute("PRAGMA query_only = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} cannot be opened read-only: {exc}.") from None

    def readonly_message(self, what: str = "this change") -> str:
        return (f"the database {self.path} is read-only, so {what} was not saved. Make the file and its "
                "folder writable (or pass --db with another file) to record progress.")

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
                self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One user action: all of it is committed, or none of it.

        On a read-only database it raises :class:`ReadOnlyStoreError` before anything runs.
        """
        if self.readonly:
            raise ReadOnlyStoreError(self.readonly_message())
        if self.conn.in_transaction:  # nested: the outer transaction commits
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._readonly_or(exc) from None
        try:
            yield self.conn
        except BaseException as exc:
            self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _is_readonly(exc):
                raise ReadOnlyStoreError(self.readonly_message()) from None
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise self._readonly_or(exc) from None

    def _readonly_or(self, exc: sqlite3.OperationalError) -> Exception:
        return ReadOnlyStoreError(self.readonly_message()) if _is_readonly(exc) else exc

    def close(self) -> None:
        if not self._borrowed:
            self.conn.close()

    def reopen(self) -> "Store":
        """The same database on a connection of its own, for a worker thread, so that its
        transactions never interleave with the UI thread's. An in-memory database has only the
        one connection: it is shared, and closing the reopened store leaves it open."""
        if str(self.path) == ":memory:":
            import copy

            twin = copy.copy(self)
            twin._borrowed = True
            return twin
        return Store(self.path)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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


def _is_readonly(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text


def now_ts() -> float:
    return time.time()
