"""Knowledge cards: load the Markdown files under ``cards/`` and validate them.

The format is documented in ``cards/README.md``. Every problem is reported as a
:class:`Problem` with the file and line; valid cards are loaded regardless, so one typo
never hides a deck. Headings inside fenced code are not mistaken for cards; a fence that is
never closed is reported where it opens and does not swallow the cards after it. Bytes that
are not UTF-8 are reported at their line and only the card holding them is skipped. Section
text then goes through :data:`SECTION_CHECKS` (math the terminal cannot show, ...), shared
with the quiz loader. The parsed deck is cached on disk keyed by the files' size and
modification time, and start-up reads only a small summary, which keeps the TUI's start-up
fast on any deck size.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

LANGS = ("en", "zh")
SECTIONS = tuple(f"{side}.{lang}" for lang in LANGS for side in ("front", "back"))
CARD_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
CACHE_VERSION = 5  # 3: problems from section checks, fences and undecodable lines; 4: glossary rule; 5: advanced ids


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


ADVANCED_TAG = "advanced"  # a card beyond its day's core: introduced after every core card, never required


@dataclass(frozen=True)
class Card:
    id: str
    module: str
    day: int
    tags: tuple[str, ...]
    front: dict[str, str]
    back: dict[str, str]
    path: str
    line: int

    def text(self, side: str, lang: str) -> str:
        texts = self.front if side == "front" else self.back
        return texts.get(lang) or texts["en"]


@dataclass
class Deck:
    cards: list[Card] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    titles: dict[str, dict[str, str]] = field(default_factory=dict)  # module -> {lang: title}

    @property
    def by_id(self) -> dict[str, Card]:
        return {card.id: card for card in self.cards}

    def for_module(self, module: str) -> list[Card]:
        return [card for card in self.cards if card.module == module]


def parse_front_matter(lines: list[str], path: str) -> tuple[dict[str, tuple[str, int]], int, list[Problem]]:
    """``key: value`` lines between two ``---`` lines at the top of a file.

    Returns the values with their line numbers, the index of the first body line, and problems.
    Shared by the card and quiz loaders.
    """
    if not lines or lines[0].strip() != "---":
        return {}, 0, [Problem(path, 1, "missing front matter: the file must start with a '---' line")]
    meta: dict[str, tuple[str, int]] = {}
    problems: list[Problem] = []
    for index in range(1, len(lines)):
        line = lines[index]
        if line.strip() == "---":
            return meta, index + 1, problems
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            problems.append(Problem(path, index + 1, f"front matter line is not 'key: value': {line.strip()!r}"))
            continue
        meta[key.strip()] = (value.strip(), index + 1)
    return meta, len(lines), problems + [Problem(path, 1, "front matter is not closed by a '---' line")]


_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass
class Outline:
    """The block structure of a file's body: headings outside code, and broken fences.

    ``headings`` holds (level, text, zero-based line); ``broken`` holds (zero-based line,
    message) for each fence that is never closed. A broken fence is read as plain text so
    that the headings after it still count, and the card or question holding it is skipped.
    """

    headings: list[tuple[int, str, int]]
    broken: list[tuple[int, str]]


def outline(lines: list[str], offset: int = 0) -> Outline:
    """Headings outside fenced code, CommonMark-style, and the fences that never close.

    A line scan for the only block structure the formats use (headings and fences). A full
    Markdown parse (markdown-it) measured ~3.5 ms a card on this machine: 3 minutes for a
    50,000-card deck; this scan takes milliseconds. ``offset`` is the file line of
    ``lines[0]`` minus one, for the line numbers in messages.
    """
    ignored: set[int] = set()
    broken: list[tuple[int, str]] = []
    while True:
        headings, fault = _scan(lines, ignored, offset)
        if fault is None:
            return Outline(headings, sorted(broken))
        ignored.add(fault[0])
        broken.append(fault)


def _scan(lines: list[str], ignored: set[int],
          offset: int) -> tuple[list[tuple[int, str, int]], tuple[int, str] | None]:
    headings: list[tuple[int, str, int]] = []
    fence, opened = "", -1
    for index, line in enumerate(lines):
        m = _FENCE.match(line)
        rest = line[m.end():].strip() if m else ""
        if m and index not in ignored and not (m[1][0] == "`" and "`" in rest):
            if not fence:
                fence, opened = m[1], index
                continue
            if m[1][0] == fence[0] and len(m[1]) >= len(fence):
                if not rest:
                    fence = ""
                    continue
                # an opening fence with an info string inside a block: the block above was never
                # closed, or this one's closing line would end the block above
                return headings, (opened, f"code fence {fence} opened here is still open at line "
                                          f"{offset + index + 1}, where {line.strip()!r} starts another: close it "
                                          f"with a {fence} line (or put code that holds fences in a longer fence)")
        if not fence and (h := _ATX.match(line)):
            headings.append((len(h[1]), (h[2] or "").strip(), index))
    if fence:
        return headings, (opened, f"code fence {fence} opened here is never closed: add a closing {fence} "
                                  "line (the card or question holding it is skipped until then)")
    return headings, None


def read_source(path: Path, shown: str) -> tuple[str, list[Problem], set[int]]:
    """A content file's text, its decoding problems, and the (1-based) lines that held them.

    Bytes that are not UTF-8 are replaced (U+FFFD) so the rest of the file still loads; each
    line holding some is reported at its real line and column.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8"), [], set()
    except UnicodeDecodeError:
        pass
    problems: list[Problem] = []
    bad_lines: set[int] = set()
    position = 0
    while position < len(data):
        try:
            data[position:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            start, position, reason = position + exc.start, position + exc.end, exc.reason
        before = data[:start].decode("utf-8", "replace")
        line = len((before + "x").splitlines())
        if line in bad_lines:
            continue
        bad_lines.add(line)
        column = len(before) - max(before.rfind("\n"), before.rfind("\r")) if before else 1
        problems.append(Problem(shown, line, f"not UTF-8 text: byte 0x{data[start]:02x} at column {column} "
                                             f"({reason}); save the file as UTF-8 (the card or question "
                                             "holding this line is skipped)"))
    return data.decode("utf-8", "replace"), problems, bad_lines


# -- checks on section text ---------------------------------------------------------------
#
# A check reads one section's text (``section`` is its name, e.g. ``back.zh``) and yields
# (character offset in the text, message). Problems it finds are reported at their line but
# do not drop the card or question: the text still shows, only less well. Append a function
# to SECTION_CHECKS to add a rule to both the card and the quiz loader.

SectionCheck = Callable[[str, str], Iterable[tuple[int, str]]]


def check_math(text: str, section: str) -> Iterator[tuple[int, str]]:
    """Math that the terminal renderer cannot show faithfully (unknown commands and the like)."""
    from llmcore_tui.core.mathtext import iter_math, math_problems

    for span in iter_math(text):
        for position, message in math_problems(span.latex):
            yield span.offset + position, f"math in {section!r}: {message}"


def check_terms(text: str, section: str) -> Iterator[tuple[int, str]]:
    """One Chinese term per concept (``cards/glossary.md``) and “…” quotes in ``*.zh`` sections."""
    from llmcore_tui.core.glossary import check_terms as rule

    yield from rule(text, section)


SECTION_CHECKS: list[SectionCheck] = [check_math, check_terms]


def check_section(path: str, first_line: int, text: str, section: str, label: str) -> list[Problem]:
    """Run every section check on ``text`` (whose first line is file line ``first_line``)."""
    problems = []
    for check in SECTION_CHECKS:
        for position, message in check(text, section):
            problems.append(Problem(path, first_line + text.count("\n", 0, position), f"{label}: {message}"))
    return problems


def parse_card_file(path: Path, root: Path | None = None, module_days: dict[str, int] | None = None) -> Deck:
    """Parse one card file. ``module_days`` maps known module ids to their roadmap day."""
    shown = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
    deck = Deck()
    text, deck.problems, bad_lines = read_source(path, shown)
    lines = text.splitlines()
    meta, body_start, problems = parse_front_matter(lines, shown)
    deck.problems += problems

    module, module_line = meta.get("module", ("", 1))
    if not module:
        deck.problems.append(Problem(shown, 1, "front matter has no 'module'"))
    elif module_days is not None and module not in module_days:
        deck.problems.append(Problem(shown, module_line, f"unknown module {module!r}; known: {', '.join(module_days)}"))
    day_text, day_line = meta.get("day", ("", 1))
    day = int(day_text) if day_text.isdigit() else 0
    if not 1 <= day <= 14:
        deck.problems.append(Problem(shown, day_line, f"'day' must be a number from 1 to 14, got {day_text!r}"))
    elif module_days is not None and module in module_days and module_days[module] != day:
        deck.problems.append(Problem(shown, day_line, f"module {module!r} belongs to day {module_days[module]}, not {day}"))
    if module:
        deck.titles[module] = {lang: meta[f"title.{lang}"][0] for lang in LANGS if f"title.{lang}" in meta}
        for lang in LANGS:
            if f"title.{lang}" not in meta:
                deck.problems.append(Problem(shown, 1, f"front matter has no 'title.{lang}'"))
    if deck.problems and (not module or not day):
        return deck  # without a module and day no card can be placed

    body_lines = lines[body_start:]
    shape = outline(body_lines, body_start)
    headings = shape.headings
    deck.problems += [Problem(shown, body_start + line0 + 1, message) for line0, message in shape.broken]
    skipped = {line0 for line0, _ in shape.broken} | {line - 1 - body_start for line in bad_lines}
    card_starts = [i for i, h in enumerate(headings) if h[0] <= 2]
    for position, index in enumerate(card_starts):
        level, title, line0 = headings[index]
        if level != 2:
            continue
        following = card_starts[position + 1] if position + 1 < len(card_starts) else len(headings)
        end = headings[following][2] if following < len(headings) else len(body_lines)
        if any(line0 <= k < end for k in skipped):
            continue  # broken fence or undecodable bytes inside: reported above
        sections = [h for h in headings[index + 1:following] if h[0] == 3]
        card = _parse_card(shown, body_start, body_lines, title, line0, end, sections, module, day, deck.problems)
        if card:
            deck.cards.append(card)
    first_card = next((h[2] for h in headings if h[0] == 2), len(body_lines))
    for level, title, line0 in headings:
        if line0 < first_card or level not in (2, 3):
            deck.problems.append(Problem(shown, body_start + line0 + 1, f"unexpected heading {title!r}: cards start with '## <id>'"))
    return deck


def _parse_card(path: str, offset: int, lines: list[str], card_id: str, start: int, end: int,
                sections: list[tuple[int, str, int]], module: str, day: int,
                problems: list[Problem]) -> Card | None:
    line_no = offset + start + 1
    ok = True
    if not CARD_ID.match(card_id):
        problems.append(Problem(path, line_no, f"card id {card_id!r} must be lowercase letters, digits and '-'"))
        ok = False
    tags: tuple[str, ...] = ()
    preamble_end = sections[0][2] if sections else end
    for j in range(start + 1, preamble_end):
        stripped = lines[j].strip()
        if stripped.startswith("tags:"):
            tags = tuple(t.strip() for t in stripped[5:].split(",") if t.strip())
        elif stripped:
            problems.append(Problem(path, offset + j + 1, f"card {card_id}: text before the first section; expected 'tags: ...' or '### front.en'"))
    texts: dict[str, str] = {}
    for k, (_, name, s_line) in enumerate(sections):
        s_end = sections[k + 1][2] if k + 1 < len(sections) else end
        if name not in SECTIONS:
            problems.append(Problem(path, offset + s_line + 1, f"card {card_id}: unknown section {name!r}; expected one of {', '.join(SECTIONS)}"))
            ok = False
            continue
        if name in texts:
            problems.append(Problem(path, offset + s_line + 1, f"card {card_id}: section {name!r} appears twice"))
            ok = False
            continue
        raw = "\n".join(lines[s_line + 1:s_end])
        body = raw.strip()
        if not body:
            problems.append(Problem(path, offset + s_line + 1, f"card {card_id}: section {name!r} is empty"))
            ok = False
        if body.count("$") % 2:
            problems.append(Problem(path, offset + s_line + 1, f"card {card_id}: unbalanced '$' in {name!r}"))
            ok = False
        else:
            problems += check_section(path, offset + s_line + 2, raw, name, f"card {card_id}")
        texts[name] = body
    missing = [s for s in SECTIONS if s not in texts]
    if missing:
        problems.append(Problem(path, line_no, f"card {card_id}: missing section(s) {', '.join(missing)}"))
        ok = False
    if not ok:
        return None
    return Card(
        id=card_id, module=module, day=day, tags=tags,
        front={lang: texts[f"front.{lang}"] for lang in LANGS},
        back={lang: texts[f"back.{lang}"] for lang in LANGS},
        path=path, line=line_no,
    )


@dataclass(frozen=True)
class DeckSummary:
    """What start-up needs without parsing or loading every card: counts and titles."""

    totals: dict[str, int]  # module -> number of valid cards
    titles: dict[str, dict[str, str]]
    problems: int
    advanced: dict[str, list[str]] = field(default_factory=dict)  # module -> ids of its advanced cards

    @classmethod
    def of(cls, deck: Deck) -> "DeckSummary":
        totals: dict[str, int] = {}
        advanced: dict[str, list[str]] = {}
        for card in deck.cards:
            totals[card.module] = totals.get(card.module, 0) + 1
            if ADVANCED_TAG in card.tags:
                advanced.setdefault(card.module, []).append(card.id)
        return cls(totals, deck.titles, len(deck.problems), advanced)

    def core_total(self, module: str) -> int:
        """Cards of ``module`` a learner must have met to finish its day (the advanced ones are extra)."""
        return self.totals.get(module, 0) - len(self.advanced.get(module, ()))


def load_summary(directory: Path, module_days: dict[str, int] | None = None, cache_dir: Path | None = None) -> DeckSummary:
    """The deck's summary from the cache when the files are unchanged; else parse (and cache) the deck."""
    if cache_dir is not None:
        files = card_files(directory) if directory.is_dir() else []
        try:
            data = json.loads((cache_dir / f"summary-{_cache_key(files, module_days)}.json").read_text(encoding="utf-8"))
            return DeckSummary(data["totals"], data["titles"], data["problems"], data["advanced"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return DeckSummary.of(load_deck(directory, module_days, cache_dir))


def card_files(directory: Path) -> list[Path]:
    """Card files by name stem: ``08-grpo.md`` before ``08-grpo-descendants.md`` (a module's own
    file first, then its topics), which is the order new cards are introduced in."""
    return sorted((p for p in directory.glob("*.md") if p.name.lower() not in ("readme.md", "glossary.md")),
                  key=lambda p: p.stem)


def load_deck(directory: Path, module_days: dict[str, int] | None = None, cache_dir: Path | None = None) -> Deck:
    """All cards under ``directory``; duplicate ids across files are problems (the first wins)."""
    files = card_files(directory) if directory.is_dir() else []
    root = directory.parent
    key = _cache_key(files, module_days)
    cached = _read_cache(cache_dir, key) if cache_dir else None
    if cached is not None:
        return cached
    deck = Deck()
    if not directory.is_dir():
        deck.problems.append(Problem(str(directory), 0, "card folder not found"))
    seen: dict[str, Card] = {}
    for path in files:
        part = parse_card_file(path, root, module_days)
        deck.problems += part.problems
        deck.titles.update(part.titles)
        for card in part.cards:
            if card.id in seen:
                first = seen[card.id]
                deck.problems.append(Problem(card.path, card.line, f"duplicate card id {card.id!r} (first at {first.path}:{first.line})"))
                continue
            seen[card.id] = card
            deck.cards.append(card)
    deck.problems.sort()
    if cache_dir:
        _write_cache(cache_dir, key, deck)
    return deck


# -- cache --------------------------------------------------------------------------------

def _cache_key(files: list[Path], module_days: dict[str, int] | None) -> str:
    parts = [str(CACHE_VERSION), json.dumps(module_days, sort_keys=True)]
    for path in files:
        stat = path.stat()
        parts.append(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
    import hashlib

    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _read_cache(cache_dir: Path, key: str) -> Deck | None:
    try:
        data = json.loads((cache_dir / f"cards-{key}.json").read_text(encoding="utf-8"))
        return Deck(
            cards=[Card(**{**c, "tags": tuple(c["tags"])}) for c in data["cards"]],
            problems=[Problem(**p) for p in data["problems"]],
            titles=data["titles"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(cache_dir: Path, key: str, deck: Deck) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for old in [*cache_dir.glob("cards-*.json"), *cache_dir.glob("summary-*.json")]:
            old.unlink(missing_ok=True)
        summary = DeckSummary.of(deck)
        payloads = {
            "cards": {"cards": [asdict(c) for c in deck.cards], "problems": [asdict(p) for p in deck.problems], "titles": deck.titles},
            "summary": asdict(summary),
        }
        for name, payload in payloads.items():
            tmp = cache_dir / f".{name}-{key}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
            tmp.replace(cache_dir / f"{name}-{key}.json")
    except OSError:
        pass  # a cache is an optimisation; a read-only home must not stop the app
