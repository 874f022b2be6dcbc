"""``llmcore-tui optimize``: fit FSRS-6's parameters to your own reviews, then ask before switching.

Exit codes: 0 done (switched, kept, a dry run, or reset); 1 nothing fitted: too few reviews
(the message says how many there are and how many are needed), a fit that failed, or a database
that cannot be opened or written; 2 a usage error (``--reset`` with another option).
"""

from __future__ import annotations

import time

import typer

from llmcore_tui.cli.options import fail, open_course
from llmcore_tui.i18n import N_, _

HELP = N_("Fit FSRS-6 to your review history (in a child process), report log-loss and RMSE of the default and the "
          "fitted parameters, in-sample and held-out, and ask before switching.")


def optimize(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", "-y", help=N_("switch to the fitted parameters without asking")),
    dry_run: bool = typer.Option(False, "--dry-run", help=N_("only fit and report; change nothing")),
    reset: bool = typer.Option(False, "--reset", help=N_("go back to FSRS-6's default parameters")),
) -> None:
    # its help is HELP, given where commands.py registers it (the catalog does not read docstrings)
    from llmcore_tui.core import fsrs_fit
    from llmcore_tui.core.srs import store_parameters, stored_parameters
    from llmcore_tui.core.store import StoreError

    if reset and (yes or dry_run):
        raise fail(_("--reset takes no other option"), 2)
    course = open_course(ctx.obj)
    try:
        if reset:
            store_parameters(course.store, None)
            typer.echo(_("Back to the default FSRS-6 parameters (each card's next rating uses them)."))
            return
        current = stored_parameters(course.store)
        typer.echo(_("In use: the default FSRS-6 parameters") if current is None else
                   _("In use: parameters fitted on {date} to {n} reviews").format(
                       date=time.strftime("%Y-%m-%d", time.localtime(current.fitted_ts)), n=current.reviews))
        try:
            report = fsrs_fit.fit(fsrs_fit.load_history(course.store),
                                  lambda p: typer.echo(f"[{p.step}/{p.steps}] {p.text}", err=True))
        except fsrs_fit.FitError as exc:
            raise fail(str(exc)) from None
        for line in fsrs_fit.report_lines(report, float(course.settings.get("desired_retention"))):
            typer.echo(line)
        typer.echo(fsrs_fit.verdict(report))
        if dry_run:
            return
        if not (yes or typer.confirm(_("Switch to the fitted parameters?"), default=False)):
            typer.echo(_("Nothing changed: kept the default parameters.") if current is None
                       else _("Nothing changed: kept the parameters in use."))
            return
        store_parameters(course.store, report.stored(course.now()))
        typer.echo(_("Switched: the scheduler uses the parameters fitted to {n} reviews (`llmcore-tui optimize "
                     "--reset` goes back to the defaults).").format(n=report.reviews))
    except StoreError as exc:
        raise fail(str(exc)) from None
    finally:
        course.close()
