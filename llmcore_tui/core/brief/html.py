"""The brief as one self-contained HTML page (also well-formed XML): inline CSS, figures as
inline SVG (:mod:`.svg`), math as MathML or Unicode (:mod:`.mathhtml`). No network, no
scripts, no external resources; every inserted text is escaped here or by :mod:`.mathhtml`.
"""

from __future__ import annotations

from typing import Any

from llmcore_tui.core.brief.formatting import curve_line, figure_head, glance_lines, mastery_text, run_line
from llmcore_tui.core.brief.mathhtml import inline_html, mathml_converter
from llmcore_tui.core.brief.model import Brief, Figure, LabEvidence
from llmcore_tui.core.brief.svg import esc, svg_curve, svg_figure, svg_mastery, svg_timeline
from llmcore_tui.core.brief.tables import (BREAK, CODE, HEADLINE, MASTERY, PLAIN, RICH, STRONG, TIMELINE, WEAKEST,
                                           Span, Table, revisit_item, spans_text)
from llmcore_tui.core.brief.words import phrase

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC",sans-serif;margin:0;
 background:#f6f7f9;color:#1d232b;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{border-bottom:2px solid #e3e7ec;padding-bottom:4px;margin-top:32px}
h3{margin:26px 0 6px}.meta{color:#5b6673}.note{background:#fff6e0;border-left:4px solid #e0a100;padding:6px 10px;
 margin:6px 0}.missing{color:#8a5a00}.missing::before{content:"⚠ "}
table{border-collapse:collapse;margin:8px 0;font-size:.92em}th,td{border:1px solid #dde2e8;padding:2px 8px;
 text-align:left;vertical-align:top}th{background:#f0f3f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.future td{color:#9aa4af}tr.today td{background:#eef5ff}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.9em;background:#f0f3f6;padding:0 3px;
 border-radius:3px}.math{font-family:"DejaVu Serif","Cambria Math",serif}div.math{margin:4px 0}
ul.ideas li{margin:3px 0}.runs{display:flex;flex-wrap:wrap;gap:8px}
.status-done{color:#1a7f37;font-weight:600}.status-open{color:#0b5cad}.status-locked{color:#9aa4af}
svg.chart{display:block;margin:8px 0;max-width:100%;height:auto;font-family:system-ui,"Noto Sans CJK SC",sans-serif}
svg.wide{width:100%}
svg .axis{stroke:#7a8590;stroke-width:1}svg .grid{stroke:#e3e7ec;stroke-width:1}
svg .lbl{font-size:12px;fill:#1d232b}svg .tick{font-size:10px;fill:#5b6673}svg .dim{fill:#a7b0ba}
svg .val{font-size:10px;fill:#1d232b}svg .b-reviews{fill:#3b7dd8}svg .b-quiz{fill:#f0962f}
svg .b-intro{fill:#b8c2cc}svg .today{fill:#eef5ff;stroke:#9cc1f0;stroke-dasharray:3 2}
svg .m-lab{fill:#2e9d58}svg .m-labfail{fill:#d1453b}svg .curve{fill:none;stroke:#3b7dd8;stroke-width:1.8}
svg .dot{fill:#3b7dd8}
.ev{border:1px solid #e3e7ec;border-radius:6px;padding:8px 12px;margin:8px 0}
figure.fig{margin:0}figure.fig figcaption{font-size:.88em;color:#5b6673;max-width:460px}
svg .s0{stroke:#3b7dd8;fill:#3b7dd8}svg .s1{stroke:#f0962f;fill:#f0962f}svg .s2{stroke:#2e9d58;fill:#2e9d58}
svg .s3{stroke:#8b5cc7;fill:#8b5cc7}svg .s4{stroke:#d1453b;fill:#d1453b}svg .s5{stroke:#8a6d3b;fill:#8a6d3b}
svg .ref{stroke:#5b6673;fill:#5b6673;stroke-dasharray:5 3}svg path.line{fill:none;stroke-width:1.8}
svg line.line{stroke-width:1.8}svg circle.pt{stroke:none}
"""


def html_spans(spans: tuple[Span, ...], mathml: bool) -> str:
    return spans_text(spans, {
        PLAIN: esc, RICH: lambda text: inline_html(text, mathml), CODE: lambda text: f"<code>{esc(text)}</code>",
        STRONG: lambda text: f"<strong>{esc(text)}</strong>", BREAK: lambda _: "<br/>"})


def html_table(brief: Brief, table: Table, source: Any, mathml: bool) -> list[str]:
    """``table`` over the rows it takes from ``source``: a header line, a line per row, the end."""
    out = ["<table><thead><tr>" + "".join(f"<th>{esc(phrase(brief.lang, c.header))}</th>" for c in table.columns)
           + "</tr></thead><tbody>"]
    for row in table.rows(source):
        cells = []
        for column in table.columns:
            cell = column.cell(brief, row)
            body = html_spans(cell.spans, mathml)
            if cell.link:
                body = f'<a href="#{esc(cell.link)}">{body}</a>'
            cells.append((f'<td class="{esc(cell.css)}">' if cell.css else "<td>") + body + "</td>")
        tr = f'<tr class="{esc(table.mark(row))}">' if table.mark else "<tr>"
        out.append(tr + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return out


def _figure(brief: Brief, fig: Figure) -> str:
    caption = esc(phrase(brief.lang, "look_for", text=fig.look_for)) if fig.look_for else esc(figure_head(brief, fig))
    return f'<figure class="fig">{svg_figure(fig, brief.lang)}<figcaption>{caption}</figcaption></figure>'


def _evidence(brief: Brief, ev: LabEvidence, mathml: bool) -> list[str]:
    t = lambda name: phrase(brief.lang, name)  # noqa: E731
    out = [f'<div class="ev"><p><code>{esc(ev.lab)}</code> — {esc(ev.title)}<br/>'
           f"{inline_html(run_line(brief, ev), mathml)}</p>"]
    out += html_table(brief, HEADLINE, ev, mathml) if ev.headline else [f"<p>{esc(t('no_headline'))}</p>"]
    if ev.figures:
        out.append('<div class="runs">' + "".join(_figure(brief, fig) for fig in ev.figures) + "</div>")
    if ev.curves:
        out.append('<div class="runs">' + "".join(svg_curve(c) for c in ev.curves) + "</div>")
        out.append("<ul>" + "".join(f"<li>{esc(curve_line(brief, c))}</li>" for c in ev.curves) + "</ul>")
    elif not ev.figures:
        out.append(f"<p>{esc(t('no_curves'))}</p>")
    out.append("</div>")
    return out


def render_html(brief: Brief, mathml: bool | None = None) -> str:
    """One self-contained HTML page (also well-formed XML). ``mathml``: None uses MathML when
    latex2mathml is installed; False forces Unicode math."""
    lang = brief.lang
    t = lambda name, **kw: phrase(lang, name, **kw)  # noqa: E731
    use_mathml = mathml is not False and mathml_converter() is not None
    ih = lambda text: inline_html(text, use_mathml)  # noqa: E731
    out: list[str] = [
        "<!DOCTYPE html>",
        f'<html xmlns="http://www.w3.org/1999/xhtml" lang="{"zh-CN" if lang == "zh" else "en"}">',
        '<head><meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/>',
        f"<title>{esc(t('title'))}</title><style>{_CSS}</style></head>",
        "<body><main>",
        f"<h1>{esc(t('title'))}</h1>",
        f'<p class="meta">{esc(t("generated", when=brief.generated, zone=brief.zone, day=brief.calendar_day, start=brief.start.isoformat()))}</p>',
        f"<h2>{esc(t('glance'))}</h2><ul>",
    ]
    lines = glance_lines(brief)
    out += [f"<li>{esc(line)}</li>" for line in lines[:-1]] + [f"<li>{esc(lines[-1])}</li></ul>"]
    out += [f'<p class="note">{ih(note)}</p>' for note in brief.notes]

    out.append(f"<h2>{esc(t('timeline'))}</h2><p>{esc(t('timeline_note'))}</p>")
    out.append(svg_timeline(brief))
    out += html_table(brief, TIMELINE, brief, use_mathml)
    out.append(f"<h2>{esc(t('mastery'))}</h2>")
    out.append(svg_mastery(brief))
    out += html_table(brief, MASTERY, brief, use_mathml)

    out.append(f"<h2>{esc(t('weakest'))}</h2>")
    out += html_table(brief, WEAKEST, brief, use_mathml) if brief.weakest else [f"<p>{esc(t('weakest_none'))}</p>"]

    out.append(f"<h2>{esc(t('revisit'))}</h2>")
    if not brief.revisit:
        out.append(f"<p>{esc(t('revisit_none'))}</p>")
    else:
        out.append("<ul>" + "".join(f"<li>{html_spans(revisit_item(brief, r), use_mathml)}</li>"
                                    for r in brief.revisit) + "</ul>")
    if brief.weak_tags:
        out.append("<p>" + ih(t("revisit_tags", tags=", ".join(f"`{tag}` ×{n}" for tag, n in brief.weak_tags))) + "</p>")

    out.append(f"<h2>{esc(t('modules'))}</h2>")
    for mb in brief.modules:
        out.append(f'<section id="m-{esc(mb.module)}"><h3>{esc(t("col_day"))} {mb.day.number} · {esc(mb.name)} — '
                   f'{esc(mb.title)}</h3>')
        out.append(f"<p><em>{esc(t('goal'))}:</em> {ih(mb.goal)}</p>")
        out.append(f"<p><strong>{esc(t('mastery_head'))}:</strong> {esc(mastery_text(brief, mb))}</p>")
        if mb.missing:
            out.append("<ul>" + "".join(f'<li class="missing">{ih(line)}</li>' for line in mb.missing) + "</ul>")
        shown = [ev for ev in mb.labs if ev.run is not None]
        if shown:
            out.append(f"<p><strong>{esc(t('evidence'))}</strong></p>")
        for ev in shown:
            out += _evidence(brief, ev, use_mathml)
        out.append(f"<p><strong>{esc(t('ideas'))}</strong></p><ul class=\"ideas\">")
        out += [f"<li><strong>{ih(idea.front)}</strong> — {ih(idea.back)}</li>" for idea in mb.ideas]
        out.append("</ul></section>")
    out.append(f'<p class="meta">{esc(t("math_note", how=t("math_mathml") if use_mathml else t("math_unicode")))}</p>')
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"
