"""Issue 11, items 3, 4, 6a, 6b: the progress store refuses files that are not ours, browses a
read-only database without writing, and says where a new database was made.

Every fault test compares the file's bytes before and after, checks that no -wal/-shm file was
left behind, and ends with ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from llmcore_tui.core.store import APPLICATION_ID, SCHEMA_VERSION, ReadOnlyStoreError, Store, StoreError

REPO = Path(__file__).resolve().parents[1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def integrity(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def no_sidecars(path: Path) -> bool:
    return not any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm", "-journal"))


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "llmcore_tui", *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def other_apps_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE reviews(book TEXT, stars INTEGER)")
    conn.execute("INSERT INTO reviews VALUES ('Dune', 5), ('Emma', 4)")
    conn.commit()
    conn.close()


# -- item 3: another program's SQLite file --------------------------------------------------------

def test_another_apps_database_is_refused_and_left_byte_for_byte(tmp_path):
    path = tmp_path / "other.db"
    other_apps_db(path)
    before = digest(path)
    with pytest.raises(StoreError, match="not an llmcore-tui database.*reviews.*left untouched"):
        Store(path)
    assert digest(path) == before and no_sidecars(path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    conn.close()
    assert integrity(path) == "ok"


def test_the_cli_refuses_another_apps_database_without_a_traceback(tmp_path, content):
    path = tmp_path / "other.db"
    other_apps_db(path)
    before = digest(path)
    env = dict(os.environ, LLMCORE_CONTENT=str(content))
    for args in (["stats"], ["settings", "set", "new_per_day", "5"], ["lab", "runs"],
                 ["export-brief", "-o", str(tmp_path / "b.md")]):
        result = cli("--db", str(path), *args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert "not an llmcore-tui database" in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""  # errors go to stderr (item 6b)
    assert not (tmp_path / "b.md").exists()
    assert digest(path) == before and no_sidecars(path) and integrity(path) == "ok"


def test_a_database_with_a_foreign_application_id_is_refused(tmp_path):
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="another program's SQLite database"):
        Store(path)
    assert digest(path) == before and no_sidecars(path) and integrity(path) == "ok"


def test_ours_carries_the_application_id_and_an_older_one_of_ours_gets_it(tmp_path):
    path = tmp_path / "p.db"
    store = Store(path)
    assert store.scalar("PRAGMA application_id") == APPLICATION_ID
    store.set_setting("new_per_day", 9)
    store.conn.execute("PRAGMA application_id = 0")  # a database from before the id
    store.close()
    again = Store(path)  # user_version > 0 and all our tables: ours, and marked now
    assert again.scalar("PRAGMA application_id") == APPLICATION_ID
    assert again.get_setting("new_per_day") == 9 and again.schema_version == SCHEMA_VERSION
    again.close()
    assert integrity(path) == "ok"


def test_empty_files_become_databases(tmp_path):
    for path in (tmp_path / "zero.db", tmp_path / "blank.db"):
        if path.name == "zero.db":
            path.write_bytes(b"")
        else:
            sqlite3.connect(path).close()  # a valid SQLite file with nothing in it
        store = Store(path)
        assert store.schema_version == SCHEMA_VERSION and store.scalar("PRAGMA application_id") == APPLICATION_ID
        store.close()
        assert integrity(path) == "ok"


def test_a_partial_copy_of_our_tables_is_not_taken_for_ours(tmp_path):
    path = tmp_path / "half.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE settings(key, value)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="not an llmcore-tui database"):
        Store(path)
    assert digest(path) == before and no_sidecars(path)


# -- item 4: a read-only database -----------------------------------------------------------------

def ours(path: Path) -> None:
    store = Store(path)
    store.set_setting("start_date", "2026-03-02")
    store.set_setting("new_per_day", 11)
    store.close()  # the last connection: the WAL is checkpointed and removed


def test_a_read_only_store_reads_and_refuses_every_write(tmp_path):
    path = tmp_path / "p.db"
    ours(path)
    before = digest(path)
    store = Store(path, readonly=True)
    assert store.readonly and store.get_setting("new_per_day") == 11
    with pytest.raises(ReadOnlyStoreError, match="read-only.*not saved"):
        store.set_setting("new_per_day", 3)
    with pytest.raises(ReadOnlyStoreError):
        with store.transaction() as conn:
            conn.execute("DELETE FROM settings")
    with pytest.raises(sqlite3.OperationalError):  # even a write that skips transaction()
        store.conn.execute("DELETE FROM settings")
    store.close()
    assert digest(path) == before and integrity(path) == "ok"


def _ro_mount_prefix(folder: Path) -> list[str] | None:
    """``unshare -m sh -c 'mount --bind -o ro ...; CMD'``: the folder is read-only for that one
    process (root ignores file modes, not a read-only mount); None where that is not allowed."""
    if shutil.which("unshare") is None or sys.platform != "linux":
        return None
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {folder} {folder} && "
                            f"mount -o remount,ro,bind {folder} && ! touch {folder}/.probe"],
                           capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c",
            f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && exec \"$0\" \"$@\"", ]


def test_read_only_database_cli_gives_a_clear_message_and_changes_nothing(tmp_path, content):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "p.db"
    ours(path)
    before = digest(path)
    prefix = _ro_mount_prefix(folder)
    if prefix is None:
        pytest.skip("needs unshare -m and mount (a read-only bind mount)")
    env = dict(os.environ, LLMCORE_CONTENT=str(content), LLMCORE_LAB_COMMAND=f"{sys.executable} -c pass")

    def run(*args: str) -> subprocess.CompletedProcess:
        argv = [*prefix, sys.executable, "-m", "llmcore_tui", "--db", str(path), *args]
        return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)

    brief = tmp_path / "brief.md"
    for args in (["settings", "set", "new_per_day", "5"], ["export-brief", "-o", str(brief)],
                 ["lab", "run", "mdp", "--toy"]):
        result = run(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "read-only" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not brief.exists()  # nothing half-done: no brief without its record
    shown = run("settings", "show")  # reading works
    assert shown.returncode == 0 and " 11 " in shown.stdout, shown.stderr
    listed = run("lab", "runs")
    assert listed.returncode == 0 and "no runs yet" in listed.stdout
    assert digest(path) == before and no_sidecars(path) and integrity(path) == "ok"


def test_read_only_course_in_process_refuses_settings_brief_and_labs(tmp_path, content, monkeypatch):
    """The same three refusals through the library, on a store opened read-only."""
    from typer.testing import CliRunner

    from llmcore_tui.cli import app
    import llmcore_tui.core.store as store_module

    path = tmp_path / "p.db"
    ours(path)
    before = digest(path)
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    monkeypatch.setattr(store_module, "_writable", lambda p: False)  # as a read-only file reads
    runner = CliRunner()
    brief = tmp_path / "b.html"
    for args in (["settings", "set", "new_per_day", "5"], ["export-brief", "--format", "html", "-o", str(brief)],
                 ["lab", "run", "mdp", "--toy"]):
        result = runner.invoke(app, ["--db", str(path), *args])
        assert result.exit_code == 1, (args, result.output)
        assert "read-only" in result.stderr and "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not brief.exists()
    assert digest(path) == before and integrity(path) == "ok"


def test_the_tui_browses_a_read_only_database_and_refuses_writes(tmp_path, content, clock):
    import asyncio

    from llmcore_tui.core.course import Course
    from llmcore_tui.tui.app import LlmcoreApp

    path = tmp_path / "p.db"
    ours(path)
    before = digest(path)
    course = Course(Store(path, readonly=True), None, content, clock)

    async def scenario() -> tuple[str, list[str]]:
        app = LlmcoreApp(course)
        async with app.run_test() as pilot:
            await pilot.pause()
            await pilot.press("r")  # review: the first new card
            await pilot.pause()
            await pilot.press("space")
            await pilot.pause()
            await pilot.press("3")  # a rating: refused with a message, the app goes on
            await pilot.pause()
            await pilot.press("t")
            await pilot.pause()
            messages = [str(n.message) for n in app._notifications]
            return app.sub_title, messages

    sub_title, messages = asyncio.run(scenario())
    assert "read-only" in sub_title
    assert any("read-only" in m for m in messages)
    assert any("not saved" in m or "Could not save" in m for m in messages)
    assert digest(path) == before and integrity(path) == "ok"


# -- item 6a/6b: a new database is announced; errors go to stderr ---------------------------------

def test_a_new_database_in_a_missing_folder_is_announced_on_stderr(tmp_path, content):
    path = tmp_path / "typo" / "deeper" / "progress.db"
    env = dict(os.environ, LLMCORE_CONTENT=str(content))
    result = cli("--db", str(path), "settings", "show", env=env)
    assert result.returncode == 0, result.stderr
    assert f"created a new progress database at {path}" in result.stderr
    assert str(tmp_path / "typo") in result.stderr  # and the folders it had to make
    assert "created" not in result.stdout
    again = cli("--db", str(path), "settings", "show", env=env)
    assert "created" not in again.stderr  # only the first time
    assert integrity(path) == "ok"


def test_the_tui_launch_reports_database_errors_on_stderr(tmp_path, content):
    path = tmp_path / "other.db"
    other_apps_db(path)
    before = digest(path)
    env = dict(os.environ, LLMCORE_CONTENT=str(content))
    result = cli("--db", str(path), env=env)  # the plain launch path, no sub-command
    assert result.returncode == 1
    assert result.stdout == "" and "not an llmcore-tui database" in result.stderr
    assert digest(path) == before and no_sidecars(path) and integrity(path) == "ok"


def test_the_tui_says_when_it_created_the_database(tmp_path, content, clock):
    import asyncio

    from llmcore_tui.core.course import Course
    from llmcore_tui.tui.app import LlmcoreApp

    path = tmp_path / "new" / "p.db"
    course = Course(Store(path), None, content, clock)
    assert course.store.created and course.store.created_folders == [tmp_path / "new"]

    async def scenario() -> list[str]:
        app = LlmcoreApp(course)
        async with app.run_test() as pilot:
            await pilot.pause()
            return [str(n.message) for n in app._notifications]

    assert any(f"created at {path}" in m for m in asyncio.run(scenario()))
    assert integrity(path) == "ok"
