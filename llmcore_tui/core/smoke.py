"""The smoke run: every lab's ``--toy`` preset (or a chosen few), a bounded number at a time.

:func:`run_smoke` starts each lab through :class:`~llmcore_tui.core.labruns.LabRunner`, so every
run is recorded in the progress store like any other (the Labs screen shows them), keeps at most
``jobs`` of them running at once, cancels a lab that runs past ``timeout_s`` (reported failed, and
its row says it timed out), and writes two reports, ``smoke_<time>.json`` and ``smoke_<time>.md``,
to ``<root>/output/smoke_reports/`` (or a given folder): per lab its status, seconds, headline
numbers and, when it failed, the error and the tail of its log; plus totals.

Every call of ``on_update`` happens on the caller's thread: a :class:`SmokeUpdate` when a lab
starts, about twice a second while labs run (their progress), and when each one ends.

Pure Python; no textual, no torch.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labs.protocol import fmt_duration, fmt_value
from labs.registry import BY_NAME, LABS
from llmcore_tui.core import labruns
from llmcore_tui.core.labruns import LabRunError, LabRunner
from llmcore_tui.core.store import Store

DEFAULT_JOBS = 2  # the CI machine has two cores
DEFAULT_TIMEOUT_S = 600.0
REPORTS_FOLDER = Path("output") / "smoke_reports"
POLL_S = 0.5  # how often running labs' progress is reported
LOG_TAIL_LINES = 40  # of a failed lab's log, in the reports


def resolve_labs(names: str | Sequence[str] | None) -> list[str]:
    """The labs to run, in registry order: all of them for None, else the named ones
    (a comma-separated string or a sequence; blanks and repeats ignored).

    Raises :class:`LabRunError` naming the unknown ones and listing the known labs.
    """
    if names is None:
        return [info.name for info in LABS]
    if isinstance(names, str):
        names = names.split(",")
    wanted = [n.strip() for n in names if n.strip()]
    unknown = [n for n in dict.fromkeys(wanted) if n not in BY_NAME]
    if unknown:
        raise LabRunError(f"unknown lab{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"labs are: {', '.join(info.name for info in LABS)}")
    if not wanted:
        raise LabRunError("no labs given; labs are: " + ", ".join(info.name for info in LABS))
    return [info.name for info in LABS if info.name in wanted]


@dataclass
class LabResult:
    """One lab of a smoke run. ``status`` is ``succeeded`` or ``failed`` (a lab that timed out,
    was cancelled, could not start or was rejected counts as failed); ``run_status`` is what the
    lab run itself ended as (``succeeded``/``failed``/``cancelled``/``rejected``, or
    ``not started``)."""

    lab: str
    day: int
    title: str
    status: str
    run_status: str
    seconds: float
    run_id: str | None = None
    exit_code: int | None = None
    headline: dict[str, Any] | None = None
    error: str | None = None
    timed_out: bool = False
    log_tail: list[str] = field(default_factory=list)  # only for a lab that did not succeed
    out_dir: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


@dataclass
class SmokeReport:
    labs: list[LabResult]
    started: str  # local time, ISO 8601
    wall_seconds: float
    jobs: int
    timeout_s: float
    toy: bool
    environment: dict[str, Any]
    json_path: Path | None = None
    md_path: Path | None = None

    @property
    def succeeded(self) -> list[LabResult]:
        return [r for r in self.labs if r.ok]

    @property
    def failed(self) -> list[LabResult]:
        return [r for r in self.labs if not r.ok]

    @property
    def ok(self) -> bool:
        return bool(self.labs) and not self.failed

    def totals(self) -> dict[str, Any]:
        return {"labs": len(self.labs), "succeeded": len(self.succeeded), "failed": len(self.failed),
                "timed_out": sum(r.timed_out for r in self.labs), "wall_seconds": round(self.wall_seconds, 2),
                "lab_seconds": round(sum(r.seconds for r in self.labs), 2)}

    def to_json(self) -> dict[str, Any]:
        return {"started": self.started, "ok": self.ok, "totals": self.totals(), "jobs": self.jobs,
                "timeout_s": self.timeout_s, "preset": "toy" if self.toy else "full",
                "environment": self.environment, "labs": [asdict(r) for r in self.labs]}

    def to_markdown(self) -> str:
        t = self.totals()
        verdict = "all labs succeeded" if self.ok else f"{t['failed']} of {t['labs']} labs failed"
        lines = [f"# Smoke run {self.started}", "",
                 f"**{verdict}** · {t['succeeded']} succeeded, {t['failed']} failed"
                 + (f" ({t['timed_out']} timed out)" if t["timed_out"] else "")
                 + f" · wall {fmt_duration(self.wall_seconds)}, {fmt_duration(t['lab_seconds'])} of lab time"
                 + f" · {self.jobs} at a time, timeout {self.timeout_s:g} s, {'toy' if self.toy else 'full'} preset",
                 "", "| day | lab | status | seconds | headline |", "|---:|---|---|---:|---|"]
        for r in self.labs:
            status = r.status + (" (timed out)" if r.timed_out else "")
            headline = ", ".join(f"{k}={fmt_value(v)}" for k, v in (r.headline or {}).items())
            lines.append(f"| {r.day} | {r.lab} | {status} | {r.seconds:.1f} | {_md_cell(headline) or '—'} |")
        for r in self.failed:
            lines += ["", f"## {r.lab}: {r.status}", "", f"- error: {r.error or '—'}",
                      f"- run: {r.run_id or '—'} (exit code {'—' if r.exit_code is None else r.exit_code})",
                      f"- output: {r.out_dir or '—'}"]
            if r.log_tail:
                lines += ["", "```", *r.log_tail, "```"]
        env = ", ".join(f"{k} {v}" for k, v in self.environment.items())
        lines += ["", f"_{env}_", ""]
        return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class SmokeUpdate:
    """What ``on_update`` gets. ``kind``: ``start`` (``lab`` began), ``progress`` (``progress``
    holds ``(done, total)`` of ``lab``, total possibly None) or ``end`` (``result`` is set).
    ``finished`` / ``total`` count the labs of the whole smoke run."""

    kind: str
    lab: str
    finished: int
    total: int
    progress: tuple[int, int | None] = (0, None)
    result: LabResult | None = None


@dataclass
class _Running:
    handle: labruns.RunHandle
    started: float
    ended: float | None = None  # set by the reader thread at the run's end event


def run_smoke(store: Store, labs: str | Sequence[str] | None = None, *, jobs: int = DEFAULT_JOBS,
              timeout_s: float = DEFAULT_TIMEOUT_S, toy: bool = True, root: Path | str | None = None,
              out_dir: Path | str | None = None, command: Sequence[str] | None = None,
              grace_s: float = labruns.DEFAULT_GRACE_S,
              on_update: Callable[[SmokeUpdate], None] | None = None, write: bool = True) -> SmokeReport:
    """Run the labs' presets, ``jobs`` at a time, and write the reports (unless ``write`` is False).

    ``root``/``command``/``grace_s`` go to :class:`LabRunner`; reports go to ``out_dir``, by
    default ``<root>/output/smoke_reports/``. Unknown lab names raise :class:`LabRunError` before
    anything starts. On an exception (ctrl+c included) the labs still running are cancelled and
    recorded before it propagates.
    """
    names = resolve_labs(labs)
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if timeout_s <= 0:
        raise ValueError(f"timeout must be positive, got {timeout_s}")
    runner = LabRunner(store, root=root, command=command, grace_s=grace_s)
    started_at = time.time()
    t0 = time.monotonic()
    pending = list(names)
    running: dict[str, _Running] = {}
    results: dict[str, LabResult] = {}
    wake = threading.Event()

    def update(kind: str, lab: str, **extra: Any) -> None:
        if on_update is not None:
            on_update(SmokeUpdate(kind, lab, len(results), len(names), **extra))

    def on_event_for(entry: list[_Running]) -> Callable[[labruns.Event], None]:
        def on_event(event: labruns.Event) -> None:
            if event.get("event") == "end":
                if entry:
                    entry[0].ended = time.monotonic()
                wake.set()
        return on_event

    try:
        while pending or running:
            wake.clear()  # before looking: an end from now on cuts the wait below short
            while pending and len(running) < jobs:
                lab = pending.pop(0)
                slot: list[_Running] = []
                begun = time.monotonic()
                try:
                    handle = runner.start(lab, toy=toy, on_event=on_event_for(slot))
                except LabRunError as exc:
                    results[lab] = _result(lab, "not started", time.monotonic() - begun, error=str(exc))
                    update("end", lab, result=results[lab])
                    continue
                slot.append(_Running(handle, begun))
                running[lab] = slot[0]
                update("start", lab)
            now = time.monotonic()
            for lab, entry in list(running.items()):
                handle = entry.handle
                if handle.done:
                    del running[lab]
                    timed_out = handle.cancel_requested
                    results[lab] = _finished(store, entry, timeout_s if timed_out else None)
                    update("end", lab, result=results[lab])
                elif not handle.cancel_requested and now - entry.started > timeout_s:
                    handle.cancel()  # reported at its end, once recorded
                else:
                    update("progress", lab, progress=handle.progress)
            if running:
                deadlines = [e.started + timeout_s - now for e in running.values() if not e.handle.cancel_requested]
                wake.wait(max(0.01, min([POLL_S, *deadlines])))
    finally:
        for entry in running.values():  # only after an exception
            entry.handle.cancel(min(grace_s, 1.0))
        for entry in running.values():
            entry.handle.wait(grace_s + 3.0)

    report = SmokeReport([results[n] for n in names], time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at)),
                         time.monotonic() - t0, jobs, timeout_s, toy, _environment())
    if write:
        folder = Path(out_dir) if out_dir is not None else runner.root / REPORTS_FOLDER
        write_reports(report, folder, started_at)
    return report


def _result(lab: str, run_status: str, seconds: float, **fields: Any) -> LabResult:
    info = BY_NAME[lab]
    status = "succeeded" if run_status == "succeeded" else "failed"
    return LabResult(lab, info.day, info.title, status, run_status, round(seconds, 2), **fields)


def _finished(store: Store, entry: _Running, timed_out_after: float | None) -> LabResult:
    """The result of a run that has ended; a timed-out one is marked failed in the store too."""
    handle = entry.handle
    seconds = (entry.ended or time.monotonic()) - entry.started
    error = handle.error
    if timed_out_after is not None and handle.status == "cancelled":
        error = f"timed out after {timed_out_after:g} s and was cancelled"
        with store.transaction() as conn:  # the Labs screen would otherwise say "cancelled by the user"
            conn.execute("UPDATE lab_runs SET status = 'failed', error = ? WHERE id = ?", (error, handle.run_id))
    elif timed_out_after is not None:
        timed_out_after = None  # it ended on its own before the cancel took effect
    result = _result(handle.lab, handle.status, seconds, run_id=handle.run_id, exit_code=handle.exit_code,
                     headline=handle.headline, error=error, timed_out=timed_out_after is not None,
                     out_dir=str(handle.out_dir))
    if not result.ok:
        record = labruns.get_run(store, handle.run_id)  # None for a rejected run: its error says why
        result.log_tail = record.log_tail.splitlines()[-LOG_TAIL_LINES:] if record is not None else []
    return result


def _environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(terse=True),
            "cpus": os.cpu_count(), "executable": sys.executable}


def write_reports(report: SmokeReport, folder: Path | str, when: float | None = None) -> tuple[Path, Path]:
    """Write ``smoke_<time>.json`` and ``.md`` to ``folder`` (never over an earlier pair);
    sets and returns ``report.json_path`` and ``report.md_path``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when if when is not None else time.time()))
    base, n = f"smoke_{stamp}", 1
    while (folder / f"{base}.json").exists() or (folder / f"{base}.md").exists():
        n += 1
        base = f"smoke_{stamp}-{n}"
    json_path, md_path = folder / f"{base}.json", folder / f"{base}.md"
    report.json_path, report.md_path = json_path.resolve(), md_path.resolve()
    json_path.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(report.to_markdown(), encoding="utf-8")
    return report.json_path, report.md_path
