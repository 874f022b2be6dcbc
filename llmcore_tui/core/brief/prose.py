"""Card text as the brief quotes it: the short form of an answer, and the spans both renderers
must recognise (code spans, ``$math$``)."""

from __future__ import annotations

import re

from llmcore_tui.core.brief.model import MAX_BACK_CHARS, MIN_BACK_CHARS

_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|vs|cf|etc|approx|resp|Fig|Eq|Sec)|\b[A-Z])\.$")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|[。！？]")
MATH_SPAN = re.compile(r"(\$\$.+?\$\$|(?<![\\$])\$(?!\$).+?(?<![\\$])\$(?!\$))", re.S)
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")
CODE_SPAN = re.compile(r"(`[^`\n]+`)")


def join_lines(text: str) -> str:
    """One paragraph's lines as one line (no space between two CJK characters)."""
    out = ""
    for line in (ln.strip() for ln in text.splitlines()):
        if not line:
            continue
        if out and not (_CJK.match(out[-1]) and _CJK.match(line[0])):
            out += " "
        out += line
    return out


def short_text(text: str, limit: int = MAX_BACK_CHARS, least: int = MIN_BACK_CHARS) -> str:
    """The first sentence of the first paragraph (more sentences while it is shorter than
    ``least``), never cut inside ``$…$``; past ``limit`` it is cut at a space and ends with an
    ellipsis. Lengths are display widths: a CJK character counts two."""
    paragraph = join_lines(re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0])
    math_spans = [m.span() for m in MATH_SPAN.finditer(paragraph)]
    width = [0]  # width[i]: display width of paragraph[:i]
    for ch in paragraph:
        width.append(width[-1] + (2 if _CJK.match(ch) else 1))

    def in_math(i: int) -> bool:
        return any(a < i < b for a, b in math_spans)

    for m in _SENTENCE_END.finditer(paragraph):
        end = m.end()
        if in_math(m.start()) or (m.group() == "." and _ABBREV.search(paragraph[:end])):
            continue
        if width[end] >= least or width[end] > limit:
            if width[end] <= limit:
                return paragraph[:end].strip()
            break
    if width[-1] <= limit:
        return paragraph.strip()
    room = max(i for i, w in enumerate(width) if w <= limit)
    breaks = [i for i in range(1, room + 1) if (paragraph[i - 1] in " ，；、" or _CJK.match(paragraph[i - 1]))
              and not in_math(i - 1)]
    cut = breaks[-1] if breaks else next((b for a, b in math_spans if a < room < b), room)
    return paragraph[:cut].rstrip(" ,;:，；：、") + " …"

