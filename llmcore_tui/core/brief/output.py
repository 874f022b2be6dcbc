"""Writing the brief: the format, the target file, an atomic write, and the export setting.

:func:`write_brief` writes atomically (a temporary file in the same folder, then a rename),
never creates anything else, refuses a folder, and records ``brief_exported_ts`` in the
settings (the roadmap's day-14 criterion).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from llmcore_tui.core.brief.build import build_brief
from llmcore_tui.core.brief.html import render_html
from llmcore_tui.core.brief.markdown import render_markdown
from llmcore_tui.core.brief.model import FORMATS, LANGS, SETTING, Brief, BriefError

if TYPE_CHECKING:
    from llmcore_tui.core.course import Course


def render(brief: Brief, fmt: str = "md") -> str:
    fmt = normalize_format(fmt)
    return render_html(brief) if fmt == "html" else render_markdown(brief)



def normalize_format(fmt: str) -> str:
    """``md`` or ``html`` (``markdown`` and ``htm`` are accepted); BriefError otherwise."""
    key = (fmt or "").strip().lower()
    if key not in FORMATS:
        raise BriefError(f"unknown format {fmt!r}: expected md or html")
    return FORMATS[key]


def default_output(fmt: str) -> Path:
    return Path(f"brief.{normalize_format(fmt)}")


def check_target(path: Path | str) -> Path:
    """The file the brief may be written to; BriefError when it is a folder, when its folder is
    missing or not a folder, or when it cannot be written."""
    target = Path(path).expanduser()
    if str(path) == "" or target.name in ("", ".", ".."):
        raise BriefError(f"{path!s} is not a file name")
    if target.is_dir():
        raise BriefError(f"{target} is a folder; give a file name, e.g. {target / 'brief.md'}")
    folder = target.parent
    if not folder.exists():
        raise BriefError(f"cannot write {target}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise BriefError(f"cannot write {target}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BriefError(f"cannot write {target}: the folder {folder} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise BriefError(f"cannot write {target}: the file is read-only")
    return target


def atomic_write(target: Path, text: str) -> None:
    """Write ``text`` to a new file next to ``target``, then rename it over ``target``: the
    target is either the old file or the whole new one, and nothing else is left behind."""
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise BriefError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise BriefError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise


def write_brief(course: "Course", path: Path | str, fmt: str = "md", lang: str = "en",
                now: float | None = None) -> Brief:
    """Build the brief, write it to ``path`` atomically and record ``brief_exported_ts``.

    Raises :class:`BriefError` (nothing written, setting untouched) for a bad format or
    language, a folder, a missing or read-only folder; ``ReadOnlyStoreError`` (nothing written)
    when the database is read-only. The file and the setting are one step: the file is renamed
    into place inside the transaction that records the export, which rolls back if it fails.
    """
    fmt = normalize_format(fmt)
    if lang not in LANGS:
        raise BriefError(f"unknown language {lang!r}: expected en or zh")
    target = check_target(path)
    if course.store.readonly:
        from llmcore_tui.core.store import ReadOnlyStoreError

        raise ReadOnlyStoreError(course.store.readonly_message("the brief export") + " No file was written.")
    brief = build_brief(course, lang, now)
    text = render(brief, fmt)
    with course.store.transaction():
        course.store.set_setting(SETTING, brief.generated_ts)
        atomic_write(target, text)
    return brief
