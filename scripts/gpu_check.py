"""Every registered lab's full preset on this machine's GPUs: wall time, peak GPU memory, headline.

    scripts/gpu_check.sh [--dry-run] [--gpus N] [--labs a,b] [--timeout-s S] [--budget-s S] [--out DIR]

Each lab runs as ``python -m labs NAME --device cuda --json --out DIR/labs/NAME``; the parallel
lab runs under torchrun with one NCCL rank per GPU, and is skipped, saying so, when its mesh
(tp*pp*dp ranks) needs more GPUs than are visible. A lab that passes its timeout is killed with
its whole process group and reported as such; the run stops starting labs when the budget is
spent, so the check stays unattended and bounded (the defaults aim under 10 minutes).

Peak GPU memory is what ``nvidia-smi --query-gpu=memory.used`` reports while the lab runs (sampled
every 0.2 s on every visible GPU), minus what was in use just before it started: it includes the
CUDA context (a few hundred MiB per process) and the caching allocator's reserve, so it is an
upper bound on what the lab's tensors need. The table goes to DIR/gpu_check.md and
DIR/gpu_check.json (default DIR: output/gpu_check). ``--dry-run`` prints the plan and runs
nothing; it needs no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labs import protocol  # noqa: E402  (pure Python: no torch in this process)
from labs.registry import LABS  # noqa: E402

TORCHRUN_LABS = {"parallel"}  # labs whose ranks torchrun starts, one per GPU
HEADLINE_SHOWN = 3  # headline values in the Markdown table (the JSON has them all)


@dataclass
class Step:
    lab: str
    command: list[str] | None  # None when skipped
    gpus_needed: int = 1
    skip: str = ""


@dataclass
class Row:
    lab: str
    status: str  # ok | failed | timeout | skipped
    wall_s: float | None = None
    peak_gpu_mib: float | None = None
    headline: dict = field(default_factory=dict)
    note: str = ""


def visible_gpus() -> list[str]:
    """Names of the GPUs this process may use: nvidia-smi's list, narrowed by CUDA_VISIBLE_DEVICES."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    gpus = dict(line.split(", ", 1) for line in out.stdout.splitlines() if ", " in line)
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is not None and all(c.strip().isdigit() for c in chosen.split(",") if c.strip()):
        # indices narrow the list ("" hides every GPU); UUIDs or MIG names leave nvidia-smi's list as is
        gpus = {i: name for i, name in gpus.items() if i in [c.strip() for c in chosen.split(",")]}
    return [f"{i}: {name}" for i, name in gpus.items()]


