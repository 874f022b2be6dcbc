"""Running labs as child processes and recording every run in the progress store.

A lab is never imported: :class:`LabRunner` starts ``python -m labs NAME --json ...`` in its own
process group (the command is injectable, so tests can run a fake lab), reads its JSON-lines
event stream (``labs/README.md``) and persists it as it arrives:

- ``lab_runs``: one row per run, inserted when the child starts (status ``running``, its pid),
  finished with ``succeeded`` / ``failed`` / ``cancelled``, the exit code, the headline, a
  readable error and the last lines of its log and stderr;
- ``lab_metrics``: every metric, committed in small batches (every 0.5 s or 200 values), so a
  killed app loses at most one batch;
- ``lab_tables``: the tables a lab reports (the latest one of each name).

One reader thread per run pumps the child's stdout with ``select`` (stderr goes to
``<out>/stderr.txt``, so neither pipe can deadlock the other) and writes through its own SQLite
connection, so callers may use theirs from any thread. Callers get the events through an
``on_event`` callback (called in the reader thread) or the :meth:`RunHandle.events` iterator,
plus a synthetic last event ``{"event": "end", "status": ..., "error": ...}``.

A run whose child exits with the usage code (2) before its ``start`` event never ran (a bad
``--set`` value, say): its row is removed and the handle's status is ``rejected``.

No lab outlives the process that started it. The child gets ``LLMCORE_LAB_PARENT=<our pid>``;
the lab runtime (``labs._runtime.watch_parent``) then sets the Linux parent-death signal and
runs a watchdog thread that kills the lab's process group when this process is gone, whatever
the lab is doing (``kill -9`` of the app included). Children are started from the main thread
or from one long-lived spawner thread, because the parent-death signal fires when the *thread*
that forked the child ends. :func:`install_signal_handlers` makes SIGTERM and SIGHUP cancel
this process's labs before it exits; :func:`mark_stale` (run at every start of the app and
the CLI) marks the rows that a killed app left ``running``.

Pure Python (POSIX: process groups and ``select`` on pipes); no textual, no torch.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import queue
import secrets
import select
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labs.registry import BY_NAME, LABS, LabInfo
from llmcore_tui.core.store import ReadOnlyStoreError, Store, now_ts

FLUSH_SECONDS = 0.5  # metrics are committed at least this often ...
FLUSH_METRICS = 200  # ... or as soon as this many are waiting
LOG_TAIL_LINES = 50
STDERR_TAIL_LINES = 30
DEFAULT_GRACE_S = 3.0  # SIGTERM, then SIGKILL after this long
COMMAND_ENV = "LLMCORE_LAB_COMMAND"  # e.g. "python tests/fake_lab/fake.py": replaces "python -m labs"
PARENT_ENV = "LLMCORE_LAB_PARENT"  # the pid the lab watches (labs._runtime.watch_parent)
EXIT_USAGE = 2
INTERRUPTED = "interrupted: the app stopped while the lab ran"
CANCELLED = "cancelled by the user"
FINISHED = ("succeeded", "failed", "cancelled")

Event = dict[str, Any]


class LabRunError(ValueError):
    """A lab cannot be started as asked: unknown lab, a malformed ``--set``, no such program."""


# -- starting and following a run ---------------------------------------------------------

def lab_info(lab: str) -> LabInfo:
    info = BY_NAME.get(lab)
    if info is None:
        raise LabRunError(f"no lab named {lab!r}; labs are: {', '.join(l.name for l in LABS)}")
    return info


def check_assignments(assignments: Sequence[str]) -> list[str]:
    """``key=value`` strings, checked for shape only (the lab checks keys and values)."""
    checked = []
    for assignment in assignments:
        key, sep, _ = assignment.partition("=")
        if not sep or not key.strip():
            raise LabRunError(f"--set expects key=value, got {assignment!r}")
        checked.append(assignment)
    return checked


RUNS_FOLDER = Path("llmcore-output") / "labs"  # beside the database
CHECKPOINTS_ENV = "LLMCORE_LAB_CHECKPOINTS"  # the labs' SFT model cache (labs/_tinylm.py)


def default_root() -> Path:
    """Where labs run (their working folder): the checkout, else the user data folder."""
    from llmcore_tui.core.paths import checkout_root

    root = checkout_root()
    if root is not None:
        return root
    import platformdirs

    return Path(platformdirs.user_data_dir("llmcore-tui"))


def runs_folder(store: Store, root: Path | str | None = None) -> Path:
    """The one place that decides where run files go: ``<runs folder>/<run-id>/`` holds a run's
    ``events.jsonl``, ``stderr.txt`` and whatever the lab writes.

    Beside the database: ``<db folder>/llmcore-output/labs/``, so that ``--db`` elsewhere takes
    its runs with it and the folder one happens to stand in gets nothing. An explicit ``root``
    (a test, a smoke run told where to work) keeps everything under ``<root>/output/labs/``; an
    in-memory database has no folder, so its runs go under the default root's ``output/labs/``.
    """
    if root is not None:
        return (Path(root) / "output" / "labs").resolve()
    if str(store.path) != ":memory:":
        return (Path(store.path).expanduser().resolve().parent / RUNS_FOLDER).resolve()
    return (default_root() / "output" / "labs").resolve()


def new_run_id(lab: str) -> str:
    return f"{lab}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class LabRunner:
    """Starts labs and records their runs in ``store``.

    ``command`` replaces ``[sys.executable, "-m", "labs"]`` (default: the ``LLMCORE_LAB_COMMAND``
    environment variable, split like a shell would); the lab's arguments follow it.
    """

    def __init__(self, store: Store, root: Path | str | None = None, command: Sequence[str] | None = None,
                 grace_s: float = DEFAULT_GRACE_S):
        self.store = store
        self.root = Path(root) if root is not None else default_root()
        self.runs_dir = runs_folder(store, root)
        if command is None:
            env = os.environ.get(COMMAND_ENV)
            command = shlex.split(env) if env else [sys.executable, "-m", "labs"]
        self.command = list(command)
        self.grace_s = grace_s

    def argv(self, lab: str, toy: bool, seed: int | None, assignments: Sequence[str], device: str | None,
             out_dir: Path) -> list[str]:
        argv = [*self.command, lab, "--json", "--out", str(out_dir)]
        if toy:
            argv.append("--toy")
        if seed is not None:
            argv += ["--seed", str(seed)]
        if device is not None:
            argv += ["--device", device]
        for assignment in assignments:
            argv += ["--set", assignment]
        return argv

    def start(self, lab: str, toy: bool = True, seed: int | None = None, assignments: Sequence[str] = (),
              device: str | None = None, on_event: Callable[[Event], None] | None = None) -> "RunHandle":
        """Start the lab and return at once; the run is recorded as ``running`` before this returns.

        With ``on_event`` every event is passed to it (from the reader thread); without it,
        read them with :meth:`RunHandle.events`. Raises :class:`LabRunError` when the lab is
        unknown, a ``--set`` is malformed or the command cannot be executed.
        """
        info = lab_info(lab)
        assignments = check_assignments(assignments)
        if self.store.readonly:  # before any folder or process exists: nothing is left half-done
            raise ReadOnlyStoreError(self.store.readonly_message(f"a run of {lab}"))
        run_id = new_run_id(lab)
        out_dir = self.runs_dir / run_id
        out_dir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)  # the lab's working folder (the user data folder may be new)
        argv = self.argv(lab, toy, seed, assignments, device, out_dir)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # the labs' shared model cache lives with the runs too, not in the lab's working folder
        env.setdefault(CHECKPOINTS_ENV, str(self.runs_dir / "_checkpoints"))
        env[PARENT_ENV] = str(os.getpid())
        requested = {"toy": toy, "seed": seed, "device": device, "set": list(assignments)}
        writer = self.store.reopen()  # the reader thread's own connection
        try:
            with open(out_dir / "stderr.txt", "wb") as stderr_file:
                proc = _spawn(argv, cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=stderr_file, env=env, start_new_session=True, bufsize=0)
        except OSError as exc:
            writer.close()
            raise LabRunError(f"cannot start the lab ({shlex.join(argv[:3])}): {exc}") from None
        handle = RunHandle(run_id, info, "toy" if toy else "full", proc, out_dir, writer,
                           on_event, self.grace_s)
        try:
            with writer.transaction() as conn:
                conn.execute(
                    "INSERT INTO lab_runs(id, lab, day, preset, config_json, status, started_ts, out_dir, pid)"
                    " VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                    (run_id, lab, info.day, handle.preset, json.dumps(requested), now_ts(), str(out_dir), proc.pid),
                )
        except BaseException:
            handle._kill_group(signal.SIGKILL)
            proc.wait()
            writer.close()
            raise
        with _ACTIVE_LOCK:
            _ACTIVE[run_id] = handle
        handle._thread.start()
        return handle


# -- starting children from a thread that lives as long as the process ----------------------------

_SPAWN_QUEUE: "queue.Queue[tuple[Callable[[], subprocess.Popen], queue.Queue]]" = queue.Queue()
_SPAWNER: threading.Thread | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawner_loop() -> None:
    while True:
        make, reply = _SPAWN_QUEUE.get()
        try:
            reply.put((make(), None))
        except BaseException as exc:  # handed back to the caller's thread
            reply.put((None, exc))


def _spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` from the main thread or the spawner thread, never from a short-lived
    worker thread: Linux sends the parent-death signal when the forking *thread* exits."""
    global _SPAWNER
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(argv, **kwargs)
    with _SPAWNER_LOCK:
        if _SPAWNER is None or not _SPAWNER.is_alive():
            _SPAWNER = threading.Thread(target=_spawner_loop, name="lab-spawner", daemon=True)
            _SPAWNER.start()
    reply: queue.Queue = queue.Queue(maxsize=1)
    _SPAWN_QUEUE.put((lambda: subprocess.Popen(argv, **kwargs), reply))
    proc, error = reply.get()
    if error is not None:
        raise error
    return proc


