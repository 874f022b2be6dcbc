"""``llmcore-tui``: with no sub-command it opens the TUI; sub-commands script everything else.

Opening the TUI is the common case and must be fast, so ``main`` recognises a plain launch
(only ``--db`` and ``--lang``) and starts the app without building the typer application
(typer's parameter machinery imports pydantic: ~0.2 s). Anything else, including every
error and ``--help``, goes through typer in :mod:`llmcore_tui.cli.commands`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from llmcore_tui.cli.options import Options, default_lang  # noqa: F401  (re-exported)


def plain_launch(argv: list[str]) -> tuple[Path | None, str | None] | None:
    """(db, lang) when ``argv`` only opens the TUI; None when typer should handle it."""
    values: dict[str, str] = {}
    tokens = list(argv)
    while tokens:
        token = tokens.pop(0)
        name, sep, value = token.partition("=")
        if name not in ("--db", "--lang") or name in values:
            return None
        if not sep:
            if not tokens:
                return None
            value = tokens.pop(0)
        if not value or (name == "--lang" and value not in ("en", "zh")):
            return None
        values[name] = value
    return (Path(values["--db"]) if "--db" in values else None), values.get("--lang")


def main() -> None:
    launch = plain_launch(sys.argv[1:])
    if launch is None:
        from llmcore_tui.cli.commands import run

        run()
        return
    from llmcore_tui.cli.options import resolve_options
    from llmcore_tui.tui.app import run_app

    options = resolve_options(*launch)
    sys.exit(run_app(options.db, launch[1]))  # None without --lang: the stored setting, else the locale


def __getattr__(name: str) -> Any:  # ``from llmcore_tui.cli import app`` keeps working
    if name in ("app", "open_course", "fail"):
        from llmcore_tui.cli import commands

        return getattr(commands, name)
    raise AttributeError(name)
