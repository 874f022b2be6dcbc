"""The progress store: migrations, transactions, and refusing databases it must not touch."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from llmcore_tui.core.store import APPLICATION_ID, SCHEMA_VERSION, Store, StoreError


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_database_is_migrated_to_the_current_schema(tmp_path):
    store = Store(tmp_path / "p.db")
    assert store.schema_version == SCHEMA_VERSION
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"settings", "srs_items", "reviews", "quiz_attempts", "quiz_sittings", "lab_runs", "lab_metrics"} <= tables
    assert store.scalar("PRAGMA journal_mode") == "wal"
    store.close()


def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path):
    store = Store(tmp_path / "p.db")
    store.set_setting("new_per_day", 7)
    store.close()
    again = Store(tmp_path / "p.db")
    assert again.get_setting("new_per_day") == 7
    assert again.schema_version == SCHEMA_VERSION
    again.close()


def test_migration_from_an_empty_version_zero_file(tmp_path):
    path = tmp_path / "p.db"
    sqlite3.connect(path).close()  # an empty SQLite file: user_version 0
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION
    store.close()


def test_a_version_one_database_gains_the_lab_runs_charts_and_keeps_its_runs(tmp_path):
    import sqlite_utils

    from llmcore_tui.core.store import MIGRATIONS

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    MIGRATIONS[1](sqlite_utils.Database(conn))  # the schema as version 1 left it
    conn.execute("INSERT INTO lab_runs(id, lab, status, started_ts) VALUES ('mdp-1', 'mdp', 'succeeded', 1.0)")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION == 2
    assert store.query("SELECT id, charts_json FROM lab_runs") == [{"id": "mdp-1", "charts_json": None}]
    store.close()


def test_newer_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "p.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future(x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")  # a newer llmcore-tui sets it too
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="newer llmcore-tui"):
        Store(path)
    assert digest(path) == before


def test_corrupt_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "p.db"
    path.write_bytes(b"this is not a database, it is a grocery list\n" * 100)
    before = digest(path)
    with pytest.raises(StoreError, match="not a usable llmcore-tui database"):
        Store(path)
    assert digest(path) == before


def test_transaction_rolls_back_everything_on_error(tmp_path):
    store = Store(tmp_path / "p.db")
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            conn.execute("INSERT INTO settings(key, value) VALUES ('a', '1')")
            raise RuntimeError("boom")
    assert store.scalar("SELECT count(*) FROM settings") == 0
    with store.transaction() as conn:
        conn.execute("INSERT INTO settings(key, value) VALUES ('a', '1')")
    assert store.scalar("SELECT count(*) FROM settings") == 1
    store.close()


def test_a_committed_action_is_visible_to_another_connection(tmp_path):
    store = Store(tmp_path / "p.db")
    store.set_setting("x", 1)
    other = sqlite3.connect(tmp_path / "p.db")
    assert other.execute("SELECT value FROM settings WHERE key = 'x'").fetchone() == ("1",)
    other.close()
    store.close()


def test_reopen_gives_a_worker_its_own_connection_and_shares_an_in_memory_one(tmp_path):
    store = Store(tmp_path / "p.db")
    with store.reopen() as worker:
        assert worker.conn is not store.conn and worker.path == store.path
        worker.set_setting("from_worker", 1)
    assert store.get_setting("from_worker") == 1
    store.close()
    memory = Store(":memory:")
    with memory.reopen() as worker:
        assert worker.conn is memory.conn
    assert memory.scalar("SELECT 1") == 1  # closing the reopened store left the one connection open
    memory.close()
