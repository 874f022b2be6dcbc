"""The brief as Markdown: math kept as ``$LaTeX$``, tables as pipe tables, curves as sparklines.

Everything inserted from cards, quizzes, labs or the database goes through :func:`md_plain`,
:func:`md_code` or :func:`md_text`, so that no raw HTML, link or code span of theirs reaches the
page.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from llmcore_tui.core.brief.formatting import curve_line, figure_head, glance_lines, mastery_text, run_line
from llmcore_tui.core.brief.model import Brief, Figure
from llmcore_tui.core.brief.prose import CODE_SPAN, MATH_SPAN
from llmcore_tui.core.brief.tables import (BREAK, CODE, HEADLINE, MASTERY, PLAIN, RICH, STRONG, TIMELINE, WEAKEST,
                                           Span, Table, revisit_item, spans_text)
from llmcore_tui.core.brief.words import phrase

_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 40, log: bool = False) -> str:
    if not values:
        return ""
    if log:
        values = [math.log10(v) for v in values]
    if len(values) > width:
        step = len(values) / width
        values = [values[min(len(values) - 1, int(i * step))] for i in range(width - 1)] + [values[-1]]
    lo, hi = min(values), max(values)
    if hi == lo:
        return _SPARK[3] * len(values)
    return "".join(_SPARK[min(7, int((v - lo) / (hi - lo) * 7.999))] for v in values)


_MD_ESCAPE = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]", "`": "\\`", "\\": "\\\\"}
_MD_UNSAFE_CODE = frozenset("<>&`\n")


def md_plain(text: Any) -> str:
    """Data as literal text on one line: HTML-significant characters as entities; brackets,
    backticks and backslashes escaped, so no link, code span or escape of ours is started."""
    return "".join(_MD_ESCAPE.get(c, c) for c in " ".join(str(text).splitlines()))


def md_code(text: Any) -> str:
    """Data as a code span when that is safe to show verbatim, else as escaped plain text."""
    text = str(text)
    return f"`{text}`" if text and not _MD_UNSAFE_CODE & set(text) else md_plain(text)


def md_text(text: Any) -> str:
    """Card Markdown (or one of our lines with data in it) on one line: code spans and $math$
    kept; outside them ``& < >`` become entities and brackets are escaped; inside math ``<``
    and ``>`` become ``\\lt`` and ``\\gt``; a code span holding ``< > &`` becomes plain text."""
    out: list[str] = []
    for chunk in CODE_SPAN.split(" ".join(str(text).splitlines())):
        if chunk.startswith("`") and chunk.endswith("`") and len(chunk) > 1:
            out.append(md_code(chunk[1:-1]))
            continue
        for part in MATH_SPAN.split(chunk):
            if MATH_SPAN.fullmatch(part):
                out.append(part.replace("<", "\\lt ").replace(">", "\\gt "))
            else:
                out.append("".join(_MD_ESCAPE.get(c, c) if c in "&<>[]" else c for c in part))
    return "".join(out)



_MD_SPANS: dict[str, Callable[[str], str]] = {
    PLAIN: md_plain, RICH: md_text, CODE: md_code, STRONG: lambda text: f"**{md_plain(text)}**", BREAK: lambda _: " "}


def md_spans(spans: tuple[Span, ...]) -> str:
    return spans_text(spans, _MD_SPANS)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(brief: Brief, table: Table, source: Any, indent: str = "") -> list[str]:
    """``table`` over the rows it takes from ``source``, as a pipe table."""
    columns = table.columns
    lines = ["| " + " | ".join(_md_cell(phrase(brief.lang, c.header)) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in table.rows(source):
        cells = []
        for column in columns:
            cell = column.cell(brief, row)
            text = md_spans(cell.spans)
            if cell.bar:
                text = f"{text} {'█' * round(12 * cell.bar)}".rstrip()
            cells.append(text)
        mark = table.mark(row) if table.mark else ""
        if mark:
            cells[0] += " " + phrase(brief.lang, mark)
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return [indent + line for line in lines]


def _figure(brief: Brief, fig: Figure) -> list[str]:
    """A declared chart as text: its title and axes, what to look for, and one sparkline per line."""
    head = f"  - **{md_plain(figure_head(brief, fig))}**"
    if fig.look_for:
        head += " — " + md_text(phrase(brief.lang, "look_for", text=fig.look_for))
    out = [head]
    for line in fig.lines:
        if line.points:
            spark = sparkline([v for _, v in line.points], log=fig.log_y)
            out.append(f"    - `{spark}` " + md_text(curve_line(brief, line, fig.log_y)))
    if not fig.drawn:
        out.append(f"    - {phrase(brief.lang, 'no_points')}")
    return out


def _evidence(brief: Brief, mb: Any) -> list[str]:
    t = lambda name, **kw: phrase(brief.lang, name, **kw)  # noqa: E731
    out = [f"**{t('evidence')}**", ""]
    for ev in mb.labs:
        if ev.run is None:
            continue
        out.append(f"- {md_code(ev.lab)} — {md_plain(ev.title)}: " + md_text(run_line(brief, ev)))
        if ev.headline:
            out += ["", *md_table(brief, HEADLINE, ev, indent="  "), ""]
        else:
            out.append(f"  - {t('no_headline')}")
        for fig in ev.figures:
            out += _figure(brief, fig)
        for c in ev.curves:
            spark = sparkline([v for _, v in c.points], log=c.log_scale)
            out.append(f"  - `{spark}` " + md_text(curve_line(brief, c)))
        if not ev.curves and not ev.figures:
            out.append(f"  - {t('no_curves')}")
    out.append("")
    return out


def render_markdown(brief: Brief) -> str:
    lang = brief.lang
    t = lambda name, **kw: phrase(lang, name, **kw)  # noqa: E731
    out: list[str] = [f"# {t('title')}", "",
                      t("generated", when=brief.generated, zone=md_plain(brief.zone), day=brief.calendar_day,
                        start=brief.start.isoformat()), ""]
    out += [f"## {t('glance')}", ""]
    out += ["- " + md_plain(line) for line in glance_lines(brief)]
    out += [f"- **{md_text(note)}**" for note in brief.notes]
    out.append("")

    out += [f"## {t('timeline')}", "", t("timeline_note"), "", *md_table(brief, TIMELINE, brief), ""]
    out += [f"## {t('mastery')}", "", *md_table(brief, MASTERY, brief), ""]
    out += [f"## {t('weakest')}", ""]
    out += md_table(brief, WEAKEST, brief) if brief.weakest else [t("weakest_none")]
    out.append("")

    out += [f"## {t('revisit')}", ""]
    if not brief.revisit:
        out.append(t("revisit_none"))
    out += ["- " + md_spans(revisit_item(brief, r)) for r in brief.revisit]
    if brief.weak_tags:
        out += ["", t("revisit_tags", tags=", ".join(f"{md_code(tag)} ×{n}" for tag, n in brief.weak_tags))]
    out.append("")

    out += [f"## {t('modules')}", ""]
    for mb in brief.modules:
        out += [f"### {t('col_day')} {mb.day.number} · {md_plain(mb.name)} — {md_plain(mb.title)}", "",
                f"*{t('goal')}:* {md_text(mb.goal)}", ""]
        out += [f"**{t('mastery_head')}:** " + md_plain(mastery_text(brief, mb)), ""]
        out += [f"- ⚠ {md_text(line)}" for line in mb.missing]
        if mb.missing:
            out.append("")
        if any(ev.run for ev in mb.labs):
            out += _evidence(brief, mb)
        out += [f"**{t('ideas')}**", ""]
        out += [f"- **{md_text(idea.front)}** — {md_text(idea.back)}" for idea in mb.ideas]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
