"""Running labs as child processes; each run is decoded and recorded as it arrives.

A lab is never imported: :class:`LabRunner` starts ``python -m labs NAME --json ...`` in its own
process group (the command is injectable, so tests can run a fake lab) and reads its JSON-lines
event stream (``labs/README.md``). Each line is decoded once, by ``labs.protocol.parse``, folded
into the run's :class:`~labs.protocol.LiveRun` (``handle.live``) and handed to its
:class:`~llmcore_tui.core.labrecorder.RunRecorder`, which writes the run's row, metrics, tables and
charts to the store (:mod:`llmcore_tui.core.labhistory` reads them back). A line that is not an
event is recorded as ``malformed`` and fails the run at its end, without stopping it.

One reader thread per run pumps the child's stdout with ``select`` (stderr goes to
``<out>/stderr.txt``, so neither pipe can deadlock the other) and writes through its own SQLite
connection, so callers may use theirs from any thread. Callers get the events through an
``on_event`` callback (called in the reader thread) or the :meth:`RunHandle.events` iterator, as
JSON objects (``protocol.encode``), plus ``stderr`` and ``malformed`` lines and a synthetic last
event ``{"event": "end", "status": ..., "error": ...}``.

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
import os
import queue
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from labs import protocol
from labs.registry import BY_NAME, LABS, LabInfo
from llmcore_tui.core.labhistory import (  # noqa: F401  (names the screens, brief and smoke import from here)
    Comparison, RunRecord, compare, find_run, get_run, informative_keys, latest_runs, list_runs, load_run,
    run_metrics, run_tables)
from llmcore_tui.core.labrecorder import FLUSH_SECONDS, INTERRUPTED, RunRecorder, mark_stale  # noqa: F401
from llmcore_tui.core.store import ReadOnlyStoreError, Store

LOG_TAIL_LINES = 50
STDERR_TAIL_LINES = 30
DEFAULT_GRACE_S = 3.0  # SIGTERM, then SIGKILL after this long
COMMAND_ENV = "LLMCORE_LAB_COMMAND"  # e.g. "python tests/fake_lab/fake.py": replaces "python -m labs"
PARENT_ENV = "LLMCORE_LAB_PARENT"  # the pid the lab watches (labs._runtime.watch_parent)
EXIT_USAGE = 2
CANCELLED = "cancelled by the user"

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
                proc = spawn_child(argv, cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=stderr_file, env=env, start_new_session=True, bufsize=0)
        except OSError as exc:
            writer.close()
            raise LabRunError(f"cannot start the lab ({shlex.join(argv[:3])}): {exc}") from None
        handle = RunHandle(run_id, info, "toy" if toy else "full", proc, out_dir, writer, on_event, self.grace_s)
        try:
            handle._recorder.insert(lab, info.day, handle.preset, requested, out_dir, proc.pid)
        except BaseException:
            handle._kill_group(signal.SIGKILL)
            proc.wait()
            handle._recorder.close()
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


def spawn_child(argv: list[str], **kwargs: Any) -> subprocess.Popen:
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
    """A running lab. Thread-safe: ``cancel``, ``wait`` and ``live`` may be used from any thread."""

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
        # the outcome (the reader thread sets them at the end)
        self.status = "running"
        self.exit_code: int | None = None
        self.error: str | None = None

        self._live = protocol.LiveRun(info.name)  # written by the reader thread under _cond
        self._recorder = RunRecorder(writer, run_id, self._live, self._log_tail)
        self._on_event = on_event
        self._buffer: deque[Event] | None = deque() if on_event is None else None
        self._cond = threading.Condition()
        self._done = threading.Event()
        self._group_released = False  # after the final SIGKILL: never signal the pid again
        self._cancel_at: float | None = None
        self._malformed: str | None = None
        self._internal_error: str | None = None
        self._callback_error: str | None = None
        self._log: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_partial = b""
        self._thread = threading.Thread(target=self._run, name=f"lab-{run_id}", daemon=True)

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id} {self.status} pid={self.pid}>"

    # -- the caller's side ------------------------------------------------------------------
    @property
    def live(self) -> protocol.LiveRun:
        """The run so far (config, progress, series, tables, charts, headline): a snapshot, safe to
        read while the run goes on."""
        with self._cond:
            return self._live.copy()

    @property
    def headline(self) -> dict[str, Any] | None:
        return self._live.headline

    @property
    def config(self) -> dict[str, Any] | None:
        return self._live.config if self._live.started else None

    @property
    def progress(self) -> tuple[int, int | None]:
        return self._live.done, self._live.total_steps

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
                if now - self._recorder.last_flush >= FLUSH_SECONDS:
                    self._recorder.flush()
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
        """One line of the lab's stdout: decoded once, folded into the run, recorded, passed on."""
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            event = protocol.parse(text)
        except protocol.ProtocolError as exc:  # recorded, and the run fails at its end; it is not stopped
            if self._malformed is None:
                self._malformed = text[:200] if isinstance(exc, protocol.NotAnEvent) else f"{text[:200]} ({exc})"
            self._log.append(f"[not an event] {text}")
            self._emit({"event": "malformed", "text": text})
            return
        with self._cond:
            self._live.apply(event)
        if isinstance(event, protocol.Log):
            self._log.extend(event.text.splitlines() or [""])
        self._recorder.record(event)
        self._emit(protocol.encode(event))

    def _log_tail(self, detail: str = "") -> str:
        lines = list(self._log)
        if detail:
            lines += ["--- traceback ---", *detail.rstrip().splitlines()[-STDERR_TAIL_LINES:]]
        if self._stderr:
            lines += ["--- stderr ---", *self._stderr]
        return "\n".join(lines)

    def _outcome(self, code: int) -> tuple[str, str | None]:
        live = self._live
        if self._internal_error:
            return "failed", f"the lab runner failed: {self._internal_error}"
        if code == 0 and live.succeeded and not self._malformed:
            return "succeeded", None
        if self._cancel_at is not None:
            return "cancelled", CANCELLED
        last_stderr = next((line for line in reversed(self._stderr) if line.strip()), "")
        if code == EXIT_USAGE and not live.started:
            message = live.error.message if live.error else last_stderr or "usage error"
            return "rejected", message.removeprefix("python -m labs: error: ")
        if live.error:
            return "failed", live.error.message
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
                self._recorder.discard()
                shutil.rmtree(self.out_dir, ignore_errors=True)  # nothing ran: no folder to keep
            else:
                detail = self._live.error.detail if self._live.error and status == "failed" else ""
                self._recorder.finish(status, code, error, detail)
            self.error, self.status = error, status
        except BaseException as exc:  # the run could not be recorded: say so to the caller
            self.status = "failed"
            self.error = f"could not record the run: {type(exc).__name__}: {exc}"
        finally:
            self._recorder.close()
            with _ACTIVE_LOCK:
                _ACTIVE.pop(self.run_id, None)
            self._emit({"event": "end", "run_id": self.run_id, "status": self.status, "exit_code": self.exit_code,
                        "error": self.error, "headline": self.headline})
            with self._cond:
                self._done.set()
                self._cond.notify_all()


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
