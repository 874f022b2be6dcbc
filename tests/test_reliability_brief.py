"""Issue 11, item 1: nothing from cards, quizzes, labs or the database becomes live HTML in the brief.

Hostile strings go into every field that reaches the brief: card text and math (front and back),
the deck's title, tags, card ids, lab headline keys and values, metric keys, run ids, presets,
statuses, lab names, error messages and logs. Both formats are rendered (HTML with MathML and
with Unicode math, and Markdown), then parsed: only the brief's own elements may appear, no
attribute may be an event handler, and no link may lead anywhere.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from llmcore_tui.core import brief as B
from llmcore_tui.core.brief import markdown, mathhtml, prose
from llmcore_tui.core.course import Course
from llmcore_tui.core.srs import AGAIN, GOOD, NewItem
from tests.conftest import FIXED_NOW, card_block, write_card_file

IMG = "<img src=x onerror=alert(1)>"
MATH = r"$\text{<img/src/onerror=alert(2)>}$"
MATH_KIN = r"$\mbox{<b onclick=alert(3)>x</b>} + \textbf{</mtext></math><script>alert(4)</script>} + \hbox{<svg/onload=alert(5)>}$"
LINK = "[click](javascript:alert(6))"
CODE = "`</code><script>alert(7)</script>`"
HOSTILE = f"{IMG} {MATH} {MATH_KIN} {LINK} {CODE} <script>alert(8)</script> & <!-- x -->"
SHORT = "<img src=x onerror=alert(9)>`]["  # for one-word fields (ids, keys, names)

# the elements the brief itself writes (page, tables, SVG charts, MathML)
OURS = {
    "html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "h3", "p", "ul", "li", "table", "thead",
    "tbody", "tr", "th", "td", "a", "section", "div", "span", "strong", "em", "code", "br", "figure", "figcaption",
    "svg", "rect", "line", "text", "path", "circle", "polygon", "g",
} | mathhtml._MATHML_TAGS


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs += [(k, v or "") for k, v in attrs]

    handle_startendtag = handle_starttag


def _check_html(page: str) -> None:
    parser = _Tags()
    parser.feed(page)
    assert parser.tags <= OURS, parser.tags - OURS
    assert not [k for k, _ in parser.attrs if k.startswith("on")]
    assert not [v for k, v in parser.attrs if k in ("href", "src") and not v.startswith("#")]
    assert "javascript:" not in " ".join(v for _, v in parser.attrs)
    ET.fromstring(page.split("\n", 1)[1])  # still well-formed XML: nothing broke out of its element
    for live in ("<img", "<script", "<svg/onload", "<b onclick", "<!-- x"):
        assert live not in page
    assert "&lt;img" in page  # the text is there, shown, not run


def _check_markdown(text: str) -> None:
    for live in ("<img", "<script", "<svg", "<b ", "<!--", "</code>"):
        assert live not in text, live
    assert not re.search(r"(?<!\\)\]\(javascript:", text)  # an escaped bracket starts no link
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark", {"html": True}).render(text)  # raw HTML on: the strictest reading
    parser = _Tags()
    parser.feed(rendered)
    assert not {"img", "script", "svg", "b", "iframe"} & parser.tags, parser.tags
    assert not [k for k, _ in parser.attrs if k.startswith("on")]
    assert not [v for k, v in parser.attrs if k == "href"]  # no link at all
    assert "&lt;img" in text


@pytest.fixture
def hostile(tmp_path, clock, monkeypatch):
    root = tmp_path / "content"
    cards = [card_block("mdp-one", front=f"What is {HOSTILE}?", back=f"Because {HOSTILE}.", tags=f"mdp, {SHORT}"),
             card_block("mdp-two", front=HOSTILE, back=HOSTILE, tags=f"mdp, {SHORT}")]
    path = write_card_file(root / "cards", "01-mdp.md", "mdp", 1, cards)
    path.write_text(path.read_text().replace("title.en: mdp", f"title.en: MDP {IMG}"))
    write_card_file(root / "cards", "02-td.md", "td_learning", 2, [card_block("td-one")])
    (root / "quizzes").mkdir()
    monkeypatch.setenv("LLMCORE_CONTENT", str(root))
    course = Course.open(tmp_path / "p.db", root, clock=clock, fuzz=False)
    course.settings.set("timezone", "UTC")
    course.store.set_setting("start_date", "2026-02-27")
    day1 = FIXED_NOW - 3 * 86400
    srs = course.srs
    for item in ("mdp-one", "mdp-two"):
        srs.rate(NewItem(item, "card", "mdp", 1), GOOD, day1)
        srs.rate(item, AGAIN, day1 + 86400)  # weak: in the weakest list and the revisit tags
    run_id = f"mdp-{SHORT}"
    with course.store.transaction() as conn:
        conn.execute(
            "INSERT INTO lab_runs(id, lab, day, preset, config_json, status, started_ts, ended_ts, exit_code,"
            " headline_json, log_tail, error) VALUES (?, 'mdp', 1, ?, '{}', 'succeeded', ?, ?, 0, ?, ?, ?)",
            (run_id, SHORT, day1 + 100, day1 + 103, json.dumps({SHORT: HOSTILE, "ok": 1.5, MATH: IMG}), HOSTILE, HOSTILE))
        conn.executemany("INSERT INTO lab_metrics(run_id, step, key, value) VALUES (?, ?, ?, ?)",
                         [(run_id, k, f"eval/{SHORT}", float(k)) for k in range(1, 6)])
        conn.execute(
            "INSERT INTO lab_runs(id, lab, day, preset, config_json, status, started_ts, ended_ts, exit_code,"
            " error, log_tail) VALUES (?, 'td_learning', 2, 'toy', '{}', ?, ?, ?, 1, ?, ?)",
            (f"td-{SHORT}", SHORT, day1 + 86400, day1 + 86401, HOSTILE, HOSTILE))
        conn.execute(
            "INSERT INTO lab_runs(id, lab, day, preset, config_json, status, started_ts, ended_ts, exit_code,"
            " error, log_tail) VALUES (?, ?, 2, 'toy', '{}', 'failed', ?, ?, 1, ?, ?)",
            (f"x-{SHORT}", SHORT, day1 + 86500, day1 + 86501, HOSTILE, HOSTILE))
    yield course
    course.close()


@pytest.mark.parametrize("mathml", [True, False])
def test_hostile_fields_never_become_html_in_the_html_brief(hostile, mathml):
    brief = B.build_brief(hostile, "en")
    assert brief.weakest and brief.weak_tags  # the card and tag fields are really on the page
    page = B.render_html(brief, mathml=mathml)
    _check_html(page)
    if mathml and mathhtml.mathml_converter() is not None:
        assert "<mtext>&lt;img/src/onerror=alert(2)&gt;</mtext>" in page  # the \text argument, as text


def test_hostile_fields_never_become_html_in_the_markdown_brief(hostile):
    for lang in ("en", "zh"):
        _check_markdown(B.render_markdown(B.build_brief(hostile, lang)))


def test_hostile_declared_charts_never_become_html(hostile):
    """The mdp run declares charts whose title, look-for line, axis names and series are hostile."""
    from labs.protocol import Chart, Charts, Metric, Start, Summary, Table
    from tests.test_brief_figures import record_run

    charts = (Chart(f"T {HOSTILE}", y=(f"eval/{SHORT}",), log_y=True, x_label=IMG, y_label=MATH, look_for=HOSTILE),
              Chart(SHORT, y=("y",), x=SHORT, table=SHORT, reference=(IMG,), look_for=LINK))
    events = [Start("mdp", {}, 5), Charts(charts), *(Metric(k, {f"eval/{SHORT}": 10.0 ** k}) for k in range(1, 6)),
              Table(SHORT, [SHORT, "y", IMG], [[1, 2, 3], [2, 3, 4]]), Summary({SHORT: HOSTILE}, [])]
    record_run(hostile, f"mdp-{SHORT}-charts", events)
    brief = B.build_brief(hostile, "en")
    assert [len(ev.figures) for mb in brief.modules for ev in mb.labs if ev.lab == "mdp"] == [2]
    _check_html(B.render_html(brief, mathml=True))
    _check_markdown(B.render_markdown(brief))


def test_a_new_column_is_one_line_and_is_escaped_in_both_formats(hostile, monkeypatch):
    """Adding a column is one Column in tables.py; whatever its cells hold, both renderers escape it."""
    from dataclasses import replace

    from llmcore_tui.core.brief import tables

    extra = tables.Column("col_card", lambda b, mb: tables.Cell((tables.Span(f"{mb.title} {HOSTILE}", tables.RICH),
                                                                  tables.Span(SHORT, tables.CODE))))
    monkeypatch.setattr(tables, "MASTERY", replace(tables.MASTERY, columns=tables.MASTERY.columns + (extra,)))
    monkeypatch.setattr(B.markdown, "MASTERY", tables.MASTERY)
    monkeypatch.setattr(B.html, "MASTERY", tables.MASTERY)
    brief = B.build_brief(hostile, "en")
    page, md = B.render_html(brief, mathml=False), B.render_markdown(brief)
    _check_html(page)
    _check_markdown(md)
    assert "<th>Labs</th><th>Card</th></tr>" in page and "| Quiz | Labs | Card |" in md


def test_hostile_math_on_an_empty_database(course):
    """The issue's case: ``$\\text{<img/src/onerror=alert(1)>}$`` in any card text, no progress at all."""
    for latex in (r"\text{<img/src/onerror=alert(1)>}", r"\mbox{<img src=x onerror=alert(1)>}",
                  r"\textrm{<img src=x onerror=alert(1)>}", r"\textit{</math><img src=x onerror=alert(1)>}",
                  r"\hbox{<img src=x onerror=alert(1)>}", r"\textbf{<img src=x onerror=alert(1)>}"):
        for display in (False, True):
            out = B.math_html(latex, display=display)
            assert "<img" not in out and "&lt;img" in out
            assert out.startswith(("<math", "<span", "<div"))


