"""Global options shared by the TUI launch and every command (no typer import here)."""

from __future__ import annotations

import locale
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from llmcore_tui.i18n import _, ngettext, set_language


@dataclass
class Options:
    db: Path
    db_source: str  # why this database: --db, LLMCORE_DB, checkout, user data folder
    lang: str  # --lang, else the locale's (the stored setting is read once the database is open)
    lang_given: bool = False  # --lang was on the command line: it beats the stored setting


def default_lang() -> str:
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    code = (locale.getlocale()[0] or "").lower()
    return "zh" if code.startswith("zh") else "en"


def resolve_options(db: Path | None, lang: str | None) -> Options:
    from llmcore_tui.core.paths import default_db_path

    if db is not None:
        path, source = db, "--db"
    else:
        path, source = default_db_path()
    return Options(path, source, lang or default_lang(), lang is not None)


def announce_store(store) -> None:
    """Tell the user, on stderr, what they must know about the database just opened: that it
    was created now (a typo in --db must not look like lost progress)."""
    if getattr(store, "created", False):
        where = store.path.resolve()
        folders = store.created_folders
        made = " " + ngettext("(and the folder {folders})", "(and the folders {folders})", len(folders)).format(
            folders=", ".join(str(f) for f in folders)) if folders else ""
        print(_("note: created a new progress database at {path}{folders}. If you meant an existing one, check the "
                "--db path.").format(path=where, folders=made), file=sys.stderr)


def prepare_store(store) -> None:
    """Every start of the app or a command: announce a new database and mark the lab runs a
    killed app left 'running'."""
    announce_store(store)
    if not store.readonly:
        from llmcore_tui.core.labruns import mark_stale

        mark_stale(store)


def fail(message: str, code: int = 1):
    """Say what went wrong on stderr and return the typer exit to raise (typer loads only here)."""
    import typer

    typer.echo(_("error: {message}").format(message=message), err=True)
    return typer.Exit(code)


def open_course(opts: Options, fuzz: bool = True):
    """The course every command works on, or a clear error (exit 1): one helper for all of them."""
    from llmcore_tui.core.course import Course
    from llmcore_tui.core.paths import cache_dir, content_root
    from llmcore_tui.core.store import StoreError

    try:
        course = Course.open(opts.db, content_root(), cache_dir=cache_dir(), fuzz=fuzz)
    except (StoreError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    if not opts.lang_given and course.settings.get("lang"):  # the stored language beats the locale
        set_language(course.settings.get("lang"))
    try:
        prepare_store(course.store)
    except StoreError as exc:
        course.close()
        raise fail(str(exc)) from None
    return course
