"""``llmcore-tui lab ...``: run the course's labs and look at their recorded runs.

``lab run NAME`` starts ``python -m labs NAME --json`` as a child process (see
:mod:`llmcore_tui.core.labruns`), shows its progress, records the run in the progress database
(``--db`` of the root command) and exits 0 when the lab succeeded, 1 when it failed, 2 on a
usage error (unknown lab, bad ``--set``) and 130 when interrupted.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import typer

from labs import protocol
from labs.protocol import fmt_duration, fmt_value, format_table
from llmcore_tui.core import labhistory, labruns
from llmcore_tui.core.labruns import LabRunError
from llmcore_tui.i18n import N_, _

app = typer.Typer(
    help=N_("Run the labs (real algorithms as child processes) and inspect or compare their runs."),
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(_("error: {message}").format(message=message), err=True)
    return typer.Exit(code)


def _store(ctx: typer.Context):
    """The progress store chosen by the root command's ``--db`` (or the default one)."""
    from llmcore_tui.core.store import Store, StoreError

    db = getattr(ctx.obj, "db", None)  # the root command's Options
    if db is None:
        from llmcore_tui.core.paths import default_db_path

        db, _source = default_db_path()
    try:
        store = Store(db)
    except StoreError as exc:
        raise _fail(str(exc), 1) from None
    from llmcore_tui.cli.options import prepare_store

    try:
        prepare_store(store)
    except StoreError as exc:
        store.close()
        raise _fail(str(exc), 1) from None
    return store


def _when(ts: float | None) -> str:
    return "—" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


# -- list / runs --------------------------------------------------------------------------------

@app.command("list", help=N_("Every lab by roadmap day, with the status of its last run."))
def list_labs(ctx: typer.Context) -> None:
    from labs.registry import LABS

    store = _store(ctx)
    try:
        latest = labhistory.latest_runs(store)
    finally:
        store.close()
    rows = []
    for info in LABS:
        run = latest.get(info.name)
        last = _("never run") if run is None else f"{run.status} {_when(run.started_ts)} ({run.preset}) {run.id}"
        rows.append([str(info.day), info.name, info.title, last])
    typer.echo(format_table([_("day"), _("lab"), _("title"), _("last run")], rows, indent=""))


@app.command("runs", help=N_("Recorded runs, newest first (ids for `lab show` and `lab compare`)."))
def list_runs(ctx: typer.Context, lab: Optional[str] = typer.Argument(None, help=N_("only this lab's runs")),
              limit: int = typer.Option(20, "--limit", "-n", help=N_("how many, newest first"))) -> None:
    if lab is not None:
        try:
            labruns.lab_info(lab)
        except LabRunError as exc:
            raise _fail(str(exc), EXIT_USAGE) from None
    store = _store(ctx)
    try:
        runs = labhistory.list_runs(store, lab, limit)
    finally:
        store.close()
    if not runs:
        typer.echo(_("no runs yet: `llmcore-tui lab run NAME --toy` starts one"))
        return
    rows = [[r.id, r.status, r.preset or "—", _when(r.started_ts), fmt_duration(r.duration_s),
             (r.error or "")[:60]] for r in runs]
    typer.echo(format_table([_("run"), _("status"), _("preset"), _("started"), _("took"), _("error")], rows, indent=""))


# -- run ------------------------------------------------------------------------------------------

