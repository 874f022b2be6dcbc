"""Issue 11, item 2: no lab outlives the process that started it.

The runner (``llmcore-tui lab run``, a real child process) starts a lab that computes silently;
the runner is then killed (SIGKILL: no handler runs) or terminated (SIGTERM/SIGHUP: its handler
cancels the lab). The lab must be gone within a few seconds, and the row left ``running`` by a
SIGKILL must be marked at the next start of the CLI.

The "lab" is a small script on the real lab runtime's parent watch
(``labs._runtime.watch_parent``), spinning without a word on stdout: in pure Python (the
watchdog thread can run), or inside one long regular-expression match that holds the GIL (only
the kernel's parent-death signal can stop it).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import drain_pty

REPO = Path(__file__).resolve().parents[1]

SPINNER = textwrap.dedent("""
    import json, os, re, sys
    sys.path.insert(0, {repo!r})
    from labs._runtime import watch_parent
    mode = os.environ["SPIN_MODE"]
    watch_parent(death_signal=(mode != "watchdog"))
    print(json.dumps({{"event": "start", "lab": "mdp", "config": {{"mode": mode}}, "total_steps": None}}), flush=True)
    print(json.dumps({{"event": "log", "text": "pid %d" % os.getpid()}}), flush=True)
    if mode == "gil":  # one C call that never lets go of the GIL: the watchdog thread cannot run
        re.match(r"(a+)+$", "a" * 64 + "b")
    x = 0
    while True:  # silent pure-Python compute
        x = (x * 31 + 7) % 1000003
""")


def _row(db: Path) -> tuple[str, int] | None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT status, pid FROM lab_runs ORDER BY started_ts DESC LIMIT 1").fetchone()
            return tuple(row) if row else None
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")  # a zombie is dead: nobody has reaped it yet
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start_runner(tmp_path: Path, mode: str, content: Path) -> tuple[subprocess.Popen, Path, int]:
    spinner = tmp_path / "spinner.py"
    spinner.write_text(SPINNER.format(repo=str(REPO)))
    db = tmp_path / "progress.db"
    env = dict(os.environ, LLMCORE_LAB_COMMAND=f"{sys.executable} {spinner}", SPIN_MODE=mode,
               LLMCORE_CONTENT=str(content))
    runner = subprocess.Popen([sys.executable, "-m", "llmcore_tui", "--db", str(db), "lab", "run", "mdp", "--toy"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    row = _wait(lambda: (r := _row(db)) and r[0] == "running" and r[1] and r, 60, "the lab to start")
    lab_pid = row[1]
    # the spinner has printed its start event once the row has its config
    _wait(lambda: not _gone(lab_pid) and Path(f"/proc/{lab_pid}/cmdline").exists(), 10, "the lab process")
    time.sleep(1.0)  # let it settle into its silent loop (and the watch start)
    return runner, db, lab_pid


def _cleanup(runner: subprocess.Popen, lab_pid: int) -> None:
    for pid in (runner.pid, lab_pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    runner.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups and signals")
@pytest.mark.parametrize("mode", ["python", "gil", "watchdog"])
def test_sigkill_of_the_runner_takes_the_lab_with_it_and_the_row_is_marked_at_next_start(tmp_path, content, mode):
    if mode == "gil" and not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux-only")
    runner, db, lab_pid = _start_runner(tmp_path, mode, content)
    try:
        assert not _gone(lab_pid)
        os.kill(runner.pid, signal.SIGKILL)  # no handler, no atexit: only the lab's own guards act
        runner.wait()
        killed_at = time.monotonic()
        _wait(lambda: _gone(lab_pid), 5.0, f"the {mode} lab to die with its parent")
        took = time.monotonic() - killed_at
        assert took < 5.0
        assert _row(db) == ("running", lab_pid)  # nobody recorded the end ...
        env = dict(os.environ, LLMCORE_CONTENT=str(content))
        shown = subprocess.run([sys.executable, "-m", "llmcore_tui", "--db", str(db), "settings", "show"],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        conn = sqlite3.connect(db)
        status, error = conn.execute("SELECT status, error FROM lab_runs").fetchone()
        assert (status, error) == ("failed", "interrupted: the app stopped while the lab ran")  # ... until the next start
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
    finally:
        _cleanup(runner, lab_pid)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_of_the_runner_cancels_and_records_the_lab(tmp_path, content, sig):
    runner, db, lab_pid = _start_runner(tmp_path, "python", content)
    try:
        os.kill(runner.pid, getattr(signal, sig))
        code = runner.wait(timeout=15)
        assert code == 128 + getattr(signal, sig)
        assert _gone(lab_pid)
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT status FROM lab_runs").fetchone() == ("cancelled",)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
    finally:
        _cleanup(runner, lab_pid)


def test_watch_parent_is_off_without_the_variable(monkeypatch):
    from labs._runtime import PARENT_ENV, watch_parent

    monkeypatch.delenv(PARENT_ENV, raising=False)
    assert watch_parent() is False


def test_a_lab_whose_parent_is_already_gone_exits_at_once(tmp_path):
    """The race the getppid check closes: the parent died before the death signal was set."""
    script = tmp_path / "late.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(REPO)!r})
        os.environ["LLMCORE_LAB_PARENT"] = "999999999"  # a pid that does not exist
        from labs._runtime import watch_parent
        watch_parent()
        time.sleep(30)
    """))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], timeout=30)
    assert proc.returncode == -signal.SIGKILL and time.monotonic() - started < 20


