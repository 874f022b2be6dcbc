"""``llmcore-tui smoke``: run every lab's ``--toy`` preset (or ``--labs a,b``), ``--jobs`` at a time.

Each run is recorded in the progress database like ``lab run`` does (the Labs screen shows them);
a lab running past ``--timeout`` seconds is cancelled and counted failed. Prints one line per
finished lab (a rich progress display on a terminal), then where the JSON and Markdown reports
are (``output/smoke_reports/`` of the checkout, or ``--out``). Exit 0 when every lab succeeded,
1 when any failed, 2 on a usage error (an unknown lab), 130 when interrupted.
See :mod:`llmcore_tui.core.smoke`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from llmcore_tui.cli.lab import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, _fail, _store
from llmcore_tui.core import smoke as core
from labs.protocol import fmt_duration, fmt_value
from llmcore_tui.core.labruns import LabRunError
from llmcore_tui.i18n import N_, _, ngettext

HELP = N_("Run every lab's --toy preset (or --labs a,b), --jobs at a time; write JSON and Markdown reports.")


class _Display:
    """One line per finished lab; on a terminal also a rich progress display (all labs, and a
    bar for each lab that is running)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.width = 0
        self.progress = None
        self.overall = None
        self.tasks: dict[str, int] = {}
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn())
            self.progress.start()
            self.overall = self.progress.add_task("smoke", total=total)

    def say(self, text: str, err: bool = False, crop: bool = False) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False, style="red" if err else None,
                                        no_wrap=crop, overflow="ellipsis" if crop else None)
        else:
            typer.echo(text, err=err)

    def update(self, update: core.SmokeUpdate) -> None:
        if update.kind == "start":
            if self.progress is not None:
                self.tasks[update.lab] = self.progress.add_task(f"  {update.lab}", total=None)
        elif update.kind == "progress":
            if self.progress is not None and update.lab in self.tasks:
                done, total = update.progress
                self.progress.update(self.tasks[update.lab], completed=done, total=total)
        elif update.kind == "end":
            assert update.result is not None
            self.finished(update.result, update.finished)

    def finished(self, result: core.LabResult, finished: int) -> None:
        if self.progress is not None:
            task = self.tasks.pop(result.lab, None)
            if task is not None:
                self.progress.remove_task(task)
            self.progress.update(self.overall, completed=finished)
        status = result.status + (" " + _("(timed out)") if result.timed_out else "")
        count = f"[{finished:>{len(str(self.total))}}/{self.total}]"
        line = f"{count} {result.lab:<12} {status:<20} {fmt_duration(result.seconds):>7}"
        if result.ok:
            headline = ", ".join(f"{k}={fmt_value(v)}" for k, v in (result.headline or {}).items())
            self.say(f"{line}  {headline}"[:200].rstrip(), crop=True)  # a terminal's width; the report has all
        else:
            self.say(f"{line}  {result.error or ''}".rstrip(), err=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def smoke(
    ctx: typer.Context,
    labs: Optional[str] = typer.Option(None, "--labs", help=N_("only these labs, comma-separated: a,b (default: all)"),
                                       show_default=False),
    jobs: int = typer.Option(core.DEFAULT_JOBS, "--jobs", "-j", min=1, help=N_("how many labs run at once")),
    timeout: float = typer.Option(core.DEFAULT_TIMEOUT_S, "--timeout", min=1,
                                  help=N_("seconds one lab may run before it is cancelled and counted failed")),
    out: Optional[Path] = typer.Option(None, "--out", help=N_("folder for the reports (default: output/smoke_reports/ "
                                                              "of the checkout)"), show_default=False),
) -> None:
    # its help (HELP) is given where commands.py registers it: a docstring is not in the catalog
    try:
        names = core.resolve_labs(labs)
    except LabRunError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    display = _Display(len(names))
    display.say(ngettext("smoke: {n} lab ({names}), toy preset, {jobs} at a time, timeout {timeout} s",
                         "smoke: {n} labs ({names}), toy preset, {jobs} at a time, timeout {timeout} s", len(names))
                .format(n=len(names), names=", ".join(names), jobs=jobs, timeout=f"{timeout:g}"))
    store = _store(ctx)
    try:
        report = core.run_smoke(store, names, jobs=jobs, timeout_s=timeout, out_dir=out, on_update=display.update)
    except KeyboardInterrupt:
        display.close()
        raise _fail(_("interrupted: the running labs were cancelled; no report was written"), EXIT_INTERRUPTED) from None
    finally:
        display.close()
        store.close()
    totals = report.totals()
    verdict = _("all labs succeeded") if report.ok else _("{failed} of {labs} labs failed").format(
        failed=totals["failed"], labs=totals["labs"])
    typer.echo(_("{verdict} in {time} ({succeeded} succeeded, {failed} failed)").format(
        verdict=verdict, time=fmt_duration(report.wall_seconds), succeeded=totals["succeeded"], failed=totals["failed"]))
    typer.echo(_("report: {path}").format(path=report.md_path))
    typer.echo(_("json:   {path}").format(path=report.json_path))
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
