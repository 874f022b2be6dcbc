"""Every table of the brief, described once: its columns, and for each column a header and a
function from a row to a cell. The Markdown and HTML renderers draw these descriptions; adding a
column is one :class:`Column` here (and its header in ``words.TEXT``).

A cell is a few typed spans, never markup: each renderer escapes each span for its format, so
nothing a card, a lab or the database holds can become HTML or a Markdown link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from llmcore_tui.core.brief.formatting import (day_label, lab_cell, module_name, num, quiz_cell, status_word,
                                               timeline_labs, timeline_quiz)
from llmcore_tui.core.brief.model import Brief, LabEvidence, ModuleBrief, Revisit, TimelineDay, WeakItem
from llmcore_tui.core.brief.words import pct

Row = TypeVar("Row")
Source = TypeVar("Source")

# Span kinds: what the text is, so each renderer knows how to escape it.
PLAIN = "plain"  # data shown literally
RICH = "rich"  # card Markdown: `code`, **bold**, *em*, $math$
CODE = "code"  # an identifier (a card id, a metric key), shown as code
STRONG = "strong"  # data shown literally, in bold
BREAK = "break"  # a line break in HTML, a space in Markdown


@dataclass(frozen=True)
class Span:
    text: str
    kind: str = PLAIN


@dataclass(frozen=True)
class Cell:
    spans: tuple[Span, ...]
    css: str = ""  # the HTML cell's class ("n": a number, right-aligned)
    link: str = ""  # HTML: the cell links to this anchor of the page
    bar: float = 0.0  # Markdown: a bar of blocks this share of full length after the text (HTML has a chart)


def spans_text(spans: Sequence[Span], by_kind: dict[str, Callable[[str], str]]) -> str:
    """``spans`` written out by a renderer, which gives each kind its escaping function."""
    return "".join(by_kind[span.kind](span.text) for span in spans)


def plain(text: Any, css: str = "", link: str = "") -> Cell:
    return Cell((Span(str(text)),), css, link)


def number(text: Any, bar: float = 0.0) -> Cell:
    return Cell((Span(str(text)),), "n", bar=bar)


@dataclass(frozen=True)
class Column(Generic[Row]):
    header: str  # a key of words.TEXT
    cell: Callable[[Brief, Row], Cell]


@dataclass(frozen=True)
class Table(Generic[Source, Row]):
    """Columns over the rows that ``rows`` takes from a source (the brief, or one lab's evidence).
    ``mark`` gives a row's state ("today", "future", or ""): the row's class in HTML, and the
    state's words after the first cell in Markdown."""

    rows: Callable[[Source], Sequence[Row]]
    columns: tuple[Column[Row], ...]
    mark: Callable[[Row], str] | None = None


def _day_row_mark(d: TimelineDay) -> str:
    return "today" if d.today else "future" if d.future else ""


def _reviews_cell(brief: Brief, d: TimelineDay) -> Cell:
    peak = max([day.reviews for day in brief.timeline] + [1])
    return number(d.reviews, d.reviews / peak)


TIMELINE: Table[Brief, TimelineDay] = Table(
    rows=lambda brief: brief.timeline,
    columns=(
        Column("col_day", lambda b, d: plain(day_label(b, d))),
        Column("col_date", lambda b, d: plain(d.date.isoformat() if d.date else "—")),
        Column("col_reviews", _reviews_cell),
        Column("col_new", lambda b, d: number(d.new_cards)),
        Column("col_quiz", lambda b, d: number(timeline_quiz(d))),
        Column("col_runs", lambda b, d: plain(timeline_labs(d))),
    ),
    mark=_day_row_mark,
)


def _total(mb: ModuleBrief) -> int:
    return mb.mastery.cards_total if mb.mastery else 0


MASTERY: Table[Brief, ModuleBrief] = Table(
    rows=lambda brief: brief.modules,
    columns=(
        Column("col_day", lambda b, mb: number(mb.day.number)),
        Column("col_module", lambda b, mb: plain(mb.name, link=f"m-{mb.module}")),
        Column("col_status", lambda b, mb: plain(status_word(b, mb.status), css=f"status-{mb.status}")),
        Column("col_cards", lambda b, mb: number(f"{mb.introduced}/{_total(mb)}")),
        Column("col_recall", lambda b, mb: number(pct(mb.recall))),
        Column("col_reviews", lambda b, mb: number(mb.mastery.reviews if mb.mastery else 0)),
        Column("col_lapses", lambda b, mb: number(mb.mastery.lapses if mb.mastery else 0)),
        Column("col_quiz", lambda b, mb: number(quiz_cell(mb))),
        Column("col_lab", lambda b, mb: plain(lab_cell(mb))),
    ),
)

WEAKEST: Table[Brief, tuple[int, WeakItem]] = Table(
    rows=lambda brief: list(enumerate(brief.weakest, 1)),
    columns=(
        Column("col_rank", lambda b, row: number(row[0])),
        Column("col_card", lambda b, row: Cell((Span(row[1].front, RICH), Span("", BREAK), Span(row[1].card_id, CODE)))),
        Column("col_module", lambda b, row: plain(f"D{row[1].day} {module_name(b, row[1].module)}")),
        Column("col_recall", lambda b, row: number(pct(row[1].retrievability))),
        Column("col_lapses", lambda b, row: number(row[1].lapses)),
        Column("col_difficulty", lambda b, row: number(f"{row[1].difficulty:.1f}")),
    ),
)

HEADLINE: Table[LabEvidence, tuple[str, Any]] = Table(
    rows=lambda ev: ev.headline,
    columns=(
        Column("col_metric", lambda b, kv: Cell((Span(kv[0], CODE),))),
        Column("col_value", lambda b, kv: number(num(kv[1]))),
    ),
)


def revisit_item(brief: Brief, r: Revisit) -> tuple[Span, ...]:
    """One topic to revisit, as list-item spans: the module in bold, then why."""
    return (Span(f"D{r.day} · {r.name}", STRONG), Span(": "), Span("; ".join(r.reasons)))
