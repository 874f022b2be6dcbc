"""SVG snapshots of Today and Review in Chinese (regenerate with
`pytest tests/test_snapshots_zh.py --snapshot-update` after an intended UI or translation change).
The app is built as tests/test_snapshots.py builds it, in Chinese."""

from __future__ import annotations

import pytest
import test_snapshots

from llmcore_tui import i18n
from llmcore_tui.tui.app import LlmcoreApp


@pytest.fixture
def zh_app(course, monkeypatch):
    monkeypatch.setattr(test_snapshots, "LlmcoreApp", lambda c: LlmcoreApp(c, "zh"))
    yield test_snapshots._app(course)
    i18n.set_language("en")  # the interface language is process-wide


def test_today_screen_in_chinese(snap_compare, zh_app):
    assert snap_compare(zh_app, terminal_size=test_snapshots.SIZE)


def test_review_screen_in_chinese_with_the_answer_revealed(snap_compare, zh_app):
    assert snap_compare(zh_app, press=["r", "space"], terminal_size=test_snapshots.SIZE)