# -- the real app in a pseudo-terminal ------------------------------------------------------------

def _app(tmp_path: Path, content: Path, db: Path, extra_env: dict[str, str]) -> tuple[int, int]:
    import fcntl
    import pty
    import struct
    import termios

    spinner = tmp_path / "spinner.py"
    spinner.write_text(SPINNER.format(repo=str(REPO)))
    painted = tmp_path / f"painted-{time.monotonic_ns()}"
    env = dict(os.environ, LLMCORE_CONTENT=str(content), TERM="xterm-256color", LLMCORE_BENCH_T0=str(time.time()),
               LLMCORE_BENCH_OUT=str(painted), XDG_CACHE_HOME=str(tmp_path / "cache"),
               LLMCORE_LAB_COMMAND=f"{sys.executable} {spinner}", SPIN_MODE="python", **extra_env)
    pid, fd = pty.fork()
    if pid == 0:  # the real app, as a user starts it
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "llmcore_tui", "--db", str(db)], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    _wait(lambda: (drain_pty(fd), painted.exists())[1], 60, "the Today screen")
    return pid, fd


def _launch_lab_in_app(fd: int, db: Path) -> int:
    def running():
        drain_pty(fd)
        row = _row(db)
        return row if row and row[0] == "running" and row[1] else None

    for _ in range(4):  # a busy machine may still be drawing the Labs screen when "t" arrives
        os.write(fd, b"l")  # the Labs screen
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            drain_pty(fd)
            time.sleep(0.05)
        os.write(fd, b"t")  # run the selected lab's toy preset
        try:
            row = _wait(running, 15, "the lab to start from the app")
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("the app never started the lab")
    time.sleep(1.0)
    return row[1]


def _reap(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a POSIX pseudo-terminal")
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGHUP", "SIGTERM"])
def test_the_app_killed_or_hung_up_leaves_no_lab_running(tmp_path, content, sig):
    db = tmp_path / "progress.db"
    pid, fd = _app(tmp_path, content, db, {})
    lab_pid = None
    try:
        lab_pid = _launch_lab_in_app(fd, db)
        os.kill(pid, getattr(signal, sig))
        if sig == "SIGKILL":
            assert _reap(pid, 5) == -signal.SIGKILL
            _wait(lambda: _gone(lab_pid), 5.0, "the lab to die with the app")
            assert _row(db) == ("running", lab_pid)
            # the next start of the app marks the row (and exits after its first paint)
            again, fd2 = _app(tmp_path, content, db, {"LLMCORE_BENCH_EXIT": "1"})
            _wait(lambda: (drain_pty(fd2), _reap(again, 0.1) is not None)[1], 30, "the second app to exit")
            os.close(fd2)
            assert _row(db) == ("failed", lab_pid)
        else:
            code = _wait(lambda: (drain_pty(fd), _reap(pid, 0.1))[1], 20, f"the app to exit on {sig}")
            assert code == 128 + getattr(signal, sig)
            assert _gone(lab_pid)
            assert _row(db) == ("cancelled", lab_pid)  # cancelled and recorded before the app ended
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
    finally:
        for p in (pid, lab_pid):
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os.close(fd)


def test_a_lab_started_from_a_short_lived_thread_outlives_that_thread(tmp_path, monkeypatch):
    """The parent-death signal follows the forking *thread*: the runner forks from a thread that
    lives as long as the process, so a worker thread that starts a lab and ends does not kill it."""
    import threading

    from llmcore_tui.core.labruns import LabRunner
    from llmcore_tui.core.store import Store

    spinner = tmp_path / "spinner.py"
    spinner.write_text(SPINNER.format(repo=str(REPO)))
    monkeypatch.setenv("SPIN_MODE", "python")
    store = Store(tmp_path / "progress.db")
    runner = LabRunner(store, root=tmp_path, command=[sys.executable, str(spinner)])
    handles = []
    def start_then_end() -> None:
        handles.append(runner.start("mdp", toy=True))
        _wait(lambda: handles[0].config is not None, 30, "the start event")  # the lab's guards are set
        time.sleep(0.5)

    worker = threading.Thread(target=start_then_end)
    worker.start()
    worker.join()
    handle = handles[0]
    try:
        time.sleep(2.0)  # the starting thread is gone
        assert not handle.done and not _gone(handle.pid)
    finally:
        handle.cancel(0.5)
        assert handle.wait(15)
        store.close()
    assert handle.status == "cancelled"
