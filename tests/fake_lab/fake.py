"""A fake lab for tests: speaks the lab event protocol (labs/README.md) in milliseconds, no torch.

    python tests/fake_lab/fake.py NAME [--toy] [--seed N] [--set k=v ...] [--json] [--out DIR]

Settings (``--set``):
    mode=succeed|crash|error|malformed|badevent|nosummary|hang   what the run does (default succeed)
    steps=N            metric steps (default 20; the toy preset uses 10)
    delay=SECONDS      pause after each step (default 0)
    grandchild=1       spawn a sleeping grandchild first and log its pid ("grandchild PID")
    ignore_term=1      ignore SIGTERM (the grandchild inherits it): only SIGKILL ends the run
    charts=0           declare no charts (by default the run sends CHARTS right after its start)

Settings may also come from the environment, ``FAKE_LAB_SET="mode=hang,delay=0.05"`` (before the
``--set`` ones): how the TUI tests choose a mode, since the Labs screen passes no ``--set``.

The lab logs its own pid ("pid PID") and, in hang mode, keeps emitting metrics until killed.
A bad value (``--set steps=abc``) is a usage error: exit 2 before the start event, like labs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MODES = ("succeed", "crash", "error", "malformed", "badevent", "nosummary", "hang")
# the figures the fake lab declares: a metric series on a log axis, a table's columns with a reference
CHARTS = [
    {"title": "Loss per step", "y": ["losses/loss"], "log_y": True, "look_for": "It falls as 1/step."},
    {"title": "Return against accuracy", "x": "eval/accuracy", "y": ["charts/return"],
     "look_for": "Return grows with accuracy."},
    {"title": "The sweep", "table": "sweep", "x": "x", "y": ["y"], "reference": ["x"],
     "look_for": "y is twice x."},
]


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def parse(argv: list[str]) -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(prog="fake-lab")
    parser.add_argument("name")
    parser.add_argument("--toy", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="assignments", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    cfg = {"mode": "succeed", "steps": 10 if args.toy else 20, "delay": 0.0, "grandchild": 0, "ignore_term": 0,
           "charts": 1, "seed": args.seed}
    from_env = [a for a in os.environ.get("FAKE_LAB_SET", "").split(",") if a.strip()]
    for assignment in from_env + args.assignments:
        key, _, raw = assignment.partition("=")
        if key not in cfg:
            raise ValueError(f"--set {key}: no such setting; settings are: {', '.join(cfg)}")
        if key == "mode":
            if raw not in MODES:
                raise ValueError(f"--set mode={raw}: expected one of {', '.join(MODES)}")
            cfg[key] = raw
        elif key == "delay":
            try:
                cfg[key] = float(raw)
            except ValueError:
                raise ValueError(f"--set delay={raw}: expected a float") from None
        else:
            try:
                cfg[key] = int(raw)
            except ValueError:
                raise ValueError(f"--set {key}={raw}: expected a int") from None
    return args, cfg


def main(argv: list[str]) -> int:
    try:
        args, cfg = parse(argv)
    except ValueError as exc:
        sys.stderr.write(f"python -m labs: error: {exc}\n")
        return 2
    if cfg["ignore_term"]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    steps, mode = cfg["steps"], cfg["mode"]
    emit({"event": "start", "lab": args.name, "config": cfg, "total_steps": steps})
    if cfg["charts"]:
        emit({"event": "charts", "charts": CHARTS})
    emit({"event": "log", "text": f"pid {os.getpid()}"})
    if cfg["grandchild"]:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        emit({"event": "log", "text": f"grandchild {child.pid}"})
    sys.stderr.write("fake lab: warming up\n")
    sys.stderr.flush()
    step = 0
    while True:
        step += 1
        emit({"event": "metric", "step": step, "values": {
            "losses/loss": 1.0 / step, "charts/return": float(step * step), "charts/constant": 1.0,
            "eval/accuracy": min(1.0, step / steps), "eval/missing": None}})
        emit({"event": "progress", "done": min(step, steps), "total": steps})
        if mode == "malformed" and step == 2:
            print("this line is not JSON", flush=True)
        if mode == "badevent" and step == 2:  # JSON, and an event, but not a well-formed one
            emit({"event": "metric", "step": step, "values": {"losses/speed": "fast"}})
        if mode == "crash" and step == 3:
            raise RuntimeError("the fake lab crashed on purpose")
        if mode == "error" and step == 3:
            emit({"event": "error", "message": "LabFailure: the fake lab gave up", "detail": "Traceback: fake\n"})
            return 1
        if cfg["delay"]:
            time.sleep(cfg["delay"])
        if step >= steps and mode != "hang":
            break
    emit({"event": "table", "name": "sweep", "columns": ["x", "y"], "rows": [[1, 2.0], [2, 4.0]]})
    emit({"event": "log", "text": "done: all steps ran"})
    if mode != "nosummary":
        emit({"event": "summary", "headline": {"final_return": float(steps * steps), "steps": steps,
                                               "solved": True}, "artifacts": []})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
