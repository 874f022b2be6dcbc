"""``llmcore-tui export-anki``: the deck as an Anki package.

Exit codes: 0 written, 1 the content cannot be found, 2 a usage error (a folder, a name not
ending in .apkg, a missing folder, or an existing file this app did not write).
"""

from __future__ import annotations

from pathlib import Path

import typer

from llmcore_tui.cli.options import fail
from llmcore_tui.i18n import N_, _

HELP = N_("Write every card (both languages, math as MathJax) as an Anki package; re-exporting updates the same "
          "notes in Anki instead of adding copies.")


def export_anki(
    output: Path = typer.Option(Path("llmcore-tui.apkg"), "-o", "--output", help=N_("the .apkg file to write")),
    quizzes: bool = typer.Option(False, "--quizzes/--no-quizzes", help=N_("also export the quiz questions as notes")),
) -> None:
    # its help is HELP, given where commands.py registers it (the catalog does not read docstrings)
    from llmcore_tui.core import anki, roadmap
    from llmcore_tui.core.content import load_deck
    from llmcore_tui.core.paths import content_root

    try:
        root = content_root()
    except FileNotFoundError as exc:
        raise fail(str(exc), 1) from None
    deck = load_deck(root / "cards", roadmap.MODULE_DAYS)
    questions = []
    if quizzes:
        from llmcore_tui.core import quiz

        questions = quiz.load_bank(root / "quizzes").questions
    try:
        done = anki.export_apkg(deck, output, questions)
    except anki.AnkiExportError as exc:
        raise fail(str(exc), 2) from None
    if deck.problems:
        typer.echo(_("warning: {n} card problem(s) skipped; run `llmcore-tui check`").format(n=len(deck.problems)),
                   err=True)
    if quizzes:
        typer.echo(_("wrote {path}: {cards} cards, {questions} quiz questions in {decks} day decks").format(
            path=done.path, cards=done.cards, questions=done.questions, decks=done.decks))
    else:
        typer.echo(_("wrote {path}: {cards} cards in {decks} day decks").format(path=done.path, cards=done.cards,
                                                                              decks=done.decks))