class RunHandle:
    """A running lab. Thread-safe: ``cancel`` and ``wait`` may be called from any thread."""

    def __init__(self, run_id: str, info: LabInfo, preset: str, proc: subprocess.Popen, out_dir: Path,
                 writer: Store, on_event: Callable[[Event], None] | None, grace_s: float):
        self.run_id = run_id
        self.info = info
        self.lab = info.name
        self.preset = preset
        self.proc = proc
        self.pid = proc.pid
        self.out_dir = out_dir
        self.grace_s = grace_s
        # what is known so far (read them from any thread; the reader thread writes them)
        self.status = "running"
        self.exit_code: int | None = None
        self.error: str | None = None
        self.headline: dict[str, Any] | None = None
        self.config: dict[str, Any] | None = None
        self.total_steps: int | None = None
        self.progress: tuple[int, int | None] = (0, None)

        self._writer = writer
        self._on_event = on_event
        self._buffer: deque[Event] | None = deque() if on_event is None else None
        self._cond = threading.Condition()
        self._done = threading.Event()
        self._group_released = False  # after the final SIGKILL: never signal the pid again
        self._cancel_at: float | None = None
        self._started = False
        self._summary = False
        self._error_event: tuple[str, str] | None = None
        self._malformed: str | None = None
        self._internal_error: str | None = None
        self._callback_error: str | None = None
        self._log: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_partial = b""
        self._metrics: list[tuple[str, int, str, float | None]] = []
        self._tables: list[tuple[str, list, list]] = []
        self._row_dirty = False
        self._last_flush = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"lab-{run_id}", daemon=True)

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id} {self.status} pid={self.pid}>"

    # -- the caller's side ------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_at is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run is over and recorded (True), or ``timeout`` seconds passed (False)."""
        return self._done.wait(timeout)

    def cancel(self, grace_s: float | None = None) -> bool:
        """Stop the lab: SIGTERM to its whole process group, SIGKILL after the grace period.

        Returns at once (``wait()`` for the end); False when the run had already ended.
        """
        if self._done.is_set():
            return False
        with self._cond:
            if grace_s is not None:
                self.grace_s = grace_s
            if self._cancel_at is None:
                self._cancel_at = time.monotonic()
        self._kill_group(signal.SIGTERM)
        return True

    def events(self) -> Iterator[Event]:
        """The run's events as they arrive, ending with the ``end`` event (one consumer)."""
        if self._buffer is None:
            raise RuntimeError("this run reports its events through on_event")
        while True:
            with self._cond:
                while not self._buffer and not self._done.is_set():
                    self._cond.wait(0.5)
                if not self._buffer:
                    return
                event = self._buffer.popleft()
            yield event
            if event.get("event") == "end":
                return

    # -- the reader thread --------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as exc:  # the UI's problem must not stop the recording
                self._callback_error = self._callback_error or f"{type(exc).__name__}: {exc}"
            return
        with self._cond:
            assert self._buffer is not None
            self._buffer.append(event)
            self._cond.notify_all()

    def _kill_group(self, sig: int) -> None:
        if self._group_released:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _run(self) -> None:
        try:
            self._pump()
        except BaseException as exc:  # a bug here must not leave the lab running or the row 'running'
            self._internal_error = f"{type(exc).__name__}: {exc}"
            self._kill_group(signal.SIGKILL)
        finally:
            self._finish()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        exited_at: float | None = None
        with open(self.out_dir / "stderr.txt", "rb") as stderr_reader:
            while True:
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        self._line(line)
                self._read_stderr(stderr_reader)
                now = time.monotonic()
                if now - self._last_flush >= FLUSH_SECONDS:
                    self._flush(final=False)
                if exited_at is None and self.proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and not ready and now - exited_at > 0.5:
                    self._kill_group(signal.SIGKILL)  # the lab is gone; what it left behind holds stdout
                self._escalate(now)
            if pending.strip():
                self._line(pending)
            while self.proc.poll() is None:  # stdout closed, the lab still running
                time.sleep(0.1)
                self._read_stderr(stderr_reader)
                self._escalate(time.monotonic())
            self._kill_group(signal.SIGKILL)  # stragglers of a lab that has exited
            self._read_stderr(stderr_reader, final=True)

    def _escalate(self, now: float) -> None:
        cancel_at = self._cancel_at
        if cancel_at is not None and now - cancel_at > self.grace_s:
            self._kill_group(signal.SIGKILL)

    def _read_stderr(self, reader: Any, final: bool = False) -> None:
        data = reader.read()
        if not data and not (final and self._stderr_partial):
            return
        *lines, self._stderr_partial = (self._stderr_partial + (data or b"")).split(b"\n")
        if final and self._stderr_partial:
            lines.append(self._stderr_partial)
            self._stderr_partial = b""
        for raw in lines:
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                self._stderr.append(text)
                self._emit({"event": "stderr", "text": text})

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            if self._malformed is None:
                self._malformed = text[:200]
            self._log.append(f"[not an event] {text}")
            self._emit({"event": "malformed", "text": text})
            return
        try:
            self._record(event)
        except (TypeError, ValueError, AttributeError) as exc:
            if self._malformed is None:
                self._malformed = f"{text[:200]} ({exc})"
            self._emit({"event": "malformed", "text": text})
            return
        self._emit(event)

    def _record(self, event: Event) -> None:
        kind = event["event"]
        if kind == "start":
            self._started = True
            config = event.get("config")
            self.config = config if isinstance(config, dict) else None
            total = event.get("total_steps")
            self.total_steps = int(total) if isinstance(total, (int, float)) else None
            self.progress = (0, self.total_steps)
            self._row_dirty = True
        elif kind == "metric":
            step = int(event.get("step", 0))
            for key, value in dict(event.get("values") or {}).items():
                number = _number(value)
                if number is not _SKIP:
                    self._metrics.append((self.run_id, step, str(key), number))
            if len(self._metrics) >= FLUSH_METRICS:
                self._flush(final=False)
        elif kind == "progress":
            total = event.get("total")
            self.progress = (int(event.get("done", 0)), int(total) if isinstance(total, (int, float)) else None)
        elif kind == "log":
            self._log.extend(str(event.get("text", "")).splitlines() or [""])
            self._row_dirty = True
        elif kind == "table":
            self._tables.append((str(event["name"]), list(event.get("columns") or []), list(event.get("rows") or [])))
        elif kind == "summary":
            headline = event.get("headline")
            self.headline = dict(headline) if isinstance(headline, dict) else {}
            self._summary = True
            self._row_dirty = True
        elif kind == "error":
            self._error_event = (str(event.get("message") or "the lab reported an error"), str(event.get("detail") or ""))
        # other event kinds are newer than this reader: passed on, not recorded

    def _flush(self, final: bool) -> None:
        self._last_flush = time.monotonic()
        if not (self._metrics or self._tables or self._row_dirty or final):
            return
        metrics, tables = self._metrics, self._tables
        try:
            with self._writer.transaction() as conn:
                if metrics:
                    conn.executemany("INSERT INTO lab_metrics(run_id, step, key, value) VALUES (?, ?, ?, ?)", metrics)
                for name, columns, rows in tables:
                    conn.execute("DELETE FROM lab_tables WHERE run_id = ? AND name = ?", (self.run_id, name))
                    conn.execute("INSERT INTO lab_tables(run_id, name, columns_json, rows_json) VALUES (?, ?, ?, ?)",
                                 (self.run_id, name, json.dumps(columns), json.dumps(rows)))
                if self._row_dirty:
                    conn.execute(
                        "UPDATE lab_runs SET config_json = coalesce(?, config_json), headline_json = ?, log_tail = ?"
                        " WHERE id = ?",
                        (json.dumps(self.config) if self.config is not None else None,
                         json.dumps(self.headline) if self.headline is not None else None,
                         self._log_tail(), self.run_id),
                    )
        except sqlite3.OperationalError:
            if final:
                raise
            return  # the database is busy: keep the batch and try again at the next flush
        self._metrics, self._tables, self._row_dirty = [], [], False

    def _log_tail(self, detail: str = "") -> str:
        lines = list(self._log)
        if detail:
            lines += ["--- traceback ---", *detail.rstrip().splitlines()[-STDERR_TAIL_LINES:]]
        if self._stderr:
            lines += ["--- stderr ---", *self._stderr]
        return "\n".join(lines)

    def _outcome(self, code: int) -> tuple[str, str | None]:
        if self._internal_error:
            return "failed", f"the lab runner failed: {self._internal_error}"
        if code == 0 and self._summary and not self._error_event and not self._malformed:
            return "succeeded", None
        if self._cancel_at is not None:
            return "cancelled", CANCELLED
        last_stderr = next((line for line in reversed(self._stderr) if line.strip()), "")
        if code == EXIT_USAGE and not self._started:
            message = self._error_event[0] if self._error_event else last_stderr or "usage error"
            return "rejected", message.removeprefix("python -m labs: error: ")
        if self._error_event:
            return "failed", self._error_event[0]
        if self._malformed:
            return "failed", f"the lab printed a line that is not a JSON event: {self._malformed}"
        if code == 0:
            return "failed", "the lab ended without a summary"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return "failed", f"the lab was killed by signal {name}"
        if code == 130:
            return "failed", "the lab was interrupted"
        return "failed", f"the lab exited with code {code}" + (f": {last_stderr}" if last_stderr else "")

    def _finish(self) -> None:
        try:
            code = self.proc.wait()
            self._kill_group(signal.SIGKILL)
            self._group_released = True
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            status, error = self._outcome(code)
            self.exit_code = code
            if status == "rejected":
                with self._writer.transaction() as conn:
                    for table in ("lab_metrics", "lab_tables"):
                        conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (self.run_id,))
                    conn.execute("DELETE FROM lab_runs WHERE id = ?", (self.run_id,))
                shutil.rmtree(self.out_dir, ignore_errors=True)  # nothing ran: no folder to keep
            else:
                self._row_dirty = False
                self._flush(final=True)
                detail = self._error_event[1] if self._error_event and status == "failed" else ""
                with self._writer.transaction() as conn:
                    conn.execute(
                        "UPDATE lab_runs SET status = ?, ended_ts = ?, exit_code = ?, headline_json = ?, error = ?,"
                        " log_tail = ?, config_json = coalesce(?, config_json) WHERE id = ?",
                        (status, now_ts(), code, json.dumps(self.headline) if self.headline is not None else None,
                         error, self._log_tail(detail), json.dumps(self.config) if self.config is not None else None,
                         self.run_id),
                    )
            self.error, self.status = error, status
        except BaseException as exc:  # the run could not be recorded: say so to the caller
            self.status = "failed"
            self.error = f"could not record the run: {type(exc).__name__}: {exc}"
        finally:
            self._writer.close()
            with _ACTIVE_LOCK:
                _ACTIVE.pop(self.run_id, None)
            self._emit({"event": "end", "run_id": self.run_id, "status": self.status, "exit_code": self.exit_code,
                        "error": self.error, "headline": self.headline})
            with self._cond:
                self._done.set()
                self._cond.notify_all()


