"""Killing the app (SIGKILL) right after a rating loses no rating.

The real app runs in a pseudo-terminal, a key press rates a card, and the process is killed
the moment the rating is visible to another connection; the database must then hold it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import sqlite3
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from conftest import drain_pty

REPO = Path(__file__).resolve().parents[1]


def _wait_for(predicate, fd: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drain_pty(fd)
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def _reviews(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)
        try:
            return conn.execute("SELECT count(*) FROM reviews").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_sigkill_right_after_a_rating_keeps_it(tmp_path, content):
    db = tmp_path / "progress.db"
    painted = tmp_path / "painted"
    env = dict(os.environ, LLMCORE_CONTENT=str(content), TERM="xterm-256color", LLMCORE_BENCH_T0=str(time.time()),
               LLMCORE_BENCH_OUT=str(painted), XDG_CACHE_HOME=str(tmp_path / "cache"))
    pid, fd = pty.fork()
    if pid == 0:  # child: the real app, as a user would start it
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "llmcore_tui", "--db", str(db)], env)
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        _wait_for(painted.exists, fd, 30, "the Today screen")
        os.write(fd, b"r")
        time.sleep(0.5)
        os.write(fd, b" ")
        time.sleep(0.3)
        os.write(fd, b"3")
        _wait_for(lambda: _reviews(db) == 1, fd, 10, "the rating to be committed")
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT item_id, rating FROM reviews").fetchall() == [("mdp-one", 3)]
    assert conn.execute("SELECT item_id FROM srs_items").fetchall() == [("mdp-one",)]
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
