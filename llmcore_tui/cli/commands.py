"""The typer application: every sub-command of ``llmcore-tui``.

The CLI and the TUI are two faces over ``llmcore_tui.core``. Heavy modules (the TUI, the
scheduler) are imported inside the commands that need them, so ``--help`` stays instant.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Optional

import typer

from llmcore_tui.cli.options import Options, default_lang, fail, open_course, resolve_options
from llmcore_tui.core.store import StoreError
from llmcore_tui.i18n import N_, _, language_in, localize_command, pick, set_language

# help texts are msgids (English): typer reads them at import, before the language is chosen;
# run() translates the click command typer builds from them
app = typer.Typer(
    name="llmcore-tui",
    help=N_("Learn LLMs, VLMs and post-training in 14 days: spaced repetition plus labs you run."),
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    db: Optional[Path] = typer.Option(None, "--db", help=N_("progress database (env LLMCORE_DB); default: progress.db "
                                                            "in the checkout, else the user data folder"),
                                      show_default=False),
    lang: Optional[str] = typer.Option(None, "--lang", help=N_("language of the app: en or zh (default: the lang "
                                                               "setting, else the locale)"), show_default=False),
) -> None:
    if lang is not None and lang not in ("en", "zh"):
        raise typer.BadParameter(_("expected en or zh"), param_hint="--lang")
    ctx.obj = resolve_options(db, lang)
    if lang is not None:  # run() chose it from the command line already; a caller of `app` has not
        set_language(lang)
    if ctx.invoked_subcommand is None:
        from llmcore_tui.tui.app import run_app

        raise typer.Exit(run_app(ctx.obj.db, lang))


@app.command(help=N_("Validate all cards and quizzes; print counts per module and every problem as file:line."))
def check(ctx: typer.Context,
          by_file: bool = typer.Option(False, "--files",
                                       help=N_("also count cards (core / advanced) and questions per file"))) -> None:
    from llmcore_tui.core import roadmap
    from llmcore_tui.core.content import load_deck
    from llmcore_tui.core.paths import content_root

    try:
        root_dir = content_root()
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    deck = load_deck(root_dir / "cards", roadmap.MODULE_DAYS)
    problems = list(deck.problems)
    questions: dict[str, int] = {}
    try:
        from llmcore_tui.core import quiz
    except ImportError:
        quiz = None  # type: ignore[assignment]
    if quiz is not None and hasattr(quiz, "load_bank"):
        bank = quiz.load_bank(root_dir / "quizzes")
        problems += bank.problems
        for question in bank.questions:
            questions[question.module] = questions.get(question.module, 0) + 1
    counts: dict[str, int] = {}
    for card in deck.cards:
        counts[card.module] = counts.get(card.module, 0) + 1
    day_, module_, cards_, quiz_ = _("day"), _("module"), _("cards"), _("quiz")
    typer.echo(f"{_cells(day_, -3)}  {_cells(module_, 12)} {_cells(cards_, -5)} {_cells(quiz_, -5)}")
    for day in roadmap.DAYS:
        if day.module == "brief":
            continue
        typer.echo(f"{day.number:>3}  {day.module:<12} {counts.get(day.module, 0):>5} {questions.get(day.module, 0):>5}")
    extra = sorted(set(questions) - set(roadmap.MODULE_DAYS))
    for module in extra:
        typer.echo(f"{'':>3}  {module:<12} {'':>5} {questions[module]:>5}")
    typer.echo(_("total: {cards} cards, {questions} quiz questions").format(cards=len(deck.cards),
                                                                             questions=sum(questions.values())))
    if by_file:
        _counts_by_file(deck.cards, bank.questions if quiz is not None else [])
    for problem in sorted(problems):
        typer.echo(str(problem), err=True)
    if problems:
        typer.echo(_("{n} problem(s) found").format(n=len(problems)), err=True)
        raise typer.Exit(1)


def _cells(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal cells (a CJK character takes two); a negative width
    right-aligns it."""
    from rich.cells import cell_len

    pad = " " * max(0, abs(width) - cell_len(text))
    return pad + text if width < 0 else text + pad


def _counts_by_file(cards: list, questions: list) -> None:
    """One line per content file: what a topic adds, core cards apart from advanced ones."""
    from llmcore_tui.core.content import ADVANCED_TAG

    rows: dict[str, list[int]] = {}
    for card in cards:
        name = Path(card.path).name
        rows.setdefault(name, [0, 0, 0])[1 if ADVANCED_TAG in card.tags else 0] += 1
    for question in questions:
        rows.setdefault(Path(question.path).name, [0, 0, 0])[2] += 1
    typer.echo("")
    file_, core_, advanced_, quiz_ = _("file"), _("core"), _("adv."), _("quiz")
    typer.echo(f"{_cells(file_, 34)} {_cells(core_, -5)} {_cells(advanced_, -5)} {_cells(quiz_, -5)}")
    for name in sorted(rows):
        core, advanced, asked = rows[name]
        typer.echo(f"{name:<34} {core:>5} {advanced:>5} {asked:>5}")


