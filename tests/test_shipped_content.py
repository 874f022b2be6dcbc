"""The shipped course: it validates cleanly and has enough bilingual cards for every module."""

from __future__ import annotations

from typer.testing import CliRunner

from llmcore_tui.cli import app
from llmcore_tui.core.content import load_deck
from llmcore_tui.core.roadmap import LEARNING_MODULES, MODULE_DAYS
from tests.conftest import REPO


def test_check_passes_on_the_shipped_content(monkeypatch):
    monkeypatch.setenv("LLMCORE_CONTENT", str(REPO))
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output


def test_every_module_has_enough_bilingual_cards():
    deck = load_deck(REPO / "cards", MODULE_DAYS)
    assert deck.problems == []
    counts = {module: 0 for module in LEARNING_MODULES}
    for card in deck.cards:
        counts[card.module] += 1
        for lang in ("en", "zh"):
            assert card.front[lang].strip() and card.back[lang].strip(), f"{card.id} lacks {lang} text"
    short = {m: n for m, n in counts.items() if n < (30 if m == "reference" else 15)}
    assert not short, f"modules with too few cards: {short}"
    assert len(counts) == 13


def test_chinese_text_is_really_chinese():
    deck = load_deck(REPO / "cards", MODULE_DAYS)
    for card in deck.cards:
        text = card.front["zh"] + card.back["zh"]
        assert sum("\u4e00" <= ch <= "\u9fff" for ch in text) >= 5, f"{card.id}: zh text has no Chinese"