def test_the_mathml_filter_refuses_anything_outside_its_allow_list():
    assert B.safe_mathml('<math xmlns="http://www.w3.org/1998/Math/MathML"><mi>x</mi></math>') is not None
    for bad in ('<math><mtext><img src=x onerror=alert(1)></mtext></math>',
                '<math><mi onclick="alert(1)">x</mi></math>',
                '<math xmlns="http://www.w3.org/1999/xhtml"><mi>x</mi></math>',
                '<math><mi>x</mi></math><script>alert(1)</script>',
                '<math><mi>x</mi></math><math><mi>y</mi></math>',
                '<math><mi>x</math></mi>',
                '<math><!-- --><mi>x</mi></math>',
                'text<math><mi>x</mi></math>'):
        assert B.safe_mathml(bad) is None, bad


def test_every_formula_of_the_course_still_renders_as_mathml():
    """The filter and the stand-ins change nothing for the real cards: no formula falls back."""
    if mathhtml.mathml_converter() is None:
        pytest.skip("latex2mathml is not installed")
    from llmcore_tui.core.paths import content_root

    root = content_root()
    seen = fallbacks = 0
    for path in sorted((root / "cards").rglob("*.md")):
        for match in prose.MATH_SPAN.finditer(path.read_text(encoding="utf-8")):
            latex = match.group(0).strip("$").strip()
            before = mathhtml.mathml_converter()(latex)
            out = B.math_html(latex)
            seen += 1
            if before.startswith("<math") and "<mi>\\</mi>" not in before:
                fallbacks += not out.startswith("<math")
    assert seen > 100 and fallbacks == 0


def test_markdown_helpers_keep_ordinary_text_readable():
    assert markdown.md_text("**bold** and `code` with $a < b$ & c") == "**bold** and `code` with $a \\lt  b$ &amp; c"
    assert markdown.md_code("losses/value") == "`losses/value`"
    assert markdown.md_code("a<b") == "a&lt;b"
    assert markdown.md_plain("[x](javascript:y)\n<b>") == "\\[x\\](javascript:y) &lt;b&gt;"