@app.command(help=N_("Today's plan, due counts, the roadmap and learning statistics, as plain text."))
def stats(ctx: typer.Context) -> None:
    opts: Options = ctx.obj
    course = open_course(opts)
    today = course.today()
    typer.echo(_("database: {path} ({source})").format(path=opts.db, source=opts.db_source))
    typer.echo(_("today: {date} — calendar day {calendar} of 14; on day {n}, {phase}: {title}").format(
        date=today.date.isoformat(), calendar=today.calendar_day, n=today.day.number, phase=pick(today.phase.title),
        title=pick(today.day.title)))
    typer.echo(_("due now: {due} ({learning} learning), new available today: {new}, introduced today: {today}").format(
        due=today.due, learning=today.learning, new=today.new_available, today=today.new_today))
    for owed in today.behind:
        typer.echo(_("behind: day {n} {title} still owes").format(n=owed.day.number, title=pick(owed.day.title))
                   + " " + "; ".join(owed.unmet))
    for action in today.actions:
        typer.echo(_("next:") + f" [{action.key}] {action.text}")
    typer.echo("")
    labels = {"done": _("done"), "open": _("open"), "locked": _("locked")}
    for status in course.day_statuses():
        details = "; ".join(c.detail for c in status.criteria)
        typer.echo(f"{status.day.number:>3}  {_cells(labels[status.label], 6)} {_cells(pick(status.day.title), 24)} "
                   f"{details}")
    from llmcore_tui.core import stats as learning_stats

    typer.echo("")
    for line in learning_stats.format_report(learning_stats.report(course)):
        typer.echo(line)
    course.close()


settings_app = typer.Typer(help=N_("Show or change settings (new cards per day, day start hour, ...)."),
                           no_args_is_help=True)
app.add_typer(settings_app, name="settings")


@settings_app.command("show", help=N_("Every setting with its value and meaning."))
def settings_show(ctx: typer.Context) -> None:
    from llmcore_tui.core.settings import SETTINGS

    course = open_course(ctx.obj)
    for spec in SETTINGS:
        typer.echo(f"{spec.key:<22} {course.settings.get(spec.key)!s:<14} {_(spec.help)}")
    course.close()


@settings_app.command("set", help=N_("Change one setting, e.g. `llmcore-tui settings set new_per_day 10`."))
def settings_set(ctx: typer.Context, key: str, value: str) -> None:
    course = open_course(ctx.obj)
    try:
        stored = course.settings.set(key, value)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    except StoreError as exc:  # a read-only database: nothing was changed
        raise fail(str(exc), 1) from None
    finally:
        course.close()
    typer.echo(f"{key} = {stored}")


from llmcore_tui.cli import anki as _anki, brief as _brief, calc as _calc, lab as _lab  # noqa: E402
from llmcore_tui.cli import optimize as _optimize, smoke as _smoke  # noqa: E402

app.add_typer(_lab.app, name="lab", help=N_("Run the labs and inspect or compare their recorded runs."))
app.add_typer(_calc.app, name="calc",
              help=N_("Memory and compute calculator (KV cache, ZeRO, LoRA, FLOPs, MoE, speculative decoding)."))
app.command("export-brief", help=_brief.HELP)(_brief.export_brief)
app.command("export-anki", help=_anki.HELP)(_anki.export_anki)
app.command("optimize", help=_optimize.HELP)(_optimize.optimize)
app.command("smoke", help=_smoke.HELP)(_smoke.smoke)


def cli_command(argv: list[str]):
    """The click command typer builds from ``app``, its help in the language ``argv`` asks for
    (``--lang``, else the locale: a help page does not open the database)."""
    set_language(language_in(argv, default_lang()))
    return localize_command(typer.main.get_command(app))


def run() -> None:
    """Exit codes of every command: 0 done, 1 failed (the database cannot be opened, is read-only
    for a change, or another database error), 2 usage; ``lab run`` adds 130 (interrupted)."""
    command = cli_command(sys.argv[1:])
    try:
        command(prog_name="llmcore-tui")
    except StoreError as exc:
        typer.echo(_("error: {message}").format(message=exc), err=True)
        sys.exit(1)
    except sqlite3.Error as exc:  # a database error the command did not foresee: no traceback
        typer.echo(_("error: database error: {message}").format(message=exc), err=True)
        sys.exit(1)