class _Reporter:
    """What a terminal sees of a run: log lines, tables, and a progress bar (a rich one on a TTY,
    a line every 10 % otherwise). Each event is decoded by ``labs.protocol`` and folded into a
    :class:`~labs.protocol.LiveRun`; the bar's metrics are read from it."""

    def __init__(self, handle: labruns.RunHandle) -> None:
        self.handle = handle
        self.live = protocol.LiveRun(handle.lab)
        self.early_stderr: list[str] | None = []  # held until the start event: a rejected run says it once
        # the keys of the current step: the metrics since the step last changed or a log line or
        # table announced a new phase. A lab that runs several sub-runs (masked then unmasked SFT,
        # DPO's beta sweep, which reports progress but no metrics) starts each one at a new step or
        # with a log line, so a metric of the previous sub-run is never shown as if it were this one's.
        self.current: list[str] = []
        self.current_step: int | None = None
        self.shown_decile = -1
        self.progress = None
        self.task = None
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("{task.fields[metrics]}"))
            self.progress.start()
            self.task = self.progress.add_task(handle.lab, total=None, metrics="")

    def say(self, text: str, err: bool = False) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False, style="red" if err else None)
        else:
            typer.echo(text, err=err)

    def metrics_line(self) -> str:
        recent = {k: self.live.series[k][-20:] for k in self.current}  # enough to tell moving from flat
        keys = labhistory.informative_keys(recent, 3)
        return "  ".join(f"{k}={fmt_value(self.live.series[k][-1][1])}" for k in keys)

    def event(self, raw: dict[str, Any]) -> None:
        kind = raw.get("event")
        if kind == "stderr":
            if self.early_stderr is not None:
                self.early_stderr.append(str(raw.get("text", "")))
            else:
                self.say(str(raw.get("text", "")), err=True)
            return
        if kind == "malformed":
            self.say(_("not an event: {text}").format(text=raw.get("text", "")), err=True)
            return
        if kind == "end":
            return
        event = protocol.decode(raw)  # the runner passes on only events that decoded
        self.live.apply(event)
        if isinstance(event, protocol.Start):
            handle = self.handle
            self.say(_("lab {lab} (day {day}, {preset}) · run {run}").format(
                lab=handle.lab, day=handle.info.day, preset=handle.preset, run=handle.run_id))
            for line in self.early_stderr or []:
                self.say(line, err=True)
            self.early_stderr = None
            if self.progress is not None:
                self.progress.update(self.task, total=event.total_steps)
        elif isinstance(event, protocol.Metric):
            if event.step != self.current_step:
                self.current, self.current_step = [], event.step
            self.current += [k for k in event.values if k not in self.current]
        elif isinstance(event, protocol.Progress):
            done, total = self.live.done, self.live.total_steps
            if self.progress is not None:
                self.progress.update(self.task, completed=done, total=total, metrics=self.metrics_line())
            elif total:
                decile = int(10 * done / total)
                if decile > self.shown_decile:
                    self.shown_decile = decile
                    typer.echo(f"  [{100 * done // total:3d}%] {done}/{total}  {self.metrics_line()}".rstrip())
        elif isinstance(event, protocol.Log):
            self.current = []
            self.say(event.text)
        elif isinstance(event, protocol.Table):
            self.current = []
            self.say(f"{event.name}:\n" + format_table(event.columns, event.rows))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.early_stderr and self.handle.status != "rejected":  # it died before starting: show why
            for line in self.early_stderr:
                typer.echo(line, err=True)


@app.command("run", help=N_("Run a lab, show its progress and record the run; exit 1 when it fails."))
def run_lab(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=N_("the lab, e.g. mdp (see `lab list`)")),
    toy: bool = typer.Option(False, "--toy", help=N_("the small preset: seconds on a laptop CPU")),
    seed: Optional[int] = typer.Option(None, "--seed", help=N_("random seed (default: the lab's)"), show_default=False),
    assignments: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                                    help=N_("override one config value; repeatable"), show_default=False),
    device: Optional[str] = typer.Option(None, "--device", help=N_("cpu or cuda (default: cpu)"), show_default=False),
    as_json: bool = typer.Option(False, "--json", help=N_("pass the lab's JSON-lines event stream through")),
) -> None:
    try:
        labruns.lab_info(name)
        sets = labruns.check_assignments(assignments or [])
    except LabRunError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    from llmcore_tui.core.store import StoreError

    store = _store(ctx)
    try:
        try:
            handle = labruns.LabRunner(store).start(name, toy=toy, seed=seed, assignments=sets, device=device)
        except (LabRunError, StoreError) as exc:  # StoreError: a read-only database, nothing started
            raise _fail(str(exc), EXIT_FAILED) from None
        labruns.install_signal_handlers()  # SIGTERM / SIGHUP: cancel the lab, record it, exit
        code = _follow(handle, as_json)
    finally:
        store.close()
    raise typer.Exit(code)


_PROTOCOL = ("start", "charts", "metric", "progress", "log", "table", "summary", "error")


def _follow(handle: labruns.RunHandle, as_json: bool) -> int:
    reporter = None if as_json else _Reporter(handle)
    while True:
        try:
            for event in handle.events():  # a fresh iterator after ctrl+c: the events wait on the handle
                if as_json:
                    if event["event"] in _PROTOCOL:
                        typer.echo(json.dumps(event, ensure_ascii=False))
                    elif event["event"] in ("stderr", "malformed"):
                        typer.echo(event["text"], err=True)
                else:
                    assert reporter is not None
                    reporter.event(event)
            break
        except KeyboardInterrupt:  # first ctrl+c: SIGTERM to the lab; a second one: SIGKILL at once
            handle.cancel(0.0 if handle.cancel_requested else None)
            typer.echo(_("cancelling the lab ..."), err=True)
    if reporter is not None:
        reporter.close()
    return _report_end(handle, as_json)


