"""Do the labs' claims hold on any machine? Every lab's toy over seeds x torch threads.

Floating-point results differ between CPUs and thread counts, so a threshold tuned on one
machine is a coin flip on the next. This runs each lab's ``--toy`` preset for every seed and
thread count of the grid (default: seeds 0, 1, 2 and 1, 2 threads), evaluates the claims its
test declares (``CLAIMS`` in ``tests/test_lab_<name>.py``, see ``tests/claims.py``) and
writes, per claim, min / median / max over the grid and the worst value's margin to the
threshold. A claim is *clear* when every run holds it and the worst margin is at least a
quarter of the effect.

    .venv/bin/python benchmarks/robust.py [--labs dpo,gae] [--seeds 0,1,2] [--threads 1,2] [--jobs 1]

Reports: ``output/robust/robust_<time>.md`` and ``.json``; exit 1 if any claim is not clear.
Runs one lab at a time by default: some labs measure wall-clock timelines.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from claims import LabResult  # noqa: E402
from labs.registry import LABS  # noqa: E402


def claims_module(lab: str) -> ModuleType | None:
    path = REPO / "tests" / f"test_lab_{lab}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"robust_claims_{lab}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module if getattr(module, "CLAIMS", None) else None


def run_once(lab: str, seed: int, threads: int, settings: list[str], timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"robust-{lab}-") as out:
        cmd = [sys.executable, "-m", "labs", lab, "--toy", "--json", "--seed", str(seed),
               "--threads", str(threads), "--out", out]
        for assignment in settings:
            cmd += ["--set", assignment]
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"seed": seed, "threads": threads, "ok": False, "error": f"timed out after {timeout:.0f} s"}
        seconds = time.monotonic() - started
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        errors = [e.get("message") for e in events if e.get("event") == "error"]
        return {"seed": seed, "threads": threads, "ok": False, "seconds": seconds,
                "error": errors[-1] if errors else proc.stderr[-500:]}
    return {"seed": seed, "threads": threads, "ok": True, "seconds": seconds, "events": events}


def evaluate(lab: str, module: ModuleType, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    results = [(r, LabResult.of(r["events"])) for r in runs if r["ok"]]
    for claim in module.CLAIMS:
        values, per_run = [], []
        for run, result in results:
            try:
                value = claim.value(result)
            except (KeyError, TypeError, ValueError) as exc:
                value = float("nan")
                per_run.append({"seed": run["seed"], "threads": run["threads"], "error": str(exc)})
                continue
            values.append(value)
            per_run.append({"seed": run["seed"], "threads": run["threads"], "value": value})
        complete = len(values) == len(runs)
        row = {"lab": lab, "claim": claim.describe(), "name": claim.name, "op": claim.op,
               "threshold": claim.threshold, "null": claim.null, "runs": per_run}
        if values:
            row.update(claim.spread(values))
        row["clear"] = bool(values) and complete and row.get("clear", False)
        rows.append(row)
    return rows


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(rows: list[dict[str, Any]], failures: list[str], grid: str, seconds: float) -> str:
    lines = [f"# Lab robustness: {grid}", "",
             f"{sum(r['clear'] for r in rows)} of {len(rows)} claims clear "
             f"(every run holds it, worst margin >= 1/4 of the effect); {seconds / 60:.1f} min.", "",
             "| lab | claim | min | median | max | worst margin | effect | margin/effect | clear |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join([r["lab"], r["claim"].replace("|", "\\|"), fmt(r.get("min", "-")),
                                         fmt(r.get("median", "-")), fmt(r.get("max", "-")),
                                         fmt(r.get("margin", "-")), fmt(r.get("effect", "-")),
                                         fmt(r.get("margin_over_effect", "-")),
                                         "yes" if r["clear"] else "**no**"]) + " |")
    if failures:
        lines += ["", "## Runs that failed", ""] + [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", default="", help="comma-separated labs (default: every lab with CLAIMS)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1: timings stay meaningful)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--out", type=Path, default=REPO / "output" / "robust")
    args = parser.parse_args(argv)

    names = [n for n in args.labs.split(",") if n] or [lab.name for lab in LABS]
    seeds = [int(s) for s in args.seeds.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    modules = {n: claims_module(n) for n in names}
    missing = [n for n, m in modules.items() if m is None]
    if missing:
        print(f"no CLAIMS declared for: {', '.join(missing)}", file=sys.stderr)
    started = time.monotonic()
    jobs = [(n, s, t) for n in names if modules[n] for s, t in itertools.product(seeds, threads)]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_once, n, s, t, list(getattr(modules[n], "TOY_SETTINGS", [])), args.timeout): n
                   for n, s, t in jobs}
        for future in concurrent.futures.as_completed(futures):
            lab = futures[future]
            run = future.result()
            runs[lab].append(run)
            state = f"{run.get('seconds', 0):.0f} s" if run["ok"] else f"FAILED: {run['error']}"
            print(f"  {lab} seed={run['seed']} threads={run['threads']}: {state}", flush=True)

    rows, failures = [], []
    for lab in names:
        if not modules[lab]:
            continue
        ordered = sorted(runs[lab], key=lambda r: (r["seed"], r["threads"]))
        failures += [f"{lab} seed={r['seed']} threads={r['threads']}: {r['error']}" for r in ordered if not r["ok"]]
        rows += evaluate(lab, modules[lab], ordered)
    seconds = time.monotonic() - started
    grid = f"seeds {args.seeds} x threads {args.threads}"
    report = markdown(rows, failures, grid, seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"robust_{stamp}.md").write_text(report, encoding="utf-8")
    (args.out / f"robust_{stamp}.json").write_text(json.dumps({"grid": grid, "rows": rows, "failures": failures},
                                                              indent=1), encoding="utf-8")
    print(report)
    print(f"written: {args.out / f'robust_{stamp}.md'}")
    return 0 if rows and all(r["clear"] for r in rows) and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
