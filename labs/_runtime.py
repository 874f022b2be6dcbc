"""The lab runner: argument parsing, config overrides, seeding and the event stream.

A lab module provides

    @dataclass
    class Config: ...            # the full preset; must have ``seed`` and ``device`` fields
    TOY: dict[str, object]       # overrides that make the --toy preset (CI-sized)
    def run(cfg: Config, emit: Emitter, out_dir: pathlib.Path) -> None

and reports everything through ``emit``. This module knows nothing about any
particular algorithm and imports torch only to seed it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
import traceback
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Sequence

from labs import protocol
from labs.registry import BY_NAME, LABS

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class LabUsageError(ValueError):
    """A bad command line: unknown lab, unknown option, or a value of the wrong type."""


class LabFailure(RuntimeError):
    """A lab could not do its job (e.g. a result failed a sanity check). Raise it loudly."""


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (and are flagged by the reader), tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _clean(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


class Emitter:
    """Writes the lab's events: JSON lines (``--json``) or readable text for a terminal.

    Events are built as :mod:`labs.protocol` types and written with ``protocol.encode``, the
    vocabulary every reader decodes with ``protocol.parse``. Right after ``start`` comes the
    ``charts`` event with the figures the lab declares (its module's ``CHARTS``). Every event is
    also appended to ``events.jsonl`` in the run's output folder, so a run can be inspected
    after the fact whichever way it was started.
    """

    def __init__(self, lab: str, stream: IO[str], json_mode: bool, events_file: Path | None = None,
                 charts: Sequence[protocol.Chart] = ()):
        self.lab = lab
        self.stream = stream
        self.json_mode = json_mode
        self.charts = tuple(charts)
        self._events = events_file.open("a", encoding="utf-8") if events_file else None
        self._last_print = 0.0
        self.total_steps: int | None = None
        self.headline: dict[str, Any] | None = None

    def _send(self, event: protocol.Event) -> None:
        line = json.dumps(_clean(protocol.encode(event)), allow_nan=False, ensure_ascii=False)
        if self._events:
            self._events.write(line + "\n")
            self._events.flush()
        if self.json_mode:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _say(self, text: str) -> None:
        if not self.json_mode:
            self.stream.write(text + "\n")
            self.stream.flush()

    # -- the event vocabulary -------------------------------------------------------------
    def start(self, config: Any, total_steps: int | None) -> None:
        """First event: the resolved config (a dataclass or dict) and the planned number of steps;
        then the declared charts."""
        if dataclasses.is_dataclass(config):
            config = dataclasses.asdict(config)
        self.total_steps = total_steps
        self._send(protocol.Start(self.lab, config, total_steps))
        if self.charts:
            self._send(protocol.Charts(self.charts))
        self._say(f"lab {self.lab}: " + ", ".join(f"{k}={v}" for k, v in config.items()))

    def metric(self, step: int, **values: float) -> None:
        """Scalar metrics at a step. Names are stable, 'group/name' style (e.g. 'losses/value').
        A value that is not a number is a bug in the lab: ProtocolError, here, not in the reader."""
        self._send(protocol.Metric(int(step), {k: protocol.number(_clean(v)) for k, v in values.items()}))
        now = time.monotonic()
        if now - self._last_print > 1.0:  # a terminal does not need every step
            self._last_print = now
            shown = ", ".join(f"{k}={protocol.fmt_value(v)}" for k, v in values.items())
            self._say(f"  step {step}: {shown}")

    def progress(self, done: int, total: int | None = None) -> None:
        total = total if total is not None else self.total_steps
        self._send(protocol.Progress(int(done), total))

    def log(self, text: str) -> None:
        self._send(protocol.Log(text))
        self._say(text)

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self._send(protocol.Table(name, list(columns), [list(r) for r in rows]))
        self._say(f"{name}:\n" + protocol.format_table(columns, rows))

    def summary(self, headline: dict[str, Any], artifacts: Sequence[str] = ()) -> None:
        self.headline = dict(headline)
        self._send(protocol.Summary(dict(headline), [str(a) for a in artifacts]))
        self._say("summary:\n" + protocol.format_table(["metric", "value"], [[k, v] for k, v in headline.items()]))

    def error(self, message: str, detail: str = "") -> None:
        self._send(protocol.Error(message, detail))
        if not self.json_mode:
            sys.stderr.write(f"error: {message}\n")

    def close(self) -> None:
        if self._events:
            self._events.close()


# -- configs ------------------------------------------------------------------------------

def _coerce(raw: str, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if raw.lower() in ("none", "null") and len(options) < len(args):
            return None
        return _coerce(raw, options[0], key)
    if origin in (tuple, list):
        inner = args[0] if args else str
        parts = [p for p in raw.split(",") if p.strip()]
        values = [_coerce(p.strip(), inner, key) for p in parts]
        return tuple(values) if origin is tuple else values
    try:
        if annotation is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if annotation is int:
            return int(raw)
        if annotation is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
        if annotation is str:
            return raw
    except ValueError:
        kind = getattr(annotation, "__name__", str(annotation))
        raise LabUsageError(f"--set {key}={raw}: expected a {kind}") from None
    raise LabUsageError(f"--set {key}: values of type {annotation} cannot be set from the command line")


@dataclass(frozen=True)
class Range:
    """Allowed values of one config field (each element, for a tuple), declared in the lab's ``LIMITS``.

    ``LIMITS = {"gamma": Range(0, 1, low_open=True), "kv_heads": Range(1)}`` beside the
    Config: the runtime checks every listed field before the run starts and names the field
    in the usage error. A tuple or list field must not be empty unless ``may_be_empty``.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    may_be_empty: bool = False

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'<' if self.high_open else '<='} {self.high:g}"
        return None