_SKIP = object()


def _number(value: Any) -> Any:
    """A metric value as stored: a float, None for a non-finite one, _SKIP for a non-number."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    return _SKIP


# -- runs still going in this process -----------------------------------------------------------

_ACTIVE: dict[str, RunHandle] = {}
_ACTIVE_LOCK = threading.Lock()


def active_runs() -> list[RunHandle]:
    with _ACTIVE_LOCK:
        return list(_ACTIVE.values())


def cancel_all(grace_s: float = 1.0, wait_s: float | None = None) -> None:
    """Cancel every run of this process and wait (up to grace + 2 s) until each is recorded."""
    handles = active_runs()
    for handle in handles:
        handle.cancel(grace_s)
    deadline = time.monotonic() + (grace_s + 2.0 if wait_s is None else wait_s)
    for handle in handles:
        handle.wait(max(0.0, deadline - time.monotonic()))


atexit.register(cancel_all)  # no lab outlives the app (they run in their own sessions)


def install_signal_handlers(then: Callable[[int], None] | None = None) -> None:
    """On SIGTERM or SIGHUP (the terminal closed): cancel this process's labs, wait until each is
    recorded, then ``then(signum)`` (default: exit with 128 + signum). Main thread only."""
    def handler(signum: int, frame: Any) -> None:
        cancel_all(grace_s=1.0)
        if then is not None:
            then(signum)
        else:
            raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, handler)


# -- reading runs back ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RunRecord:
    id: str
    lab: str
    day: int | None
    preset: str | None
    config: dict[str, Any]
    status: str
    started_ts: float
    ended_ts: float | None
    exit_code: int | None
    headline: dict[str, Any] | None
    error: str | None
    log_tail: str
    out_dir: str | None
    pid: int | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "RunRecord":
        return cls(row["id"], row["lab"], row["day"], row["preset"], _loads(row["config_json"]) or {},
                   row["status"], row["started_ts"], row["ended_ts"], row["exit_code"],
                   _loads(row["headline_json"]), row["error"], row["log_tail"] or "", row["out_dir"], row["pid"])

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_ts is None else self.ended_ts - self.started_ts


@dataclass(frozen=True)
class LabTable:
    name: str
    columns: list[Any]
    rows: list[list[Any]]


def _loads(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _pid_runs(pid: int | None, run_id: str) -> bool:
    """Is ``pid`` still the lab of ``run_id``? (A recycled pid runs something else.)"""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return True  # no /proc here: trust the pid
    if state in ("Z", "X"):
        return False  # dead, waiting to be reaped
    return not cmdline or run_id.encode() in cmdline  # empty for a moment after exec


def mark_stale(store: Store) -> list[str]:
    """Runs left 'running' by an app that stopped: mark them failed. Returns their ids (none
    are marked, and none returned, on a read-only database)."""
    if store.readonly:
        return []
    rows = store.query("SELECT id, pid FROM lab_runs WHERE status = 'running'")
    with _ACTIVE_LOCK:
        mine = set(_ACTIVE)
    stale = [r["id"] for r in rows if r["id"] not in mine and not _pid_runs(r["pid"], r["id"])]
    if stale:
        with store.transaction() as conn:
            conn.executemany("UPDATE lab_runs SET status = 'failed', error = ? WHERE id = ? AND status = 'running'",
                             [(INTERRUPTED, run_id) for run_id in stale])
    return stale


def list_runs(store: Store, lab: str | None = None, limit: int | None = None) -> list[RunRecord]:
    """Runs, newest first (stale 'running' rows are marked failed first)."""
    mark_stale(store)
    sql = "SELECT * FROM lab_runs" + (" WHERE lab = ?" if lab else "") + " ORDER BY started_ts DESC, rowid DESC"
    params: tuple = (lab,) if lab else ()
    if limit is not None:
        sql += " LIMIT ?"
        params += (int(limit),)
    return [RunRecord.from_row(r) for r in store.query(sql, params)]


def latest_runs(store: Store) -> dict[str, RunRecord]:
    """The newest run of each lab."""
    latest: dict[str, RunRecord] = {}
    for run in list_runs(store):
        latest.setdefault(run.lab, run)
    return latest


def get_run(store: Store, run_id: str) -> RunRecord | None:
    mark_stale(store)
    rows = store.query("SELECT * FROM lab_runs WHERE id = ?", (run_id,))
    return RunRecord.from_row(rows[0]) if rows else None


def find_run(store: Store, ref: str) -> RunRecord:
    """A run by id or by an unambiguous start of it; LookupError says what went wrong."""
    run = get_run(store, ref)
    if run is not None:
        return run
    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = store.query("SELECT id FROM lab_runs WHERE id LIKE ? ESCAPE '\\' ORDER BY started_ts DESC",
                       (escaped + "%",))
    if not rows:
        raise LookupError(f"no lab run {ref!r}; `llmcore-tui lab list` shows the latest runs")
    if len(rows) > 1:
        shown = ", ".join(r["id"] for r in rows[:5])
        raise LookupError(f"{ref!r} matches {len(rows)} runs ({shown}{', ...' if len(rows) > 5 else ''})")
    run = get_run(store, rows[0]["id"])
    assert run is not None
    return run


def run_metrics(store: Store, run_id: str) -> dict[str, list[tuple[int, float | None]]]:
    """Every metric of a run: ``{key: [(step, value), ...]}`` in step order (None: non-finite)."""
    series: dict[str, list[tuple[int, float | None]]] = {}
    for key, step, value in store.conn.execute(
            "SELECT key, step, value FROM lab_metrics WHERE run_id = ? ORDER BY key, step, rowid", (run_id,)):
        series.setdefault(key, []).append((step, value))
    return series


def run_tables(store: Store, run_id: str) -> list[LabTable]:
    return [LabTable(r["name"], _loads(r["columns_json"]) or [], _loads(r["rows_json"]) or [])
            for r in store.query("SELECT * FROM lab_tables WHERE run_id = ? ORDER BY rowid", (run_id,))]


@dataclass(frozen=True)
class SeriesSummary:
    points: int
    first: float | None
    last: float | None
    low: float | None
    high: float | None


def summarize(series: Sequence[tuple[int, float | None]]) -> SeriesSummary:
    values = [v for _, v in series if v is not None]
    return SeriesSummary(len(series), values[0] if values else None, values[-1] if values else None,
                         min(values) if values else None, max(values) if values else None)


@dataclass(frozen=True)
class Comparison:
    runs: list[RunRecord]
    headline: dict[str, list[Any]]  # key -> one value per run (None where a run lacks it)
    config: dict[str, list[Any]]  # only the settings that differ between the runs
    final: dict[str, list[float | None]]  # the last value of each metric, per run


def compare(store: Store, run_ids: Sequence[str]) -> Comparison:
    """Headline numbers, differing settings and final metric values of several runs, side by side."""
    runs = []
    for run_id in run_ids:
        run = get_run(store, run_id)
        if run is None:
            raise LookupError(f"no lab run {run_id!r}")
        runs.append(run)
    headline: dict[str, list[Any]] = {}
    for key in _union(run.headline or {} for run in runs):
        headline[key] = [(run.headline or {}).get(key) for run in runs]
    config: dict[str, list[Any]] = {}
    for key in _union(run.config for run in runs):
        values = [run.config.get(key) for run in runs]
        if any(v != values[0] for v in values):
            config[key] = values
    finals = [{k: summarize(v).last for k, v in run_metrics(store, run.id).items()} for run in runs]
    final = {key: [f.get(key) for f in finals] for key in _union(finals)}
    return Comparison(runs, headline, config, final)


def _union(dicts: Any) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


# -- presenting -------------------------------------------------------------------------------

_PREFIX_RANK = {"eval": 0, "charts": 1, "losses": 2}


def informative_keys(series: dict[str, Sequence[tuple[int, float | None]]], n: int | None = None) -> list[str]:
    """Metric keys worth a chart first: ones that change over several steps, eval/ and charts/
    before losses/ before the rest; constant or single-point series next, empty ones last."""
    def rank(key: str) -> tuple[int, int, str]:
        values = [v for _, v in series[key] if v is not None]
        moving = len(values) >= 2 and max(values) != min(values)
        return (0 if moving else 1 if values else 2, _PREFIX_RANK.get(key.split("/", 1)[0], 3), key)

    keys = sorted(series, key=rank)
    return keys if n is None else keys[:n]


def fmt_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(fmt_value(v) for v in value)
    return str(value)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
