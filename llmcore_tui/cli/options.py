"""Global options shared by the TUI launch and every command (no typer import here)."""

from __future__ import annotations

import locale
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Options:
    db: Path
    db_source: str  # why this database: --db, LLMCORE_DB, checkout, user data folder
    lang: str


def default_lang() -> str:
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    code = (locale.getlocale()[0] or "").lower()
    return "zh" if code.startswith("zh") else "en"


def resolve_options(db: Path | None, lang: str | None) -> Options:
    from llmcore_tui.core.course import default_db_path

    if db is not None:
        path, source = db, "--db"
    else:
        path, source = default_db_path()
    return Options(path, source, lang or default_lang())