def check_limits(cfg: Any, limits: dict[str, Range]) -> None:
    """Raise LabUsageError naming the first field whose value its Range (or emptiness) forbids."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        limit = limits.get(f.name, Range())
        values = value if isinstance(value, (tuple, list)) else (value,)
        if isinstance(value, (tuple, list)) and not value and not limit.may_be_empty:
            raise LabUsageError(f"{f.name}: needs at least one value")
        for item in values:
            problem = limit.problem(item)
            if problem:
                raise LabUsageError(f"{f.name}={item}: {problem}")


def apply_overrides(cfg: Any, overrides: dict[str, Any] | None = None, assignments: Sequence[str] = ()) -> Any:
    """A copy of ``cfg`` with preset overrides (already typed) and ``key=value`` strings applied."""
    hints = typing.get_type_hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]
    changes: dict[str, Any] = dict(overrides or {})
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise LabUsageError(f"--set expects key=value, got {assignment!r}")
        if key not in names:
            raise LabUsageError(f"--set {key}: no such setting; settings are: {', '.join(names)}")
        changes[key] = _coerce(raw.strip(), hints[key], key)
    unknown = [k for k in changes if k not in names]
    if unknown:
        raise LabUsageError(f"unknown setting(s) {', '.join(unknown)}; settings are: {', '.join(names)}")
    new = dataclasses.replace(cfg, **changes)
    module = sys.modules.get(type(cfg).__module__)
    check_limits(new, getattr(module, "LIMITS", {}))
    validate = getattr(new, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise LabUsageError(str(exc)) from None
    return new


def seed_everything(seed: int) -> None:
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    if "torch" in sys.modules:  # only labs that use torch pay for importing it
        import torch

        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)


# -- the parent watch: a lab never outlives the app that started it --------------------------------

PARENT_ENV = "LLMCORE_LAB_PARENT"  # set by llmcore_tui.core.labruns to the starting process's pid
PR_SET_PDEATHSIG = 1
_FORKED_FROM_MAIN = [False]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_own_group() -> None:
    """SIGKILL this lab and everything it started (it leads its own process group when the app
    started it); only itself otherwise."""
    try:
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
    finally:
        os.kill(os.getpid(), signal.SIGKILL)


def _set_parent_death_signal() -> bool:
    """Linux: the kernel sends SIGKILL to this process when its parent (thread) dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _before_fork() -> None:
    _FORKED_FROM_MAIN[0] = threading.current_thread() is threading.main_thread()


