"""Anki export: the package opens as Anki's zip + SQLite collection, holds one note per card
(and per question with --quizzes), keeps GUIDs across exports, and never writes a stranger's file."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from llmcore_tui.cli import app
from llmcore_tui.core import anki, quiz, roadmap
from llmcore_tui.core.content import load_deck
from llmcore_tui.core.paths import content_root

runner = CliRunner()


def read_package(path: Path, tmp: Path) -> dict:
    """Notes (guid -> fields, tags) and deck names of an .apkg, read the way Anki would."""
    with zipfile.ZipFile(path) as archive:
        assert {"collection.anki2", "media"} <= set(archive.namelist())
        archive.extract("collection.anki2", tmp)
    conn = sqlite3.connect(tmp / "collection.anki2")
    notes = {guid: (flds.split("\x1f"), tags.split()) for guid, flds, tags in conn.execute("SELECT guid, flds, tags FROM notes")}
    decks = [d["name"] for d in json.loads(conn.execute("SELECT decks FROM col").fetchone()[0]).values()]
    conn.close()
    return {"notes": notes, "decks": decks}


def shipped() -> tuple:
    root = content_root()
    return load_deck(root / "cards", roadmap.MODULE_DAYS), quiz.load_bank(root / "quizzes")


def test_export_counts_match_check_and_guids_are_stable(tmp_path):
    deck, bank = shipped()
    first, second = tmp_path / "a.apkg", tmp_path / "b.apkg"
    result = runner.invoke(app, ["export-anki", "-o", str(first)])
    assert result.exit_code == 0, result.output
    assert f"{len(deck.cards)} cards" in result.output
    assert runner.invoke(app, ["export-anki", "-o", str(second), "--quizzes"]).exit_code == 0
    (tmp_path / "x").mkdir(), (tmp_path / "y").mkdir()
    a, b = read_package(first, tmp_path / "x"), read_package(second, tmp_path / "y")
    assert len(a["notes"]) == len(deck.cards) == len({c.id for c in deck.cards})
    assert len(b["notes"]) == len(deck.cards) + len(bank.questions)
    assert set(a["notes"]) <= set(b["notes"])  # the same card keeps its GUID in every export
    for guid, (fields, tags) in a["notes"].items():
        assert fields[0] == b["notes"][guid][0][0]
    by_id = {fields[0]: (fields, tags) for fields, tags in a["notes"].values()}
    card = deck.cards[0]
    fields, tags = by_id[card.id]
    assert f"llmcore::{card.module}" in tags and f"llmcore::day{card.day:02d}" in tags
    assert len(fields) == len(anki.CARD_FIELDS) and fields[5] and fields[6]  # both languages
    assert sorted(set(a["decks"]) - {"Default"})[0].startswith("llmcore-tui::Day 01")


def test_math_becomes_mathjax_and_html_is_escaped():
    out = anki.to_anki_html("If $a < b$ then <script>x</script>\n\n$$\\sum_{i=1}^{10} x_i$$")
    assert r"\(a &lt; b\)" in out
    assert r"\[\sum_{i=1}^{10} x_i\]" in out
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "$" not in out
    many = anki.to_anki_html(" ".join(f"${i}$" for i in range(12)))
    assert r"\(1\)" in many and r"\(11\)" in many and "ankimath" not in many


def test_every_shipped_card_renders_without_dollars_left(tmp_path):
    deck, _ = shipped()
    for card in deck.cards:
        for lang in anki.LANGS:
            for side in ("front", "back"):
                html = anki.to_anki_html(card.text(side, lang))
                assert "ankimath" not in html, card.id
                assert html.count(r"\(") == html.count(r"\)"), card.id


def test_a_file_that_is_not_ours_is_left_alone(tmp_path):
    stranger = tmp_path / "deck.apkg"
    stranger.write_bytes(b"someone else's deck")
    result = runner.invoke(app, ["export-anki", "-o", str(stranger)])
    assert result.exit_code == 2
    assert "left alone" in result.output
    assert stranger.read_bytes() == b"someone else's deck"
    assert runner.invoke(app, ["export-anki", "-o", str(tmp_path)]).exit_code == 2
    assert runner.invoke(app, ["export-anki", "-o", str(tmp_path / "deck.txt")]).exit_code == 2
    assert runner.invoke(app, ["export-anki", "-o", str(tmp_path / "no" / "deck.apkg")]).exit_code == 2
    assert list(tmp_path.iterdir()) == [stranger]  # nothing else was written, no temp file left


def test_reexport_over_our_own_package(tmp_path):
    target = tmp_path / "deck.apkg"
    assert runner.invoke(app, ["export-anki", "-o", str(target)]).exit_code == 0
    assert runner.invoke(app, ["export-anki", "-o", str(target)]).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deck.apkg"]
