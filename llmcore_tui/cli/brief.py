"""``llmcore-tui export-brief``: write the personal technical brief (day 14 of the course).

Registered by the root app as ``app.command("export-brief")(export_brief)``. Exit codes: 0
written, 1 the database cannot be opened or is read-only (then no file is written), 2 a usage error (unknown format or language, a
folder or an unwritable path given as output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmcore_tui.cli.options import Options, fail, open_course, resolve_options
from llmcore_tui.i18n import N_, _

HELP = N_("Export your personal technical brief: key ideas, measured mastery, lab evidence, timeline.")

EXIT_USAGE = 2


def _lang(ctx: typer.Context, lang: Optional[str], stored: str) -> str:
    """--lang of this command, else the root's --lang, else the stored setting, else the
    root's default (from the locale)."""
    if lang is not None:
        return lang
    root = ctx.find_root()
    if root is not ctx and root.params.get("lang"):
        return root.params["lang"]
    if stored in ("en", "zh"):
        return stored
    return getattr(ctx.obj, "lang", None) or "en"


def export_brief(
    ctx: typer.Context,
    output: Optional[Path] = typer.Option(None, "-o", "--output", show_default=False,
                                          help=N_("file to write (default: brief.md or brief.html here)")),
    fmt: str = typer.Option("md", "--format", help=N_("md (Markdown) or html (one self-contained page)")),
    lang: Optional[str] = typer.Option(None, "--lang", show_default=False,
                                       help=N_("en or zh (default: the root --lang, the lang setting, the locale)")),
) -> None:
    # its help is HELP, given where commands.py registers it (the catalog does not read docstrings)
    from llmcore_tui.core.brief import BriefError, check_target, default_output, normalize_format, write_brief
    from llmcore_tui.core.store import StoreError

    try:
        fmt = normalize_format(fmt)
    except BriefError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if lang is not None and lang not in ("en", "zh"):
        raise fail(_("unknown language {lang}: expected en or zh").format(lang=repr(lang)), EXIT_USAGE)
    path = output if output is not None else default_output(fmt)
    try:
        check_target(path)  # before opening the database: a bad path costs nothing
    except BriefError as exc:
        raise fail(str(exc), EXIT_USAGE) from None

    # called as a plain function (tests, scripts), there is no root command to have resolved them
    opts = ctx.obj if isinstance(ctx.obj, Options) else resolve_options(None, None)
    course = open_course(opts)
    try:
        chosen = _lang(ctx, lang, course.settings.get("lang"))
        brief = write_brief(course, path, fmt, chosen)
    except BriefError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except StoreError as exc:  # read-only: the export could not be recorded, so nothing was written
        raise fail(str(exc), 1) from None
    finally:
        course.close()
    tot = brief.totals
    typer.echo(_("wrote {path} ({fmt}, {lang}): {modules} modules, {introduced}/{cards} cards introduced, {reviews} "
                 "reviews, {answers} quiz answers, {runs} lab runs").format(
        path=path, fmt=fmt, lang=chosen, modules=len(brief.modules), introduced=tot.introduced, cards=tot.cards,
        reviews=tot.reviews, answers=tot.quiz_answers, runs=tot.lab_runs))
    for note in brief.notes:
        typer.echo(f"  {note}")


__all__ = ["export_brief"]
