"""SVG snapshots of key screens (regenerate with `pytest tests/test_snapshots.py --snapshot-update`)."""

from __future__ import annotations

from llmcore_tui.tui.app import LlmcoreApp

SIZE = (100, 30)


def _app(course) -> LlmcoreApp:
    course.store.created = False  # the "new database created at <tmp path>" toast would vary per run
    app = LlmcoreApp(course)
    app.theme = "textual-dark"
    return app


def test_today_screen(snap_compare, course):
    assert snap_compare(_app(course), terminal_size=SIZE)


def test_review_screen_with_the_answer_revealed(snap_compare, course):
    assert snap_compare(_app(course), press=["r", "space"], terminal_size=SIZE)


def test_roadmap_screen(snap_compare, course):
    assert snap_compare(_app(course), press=["m"], terminal_size=SIZE)