def _report_end(handle: labruns.RunHandle, as_json: bool) -> int:
    status = handle.status
    if status == "rejected":
        typer.echo(_("error: {message}").format(message=handle.error), err=True)
        return EXIT_USAGE
    typer.echo(_("files: {path}").format(path=handle.out_dir), err=as_json)  # beside the database (labruns.runs_folder)
    if status == "succeeded":
        if not as_json:
            typer.echo(_("summary:") + "\n" + format_table([_("metric"), _("value")],
                                                          [[k, v] for k, v in (handle.headline or {}).items()]))
        typer.echo(_("run {run}: succeeded").format(run=handle.run_id), err=as_json)
        return 0
    typer.echo(_("run {run}: {status}: {error}").format(run=handle.run_id, status=status, error=handle.error), err=True)
    return EXIT_INTERRUPTED if status == "cancelled" else EXIT_FAILED


# -- show / compare ---------------------------------------------------------------------------------

def _find(store, ref: str) -> labhistory.RunRecord:
    try:
        return labhistory.find_run(store, ref)
    except LookupError as exc:
        store.close()
        raise _fail(str(exc.args[0]), EXIT_USAGE) from None


@app.command("show", help=N_("One run: config, status, headline, metrics summary, and its log when it did not succeed."))
def show(ctx: typer.Context, run_id: str = typer.Argument(..., help=N_("a run id, or its unambiguous start")),
         as_json: bool = typer.Option(False, "--json", help=N_("everything recorded, as JSON"))) -> None:
    store = _store(ctx)
    try:
        run = _find(store, run_id)
        metrics = labhistory.run_metrics(store, run.id)
        tables = labhistory.run_tables(store, run.id)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"run": asdict(run), "metrics": {k: [list(p) for p in v] for k, v in metrics.items()},
                               "tables": [asdict(t) for t in tables]}, ensure_ascii=False, indent=2))
        return
    exit_code = "" if run.exit_code is None else " " + _("(exit {code})").format(code=run.exit_code)
    typer.echo(_("run {run}: lab {lab}, day {day}, {preset} preset").format(run=run.id, lab=run.lab, day=run.day,
                                                                           preset=run.preset))
    typer.echo(_("status: {status}{exit} · started {started} · took {took}").format(
        status=run.status, exit=exit_code, started=_when(run.started_ts), took=fmt_duration(run.duration_s)))
    if run.error:
        typer.echo(_("error: {message}").format(message=run.error))
    gone = "" if not run.out_dir or Path(run.out_dir).is_dir() else " " + _("(no longer there)")
    typer.echo(_("files: {path}").format(path=run.out_dir) + gone)
    typer.echo(_("config:") + " " + ", ".join(f"{k}={fmt_value(v)}" for k, v in run.config.items()))
    if run.headline:
        typer.echo(_("headline:") + "\n" + format_table([_("metric"), _("value")],
                                                       [[k, v] for k, v in run.headline.items()]))
    if metrics:
        rows = []
        for key, series in metrics.items():
            s = labhistory.summarize(series)
            rows.append([key, str(s.points), s.first, s.last, s.low, s.high])
        header = [_("key"), _("points"), _("first"), _("last"), _("min"), _("max")]
        typer.echo(_("metrics:") + "\n" + format_table(header, rows))
    for table in tables:
        typer.echo(_("table {name}:").format(name=table.name) + "\n"
                   + format_table([str(c) for c in table.columns], table.rows))
    if run.charts:  # the figures the lab declared: what to look for in them
        typer.echo(_("charts:") + "\n" + "\n".join(f"  {c.title}: {c.look_for}".rstrip(": ") for c in run.charts))
    if run.status != "succeeded" and run.log_tail:
        typer.echo(_("log tail:") + "\n" + "\n".join("  " + line for line in run.log_tail.splitlines()))


@app.command("compare", help=N_("Headline numbers, settings that differ and final metrics of several runs, side by side."))
def compare(ctx: typer.Context,
            run_ids: list[str] = typer.Argument(..., help=N_("two or more run ids (or their unambiguous starts)"))) -> None:
    if len(run_ids) < 2:
        raise _fail(_("compare needs at least two runs"), EXIT_USAGE)
    store = _store(ctx)
    try:
        ids = [_find(store, ref).id for ref in run_ids]
        result = labhistory.compare(store, ids)
    finally:
        store.close()
    header = ["", *[f"{r.id} ({r.status})" for r in result.runs]]
    for title, section in ((_("headline:"), result.headline), (_("settings that differ:"), result.config),
                           (_("final metrics:"), result.final)):
        if section:
            typer.echo(f"{title}\n" + format_table(header, [[k, *v] for k, v in section.items()]))
