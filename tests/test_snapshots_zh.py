"""SVG snapshots of Today and Review in Chinese (regenerate with
`pytest tests/test_snapshots_zh.py --snapshot-update` after an intended UI or translation change)."""

from __future__ import annotations

import pytest

from llmcore_tui import i18n
from llmcore_tui.tui.app import LlmcoreApp

SIZE = (100, 30)


@pytest.fixture(autouse=True)
def english_afterwards():
    yield
    i18n.set_language("en")  # the interface language is process-wide


def _app(course) -> LlmcoreApp:
    course.store.created = False  # the "new database created at <tmp path>" toast would vary per run
    app = LlmcoreApp(course, "zh")
    app.theme = "textual-dark"
    return app


def test_today_screen_in_chinese(snap_compare, course):
    assert snap_compare(_app(course), terminal_size=SIZE)


def test_review_screen_in_chinese_with_the_answer_revealed(snap_compare, course):
    assert snap_compare(_app(course), press=["r", "space"], terminal_size=SIZE)
