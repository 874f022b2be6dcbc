"""The deck as an Anki package (``.apkg``), for learners who review in Anki.

One note per card, holding both languages; math becomes MathJax (``\\(…\\)`` inline,
``\\[…\\]`` display), which Anki renders; the rest of the Markdown becomes HTML with every
raw ``<`` escaped. Notes are tagged by module and day and filed in one sub-deck per day.
A note's GUID is derived from the card id (and a question's from its id), so exporting
again and importing over an earlier import updates the notes instead of adding copies;
model and deck ids are derived from fixed names for the same reason.

Quiz questions can be added as notes too (their own note type): the question, its choices,
and on the back the right answer and the explanation. A parametric question is shown with
one fixed draw of its numbers (seeded by its id), so a re-export shows the same numbers.

genanki writes the package (a zip holding an SQLite collection and a media map); it is
imported only here, when an export runs.
"""

from __future__ import annotations

import hashlib
import html
import random
import re
import sqlite3
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from llmcore_tui.core import roadmap
from llmcore_tui.core.mathtext import iter_math

if TYPE_CHECKING:
    from llmcore_tui.core.content import Card, Deck

GUID_NAMESPACE = "llmcore-tui"
DECK_NAME = "llmcore-tui"
LANGS = ("en", "zh")


class AnkiExportError(ValueError):
    """An export that cannot be written (the target is a folder, or not an .apkg)."""