def _after_fork_in_child() -> None:
    # a forked helper (the parallel lab's ranks on CPU) dies with the lab; the death signal is
    # tied to the forking thread, so only when that was the lab's main thread
    if _FORKED_FROM_MAIN[0]:
        _set_parent_death_signal()


def watch_parent(poll_s: float = 0.2, death_signal: bool = True) -> bool:
    """When started by the app (``LLMCORE_LAB_PARENT`` set), die with it.

    Two guards, because either alone has a gap: the Linux parent-death signal (SIGKILL from the
    kernel even while the lab holds the GIL in a long C call), set first and then checked
    against the expected parent pid, which closes the race of a parent that died before it was
    set; and a watchdog thread, portable, that polls every ``poll_s`` whether the parent pid
    changed or is gone and then SIGKILLs the lab's whole process group. Returns True when the
    watch is on. (``death_signal=False`` leaves the watchdog alone, for its test.)
    """
    raw = os.environ.pop(PARENT_ENV, "")  # the lab's own children are not started by the app
    if not raw.isdigit():
        return False
    expected = int(raw)
    first_parent = os.getppid()
    if first_parent == expected and death_signal:
        _set_parent_death_signal()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    if os.getppid() != first_parent or not _alive(expected):  # the parent died before the signal was set
        _kill_own_group()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != first_parent or not _alive(expected):
                _kill_own_group()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return True


THREADS_ENV = "LABS_TORCH_THREADS"


