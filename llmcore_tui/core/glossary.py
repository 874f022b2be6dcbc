"""One Chinese term per English term: the glossary and the check that enforces it.

The glossary is the table in ``cards/glossary.md`` (English | 中文 | replaces | fine inside).
:func:`check_terms` is a section check (see ``content.SECTION_CHECKS``): in every ``*.zh``
section it reports each variant the glossary replaces, with the term to use, and each ASCII
double quote outside math and code (Chinese text quotes with “…”). A variant that is ordinary
Chinese inside a longer phrase (在策略下, "under the policy") is not reported inside the phrases
of the fourth column.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

GLOSSARY_FILE = "glossary.md"  # in the cards folder


@dataclass(frozen=True)
class Term:
    english: str
    chinese: str
    variants: tuple[str, ...]
    fine_inside: tuple[str, ...] = ()


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _items(cell: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in cell.split(",") if item.strip())


def parse_glossary(text: str) -> list[Term]:
    """The rows of the first Markdown table whose header starts ``| English | 中文 |``.

    Raises ValueError (with the line) on a row that does not have four cells, an empty term, or
    a variant that is the term itself, so a broken glossary never silently checks nothing.
    """
    terms: list[Term] = []
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith("|"):
            if in_table:
                break
            continue
        cells = _cells(line)
        if not in_table:
            in_table = cells[:2] == ["English", "中文"]
            continue
        if set("".join(cells)) <= set("-: "):
            continue  # the |---| line
        if len(cells) != 4:
            raise ValueError(f"glossary line {number}: expected 4 cells (English | 中文 | replaces | fine inside), got {len(cells)}")
        english, chinese, variants, fine = cells[0], cells[1], _items(cells[2]), _items(cells[3])
        if not english or not chinese:
            raise ValueError(f"glossary line {number}: empty term")
        if chinese in variants:
            raise ValueError(f"glossary line {number}: {chinese!r} is both the term and a variant")
        for phrase in fine:
            if not any(v in phrase for v in variants):
                raise ValueError(f"glossary line {number}: {phrase!r} holds none of the variants")
        terms.append(Term(english, chinese, variants, fine))
    if not terms:
        raise ValueError("glossary has no table with the header '| English | 中文 | replaces | fine inside |'")
    return terms


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> tuple[Term, ...]:
    return tuple(parse_glossary(Path(path).read_text(encoding="utf-8")))


@lru_cache(maxsize=4)
def _glossary_path(content_env: str | None, cwd: str) -> Path | None:
    try:
        from llmcore_tui.core.paths import content_root

        return content_root() / "cards" / GLOSSARY_FILE
    except FileNotFoundError:
        return None


def shipped_terms() -> tuple[Term, ...]:
    """The glossary of the course content in use (empty when there is none).

    The content folder is resolved once per LLMCORE_CONTENT value and working folder, and the file
    re-read only when it changes: the check runs on every section of the deck.
    """
    path = _glossary_path(os.environ.get("LLMCORE_CONTENT"), os.getcwd())
    try:
        return _load(str(path), path.stat().st_mtime_ns) if path else ()
    except OSError:
        return ()


@lru_cache(maxsize=4)
def _pattern(terms: tuple[Term, ...]) -> re.Pattern[str] | None:
    """One regex for every variant of ``terms`` (a fast first pass over a section)."""
    variants = sorted({v for term in terms for v in term.variants}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, variants))) if variants else None


def _masked(text: str) -> str:
    """``text`` with math, code spans and fenced code blanked (same length, so offsets hold)."""
    from llmcore_tui.core.mathtext import iter_math

    chars = list(text)

    def blank(start: int, end: int) -> None:
        for k in range(start, end):
            if chars[k] != "\n":
                chars[k] = " "

    for m in re.finditer(r"^ {0,3}(`{3,}|~{3,}).*?(?:^ {0,3}\1[ \t]*$|\Z)", text, re.S | re.M):
        blank(m.start(), m.end())
    for m in re.finditer(r"(`+)(?!`).+?(?<!`)\1(?!`)", "".join(chars), re.S):
        blank(m.start(), m.end())
    for span in iter_math("".join(chars)):
        blank(span.start, span.end)
    return "".join(chars)


def find_variants(text: str, terms: tuple[Term, ...] | list[Term], plain: str | None = None) -> Iterator[tuple[int, str, Term]]:
    """(offset, variant, term) for every variant of ``terms`` in ``text``, outside math and code
    (``plain``: ``text`` already masked by the caller)."""
    plain = _masked(text) if plain is None else plain
    for term in terms:
        covered: set[int] = set()
        for phrase in term.fine_inside:
            for m in re.finditer(re.escape(phrase), plain):
                covered.update(range(m.start(), m.end()))
        for variant in term.variants:
            for m in re.finditer(re.escape(variant), plain):
                if not set(range(m.start(), m.end())) <= covered:
                    yield m.start(), variant, term


def ascii_quotes(text: str, plain: str | None = None) -> Iterator[int]:
    """Offsets of ASCII double quotes outside math and code."""
    plain = _masked(text) if plain is None else plain
    return (m.start() for m in re.finditer('"', plain))


def check_terms(text: str, section: str, terms: tuple[Term, ...] | None = None) -> Iterator[tuple[int, str]]:
    """Section check: glossary variants and ASCII double quotes in Chinese sections."""
    if not section.endswith(".zh"):
        return
    terms = tuple(shipped_terms() if terms is None else terms)
    pattern = _pattern(terms)
    if '"' not in text and (pattern is None or not pattern.search(text)):
        return  # the common case: nothing to report, no need to mask math and code
    plain = _masked(text)
    found = [(offset, f"{section!r} uses {variant!r} for {term.english!r}: write {term.chinese!r} "
                      f"(one term per concept, see cards/{GLOSSARY_FILE})")
             for offset, variant, term in find_variants(text, terms, plain)]
    found += [(offset, f"{section!r} has an ASCII double quote: Chinese text quotes with “…”")
              for offset in ascii_quotes(text, plain)]
    yield from sorted(found)