def stable_id(name: str) -> int:
    """A 31-bit id from a fixed name: the same note type and deck ids on every export."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") >> 1 | (1 << 30)


def note_guid(item_id: str) -> str:
    return _genanki().guid_for(GUID_NAMESPACE, item_id)


def _genanki() -> Any:
    import genanki  # imported on use: the TUI and every other command never pay for it

    return genanki


# -- Markdown with math -> Anki HTML -----------------------------------------------------------

_TOKEN = "ankimath{}x"  # letters and digits only: Markdown leaves it alone


def to_anki_html(markdown: str) -> str:
    """Markdown with ``$…$``/``$$…$$`` as HTML with MathJax delimiters; raw HTML is escaped."""
    from markdown_it import MarkdownIt

    spans, parts, last = [], [], 0
    for span in iter_math(markdown):
        parts.append(markdown[last:span.start])
        parts.append(_TOKEN.format(len(spans)))
        spans.append(span)
        last = span.end
    parts.append(markdown[last:])
    rendered = MarkdownIt("commonmark", {"html": False}).render("".join(parts)).strip()
    for index in reversed(range(len(spans))):  # reversed: token 1 is a prefix of token 10
        span = spans[index]
        open_, close = (r"\[", r"\]") if span.display else (r"\(", r"\)")
        rendered = rendered.replace(_TOKEN.format(index), html.escape(f"{open_}{span.latex.strip()}{close}", quote=False))
    return rendered


def anki_tag(text: str) -> str:
    """A tag Anki keeps as one tag: no spaces, lower case."""
    return re.sub(r"\s+", "_", text.strip().lower())


# -- note types ----------------------------------------------------------------------------

_CSS = """
.card { font-family: sans-serif; font-size: 18px; text-align: left; max-width: 42em; margin: auto; }
.zh { color: #555; margin-top: 0.8em; }
.meta { color: #888; font-size: 12px; }
"""

CARD_FIELDS = ["Id", "Module", "Day", "FrontEn", "BackEn", "FrontZh", "BackZh"]
QUIZ_FIELDS = ["Id", "Module", "Day", "QuestionEn", "QuestionZh", "AnswerEn", "AnswerZh", "ExplanationEn", "ExplanationZh"]


def _card_model() -> Any:
    genanki = _genanki()
    front = '<div class="meta">{{Module}} · day {{Day}}</div>{{FrontEn}}<div class="zh">{{FrontZh}}</div>'
    back = '{{FrontSide}}<hr id="answer">{{BackEn}}<div class="zh">{{BackZh}}</div>'
    return genanki.Model(stable_id("llmcore-tui card v1"), "llmcore-tui card",
                         fields=[{"name": f} for f in CARD_FIELDS],
                         templates=[{"name": "Card", "qfmt": front, "afmt": back}], css=_CSS)


def _quiz_model() -> Any:
    genanki = _genanki()
    front = '<div class="meta">{{Module}} · day {{Day}} · quiz</div>{{QuestionEn}}<div class="zh">{{QuestionZh}}</div>'
    back = ('{{FrontSide}}<hr id="answer"><b>{{AnswerEn}}</b><div class="zh"><b>{{AnswerZh}}</b></div>'
            '{{ExplanationEn}}<div class="zh">{{ExplanationZh}}</div>')
    return genanki.Model(stable_id("llmcore-tui quiz v1"), "llmcore-tui quiz",
                         fields=[{"name": f} for f in QUIZ_FIELDS],
                         templates=[{"name": "Question", "qfmt": front, "afmt": back}], css=_CSS)


# -- building the package ------------------------------------------------------------------


@dataclass(frozen=True)
class AnkiExport:
    path: Path
    cards: int
    questions: int
    decks: int


def deck_name(day: int) -> str:
    """``llmcore-tui::Day 08 <the day's title>``: one sub-deck per roadmap day."""
    return f"{DECK_NAME}::Day {day:02d} {roadmap.BY_NUMBER[day].title['en']}"


def _tags(module: str, day: int, own: Iterable[str]) -> list[str]:
    return [f"llmcore::{anki_tag(module)}", f"llmcore::day{day:02d}", *(anki_tag(t) for t in own if t.strip())]


def card_note(card: "Card", model: Any) -> Any:
    fields = [card.id, card.module, str(card.day)]
    for lang in LANGS:
        fields += [to_anki_html(card.text("front", lang)), to_anki_html(card.text("back", lang))]
    return _genanki().Note(model=model, fields=fields, tags=_tags(card.module, card.day, card.tags),
                           guid=note_guid(card.id))


def _question_side(shown: Any, lang: str) -> str:
    text = to_anki_html(shown.text_for(lang))
    choices = shown.choices_for(lang)
    if choices:
        items = "".join(f"<li>{to_anki_html(c)}</li>" for c in choices)
        text += f'<ol type="A">{items}</ol>'
    return text


def question_note(question: Any, model: Any) -> Any:
    from llmcore_tui.core import quiz

    shown = quiz.draw(question, random.Random(question.id))  # a fixed draw: stable across exports
    fields = [question.id, question.module, str(question.day),
              _question_side(shown, "en"), _question_side(shown, "zh"),
              to_anki_html(shown.expected_for("en")), to_anki_html(shown.expected_for("zh")),
              to_anki_html(shown.explanation_for("en")), to_anki_html(shown.explanation_for("zh"))]
    return _genanki().Note(model=model, fields=fields, tags=_tags(question.module, question.day, question.tags),
                           guid=note_guid("quiz:" + question.id))


def package_models(path: Path) -> str:
    """The note-type JSON of an ``.apkg`` ("" if it is not a readable Anki package)."""
    try:
        with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as tmp:
            archive.extract("collection.anki2", tmp)
            conn = sqlite3.connect(Path(tmp) / "collection.anki2")
            try:
                return str(conn.execute("SELECT models FROM col").fetchone()[0])
            finally:
                conn.close()
    except (zipfile.BadZipFile, KeyError, sqlite3.Error, OSError, TypeError):
        return ""


def check_target(path: Path | str) -> Path:
    """Where an export may go: an ``.apkg`` name in an existing folder, new or one we wrote."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise AnkiExportError(f"{target} is a folder; give a file name ending in .apkg")
    if target.suffix.lower() != ".apkg":
        raise AnkiExportError(f"{target}: an Anki package must end in .apkg")
    if not target.parent.is_dir():
        raise AnkiExportError(f"{target.parent}: no such folder")
    if target.exists() and "llmcore-tui card" not in package_models(target):
        raise AnkiExportError(f"{target} exists and is not a deck this app exported; it was left alone")
    return target


def export_apkg(deck: "Deck", path: Path | str, questions: Iterable[Any] = ()) -> AnkiExport:
    """Write ``deck`` (and ``questions``) to ``path`` atomically; return what was written."""
    genanki = _genanki()
    target = check_target(path)
    card_model, quiz_model = _card_model(), _quiz_model()
    decks: dict[int, Any] = {}

    def deck_for(day: int) -> Any:
        if day not in decks:
            decks[day] = genanki.Deck(stable_id(f"llmcore-tui deck day {day}"), deck_name(day))
        return decks[day]

    n_cards = n_questions = 0
    for card in deck.cards:
        deck_for(card.day).add_note(card_note(card, card_model))
        n_cards += 1
    for question in questions:
        deck_for(question.day).add_note(question_note(question, quiz_model))
        n_questions += 1
    tmp = target.with_name(f".{target.name}.{stable_id(str(target))}.tmp")
    try:
        genanki.Package([decks[d] for d in sorted(decks)]).write_to_file(str(tmp), timestamp=0)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return AnkiExport(target, n_cards, n_questions, len(decks))
