"""Where things live: the course content, the default database, the cache. One home for each path."""

from __future__ import annotations

import os
from pathlib import Path


def checkout_root() -> Path | None:
    """The repository root when running from a checkout (it has cards/ next to the package)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "cards").is_dir() and (here / "pyproject.toml").is_file() else None


def content_root() -> Path:
    env = os.environ.get("LLMCORE_CONTENT")
    if env:
        return Path(env)
    root = checkout_root()
    if root is None:
        raise FileNotFoundError("cannot find the course content (cards/); set LLMCORE_CONTENT to the folder holding cards/")
    return root


def default_db_path() -> tuple[Path, str]:
    """The database to use, and why: --db/LLMCORE_DB win; else progress.db in the checkout
    when the current folder is the checkout; else the user data folder."""
    env = os.environ.get("LLMCORE_DB")
    if env:
        return Path(env), "LLMCORE_DB"
    root = checkout_root()
    if root is not None and Path.cwd().resolve() == root:
        return root / "progress.db", "checkout"
    import platformdirs

    return Path(platformdirs.user_data_dir("llmcore-tui")) / "progress.db", "user data folder"


def cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("llmcore-tui"))