def ranks_of(lab: str) -> int:
    """How many ranks (GPUs) a torchrun lab's full preset needs: tp*pp*dp of its resolved config."""
    out = subprocess.run([sys.executable, "-m", "labs", lab, "--show-config", "--device", "cpu"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"gpu_check: could not read {lab}'s config: {out.stderr.strip()}")
    cfg = json.loads(out.stdout)
    return cfg["tp"] * cfg["pp"] * cfg["dp"]


def plan(labs: list[str], gpus: int, out: Path) -> list[Step]:
    steps = []
    for lab in labs:
        lab_args = ["-m", "labs", lab, "--device", "cuda", "--json", "--out", str(out / "labs" / lab)]
        if lab not in TORCHRUN_LABS:
            steps.append(Step(lab, [sys.executable, *lab_args]))
            continue
        ranks = ranks_of(lab)
        if ranks > gpus:
            steps.append(Step(lab, None, ranks, f"needs {ranks} GPUs (one NCCL rank each), {gpus} visible"))
        else:
            steps.append(Step(lab, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node", str(ranks), *lab_args], ranks))
    return steps


class MemorySampler:
    """Peak nvidia-smi memory.used over the visible GPUs while it runs, above the level at start."""

    def __init__(self, gpu_indices: list[str], period_ms: int = 200):
        self.indices = gpu_indices
        query = ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"]
        self.baseline = self._parse(subprocess.run(query, capture_output=True, text=True, timeout=30).stdout)
        self.peak = dict(self.baseline)
        self.proc = subprocess.Popen([*query, f"-lms={period_ms}"], stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _parse(self, text: str) -> dict[str, float]:
        used = {}
        for line in text.splitlines():
            index, _, mib = line.partition(", ")
            if index in self.indices and mib.strip().isdigit():
                used[index] = float(mib)
        return used

    def _read(self) -> None:
        for line in self.proc.stdout:
            for index, mib in self._parse(line).items():
                self.peak[index] = max(self.peak.get(index, 0.0), mib)

    def stop(self) -> float:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.thread.join(timeout=10)
        return max((self.peak[i] - self.baseline.get(i, 0.0) for i in self.peak), default=0.0)


def read_events(lab_dir: Path) -> tuple[dict, str]:
    """The run's headline and why it failed: from the events file the lab wrote, else from its
    stream (a usage error ends a lab before it has a folder), else stderr's last line."""
    headline, error = {}, ""
    for path in (lab_dir / "events.jsonl", lab_dir / "stream.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            try:
                event = protocol.parse(line)
            except protocol.ProtocolError:
                continue
            if isinstance(event, protocol.Summary):
                headline = event.headline
            elif isinstance(event, protocol.Error):
                error = event.message
        if headline or error:
            break
    if not error:
        last = [line for line in (lab_dir / "stderr.txt").read_text(errors="replace").splitlines() if line.strip()]
        error = last[-1].strip() if last else ""
    return headline, error


def run_step(step: Step, out: Path, timeout_s: float, gpu_indices: list[str]) -> Row:
    lab_dir = out / "labs" / step.lab
    shutil.rmtree(lab_dir, ignore_errors=True)
    lab_dir.mkdir(parents=True)
    sampler = MemorySampler(gpu_indices)
    t0 = time.monotonic()
    with (lab_dir / "stream.jsonl").open("w") as stream, (lab_dir / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(step.command, cwd=ROOT, stdout=stream, stderr=stderr, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the lab and every rank it or torchrun started
            proc.wait()
            code = None
    wall = time.monotonic() - t0
    peak = sampler.stop()
    headline, error = read_events(lab_dir)
    if code is None:
        return Row(step.lab, "timeout", wall, peak, headline, f"killed after {timeout_s:.0f} s")
    if code != 0 or not headline:
        return Row(step.lab, "failed", wall, peak, headline, error or f"exit {code}; see labs/{step.lab}/stderr.txt")
    return Row(step.lab, "ok", wall, peak, headline)


def markdown(rows: list[Row], gpus: list[str], date: str) -> str:
    lines = [f"GPU check, {date}, on {len(gpus)} GPU(s): {'; '.join(gpus) or 'none'}", "",
             "| lab | status | wall | peak GPU memory | headline |", "|---|---|---|---|---|"]
    for r in rows:
        shown = ", ".join(f"{k}={protocol.fmt_value(v)}" for k, v in list(r.headline.items())[:HEADLINE_SHOWN])
        memory = "—" if r.peak_gpu_mib is None else f"{r.peak_gpu_mib:.0f} MiB"
        status = r.status + (f" ({r.note})" if r.note else "").replace("|", "\\|")
        lines.append(f"| {r.lab} | {status} | {protocol.fmt_duration(r.wall_s)} | {memory} | {shown or '—'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print what would run; run nothing (no GPU needed)")
    parser.add_argument("--gpus", type=int, default=None, help="plan for N GPUs (default: those visible)")
    parser.add_argument("--labs", default="", help="comma-separated labs (default: every registered lab)")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="per lab (default 120)")
    parser.add_argument("--budget-s", type=float, default=570.0,
                        help="no lab starts after this many seconds, and none runs past it (default 570)")
    parser.add_argument("--out", type=Path, default=ROOT / "output" / "gpu_check")
    args = parser.parse_args(argv)

    names = [lab.name for lab in LABS]
    labs = [name.strip() for name in args.labs.split(",") if name.strip()] or names
    unknown = [name for name in labs if name not in names]
    if unknown:
        parser.error(f"no lab named {', '.join(unknown)}; labs are: {', '.join(names)}")
    gpus = visible_gpus()
    n_gpus = len(gpus) if args.gpus is None else args.gpus
    steps = plan(labs, n_gpus, args.out)
    if args.dry_run:
        print(f"gpu_check: {len(steps)} labs, planned for {n_gpus} GPU(s); timeout {args.timeout_s:.0f} s per lab, "
              f"budget {args.budget_s:.0f} s; results to {args.out}")
        for step in steps:
            print(f"{step.lab}: " + (f"skip: {step.skip}" if step.skip else "run: " + " ".join(step.command)))
        return 0
    if not gpus:
        print("gpu_check: no NVIDIA GPU visible (nvidia-smi lists none); --dry-run shows the plan", file=sys.stderr)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    indices = [g.split(":")[0] for g in gpus]
    started = time.monotonic()
    rows = []
    for step in steps:
        left = args.budget_s - (time.monotonic() - started)
        if step.skip:
            rows.append(Row(step.lab, "skipped", note=step.skip))
        elif left < 10:
            rows.append(Row(step.lab, "skipped", note=f"the {args.budget_s:.0f} s budget was spent"))
        else:
            rows.append(run_step(step, args.out, min(args.timeout_s, left), indices))
        r = rows[-1]
        print(f"gpu_check: {r.lab}: {r.status} {protocol.fmt_duration(r.wall_s)} {r.note}".rstrip(), flush=True)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (args.out / "gpu_check.md").write_text(markdown(rows, gpus, date))
    (args.out / "gpu_check.json").write_text(json.dumps(
        {"date": date, "gpus": gpus, "timeout_s": args.timeout_s, "budget_s": args.budget_s,
         "rows": [asdict(r) for r in rows]}, indent=2, allow_nan=False))
    print(markdown(rows, gpus, date))
    return 0 if all(r.status in ("ok", "skipped") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