def torch_threads(default: int) -> int:
    """The torch CPU thread count a lab should use: ``--threads`` when given, else ``default``.

    ``--threads`` travels in an environment variable so that a lab's own child processes
    (the parallel lab's ranks) see it too. Results must not depend on it: ``make robust``
    runs every lab's toy on 1 and on 2 threads.
    """
    raw = os.environ.get(THREADS_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


def check_device(device: str) -> None:
    if device == "cpu":
        return
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise LabUsageError("--device cuda: no CUDA device is available here; use --device cpu")
        return
    raise LabUsageError(f"--device {device}: expected cpu or cuda")


def load_lab(name: str) -> types.ModuleType:
    if name not in BY_NAME:
        raise LabUsageError(f"no lab named {name!r}; labs are: {', '.join(l.name for l in LABS)}")
    return importlib.import_module(f"labs.{name}")


def make_config(module: types.ModuleType, toy: bool, seed: int | None, device: str | None,
                assignments: Sequence[str] = (), threads: int | None = None) -> Any:
    overrides: dict[str, Any] = dict(getattr(module, "TOY", {})) if toy else {}
    if seed is not None:
        overrides["seed"] = seed
    if device is not None:
        overrides["device"] = device
    if threads is not None and "threads" in {f.name for f in dataclasses.fields(module.Config)}:
        overrides["threads"] = threads
    return apply_overrides(module.Config(), overrides, assignments)


LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")  # torchrun sets them all


def launcher_place() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when a launcher (torchrun) started this process, None when
    none did: the one reader of the launcher's variables. A half-set or malformed environment is a
    usage error: it would otherwise hang at the rendezvous."""
    env = os.environ
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return None
    missing = [k for k in LAUNCHER_ENV if not env.get(k)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise LabUsageError(f"RANK or WORLD_SIZE is set but {', '.join(missing)} {verb} not: start the ranks with "
                            "torchrun, which sets them all")
    if not all(env[k].isdigit() for k in LAUNCHER_ENV[:3]) or int(env["RANK"]) >= int(env["WORLD_SIZE"]):
        raise LabUsageError(f"RANK={env['RANK']}, WORLD_SIZE={env['WORLD_SIZE']}, LOCAL_RANK={env['LOCAL_RANK']}: "
                            "expected whole numbers with RANK < WORLD_SIZE")
    return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])


def default_out_dir(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("output") / "labs" / f"{name}-{stamp}-{os.getpid()}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m labs",
        description="Run one lab of the course and stream its metrics.",
        epilog="Labs: " + ", ".join(f"{l.name} (day {l.day})" for l in LABS),
    )
    parser.add_argument("name", help="the lab to run")
    parser.add_argument("--toy", action="store_true", help="the small preset (seconds on a laptop CPU)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the config's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: the lab's own choice, usually 1)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value; repeatable")
    parser.add_argument("--json", action="store_true", help="print the JSON-lines event stream")
    parser.add_argument("--out", type=Path, default=None, help="folder for the run's files")
    parser.add_argument("--show-config", action="store_true", help="print the resolved config as JSON and exit")
    return parser


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # argparse would exit; we want one code path
        raise _ArgumentError(message)


def main(argv: Sequence[str] | None = None, stream: IO[str] | None = None) -> int:
    stream = stream or sys.stdout
    parser = build_parser()
    parser.__class__ = _Parser
    try:
        args = parser.parse_args(argv)
        module = load_lab(args.name)
        if args.threads is not None and args.threads < 1:
            raise LabUsageError(f"--threads {args.threads}: expected a positive number")
        cfg = make_config(module, args.toy, args.seed, args.device, args.assignments, args.threads)
        check_device(cfg.device)
        place = launcher_place()
    except (_ArgumentError, LabUsageError) as exc:
        if "--json" in (argv if argv is not None else sys.argv[1:]):
            stream.write(json.dumps(protocol.encode(protocol.Error(str(exc), "usage"))) + "\n")
        sys.stderr.write(f"python -m labs: error: {exc}\n")
        return EXIT_USAGE

    config = _clean(dataclasses.asdict(cfg))
    if args.show_config:
        stream.write(json.dumps(config, indent=2) + "\n")
        return EXIT_OK

    watch_parent()
    previous_threads = os.environ.get(THREADS_ENV)
    if args.threads is not None:
        os.environ[THREADS_ENV] = str(args.threads)
    scratch = None
    if args.out is None and place is not None and place[0] != 0:
        # a launcher's rank other than 0 reports nothing: no run folder of its own beside rank 0's
        scratch = tempfile.TemporaryDirectory(prefix=f"lab-{args.name}-rank{place[0]}-")
    out_dir = Path(scratch.name) if scratch else (args.out or default_out_dir(args.name))
    out_dir.mkdir(parents=True, exist_ok=True)
    emit = Emitter(args.name, stream, args.json, None if scratch else out_dir / "events.jsonl",
                   getattr(module, "CHARTS", ()))
    try:
        seed_everything(cfg.seed)
        module.run(cfg, emit, out_dir)
        if emit.headline is None:
            raise LabFailure(f"lab {args.name} finished without a summary")
        return EXIT_OK
    except KeyboardInterrupt:
        emit.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the lab failed: say so loudly, in the stream and the exit code
        emit.error(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        if not args.json:
            traceback.print_exc()
        return EXIT_FAILED
    finally:
        emit.close()
        if scratch:
            scratch.cleanup()
        if previous_threads is None:  # run_in_process runs many labs in one test process
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = previous_threads


def run_in_process(name: str, toy: bool = True, seed: int | None = None,
                   assignments: Sequence[str] = (), out_dir: Path | None = None,
                   threads: int | None = None) -> list[dict[str, Any]]:
    """Run a lab in this process and return its events (for tests)."""
    import io

    buffer = io.StringIO()
    argv = [name, "--json"] + (["--toy"] if toy else []) + (["--seed", str(seed)] if seed is not None else [])
    argv += ["--threads", str(threads)] if threads is not None else []
    for a in assignments:
        argv += ["--set", a]
    if out_dir is not None:
        argv += ["--out", str(out_dir)]
    code = main(argv, buffer)
    events = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    if code != EXIT_OK:
        errors = [e for e in events if e.get("event") == "error"]
        raise LabFailure(f"lab {name} exited {code}: {errors[-1] if errors else 'no error event'}")
    return events
