"""Shared fixtures: a course on a temporary database with a fixed clock, and small card decks."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from llmcore_tui.core.clock import Clock
from llmcore_tui.core.course import Course
from llmcore_tui.core.store import Store

REPO = Path(__file__).resolve().parents[1]
# 2026-03-02 10:00 UTC: a Monday, mid-morning, far from any day boundary
FIXED_NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc).timestamp()


def card_block(card_id: str, front: str = "Question?", back: str = "Answer.", tags: str = "") -> str:
    tag_line = f"tags: {tags}\n" if tags else ""
    return (f"## {card_id}\n{tag_line}\n### front.en\n{front}\n\n### back.en\n{back}\n\n"
            f"### front.zh\n问题：{front}\n\n### back.zh\n答案：{back}\n\n")


def write_card_file(folder: Path, name: str, module: str, day: int, cards: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    head = f"---\nmodule: {module}\nday: {day}\ntitle.en: {module}\ntitle.zh: {module}\n---\n\n"
    path.write_text(head + "".join(cards), encoding="utf-8")
    return path


@pytest.fixture
def content(tmp_path: Path) -> Path:
    """A small course: 3 MDP cards (day 1) and 2 TD cards (day 2)."""
    root = tmp_path / "content"
    write_card_file(root / "cards", "01-mdp.md", "mdp", 1,
                    [card_block("mdp-one", "What is $\\gamma$?", "The discount."), card_block("mdp-two"), card_block("mdp-three")])
    write_card_file(root / "cards", "02-td.md", "td_learning", 2, [card_block("td-one"), card_block("td-two")])
    (root / "quizzes").mkdir()
    return root


@pytest.fixture
def clock() -> Clock:
    return Clock(FIXED_NOW)


@pytest.fixture
def course(tmp_path: Path, content: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Course:
    monkeypatch.setenv("LLMCORE_CONTENT", str(content))
    course = Course.open(tmp_path / "progress.db", content, clock=clock, fuzz=False)
    course.settings.set("timezone", "UTC")
    yield course
    course.close()


@pytest.fixture
def real_course(tmp_path: Path, clock: Clock) -> Course:
    """The shipped cards on a fresh database."""
    course = Course.open(tmp_path / "progress.db", REPO, clock=clock, fuzz=False)
    course.settings.set("timezone", "UTC")
    yield course
    course.close()


def drain_pty(fd: int) -> None:
    """Read whatever a pseudo-terminal has ready, so that the program writing to it never blocks."""
    import os
    import select

    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0)
            if not ready or not os.read(fd, 65536):
                return
    except OSError:
        return


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()


__all__ = ["Store", "card_block", "write_card_file", "dedent", "drain_pty", "FIXED_NOW", "REPO"]
