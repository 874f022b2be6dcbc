"""The personal technical brief: day 14's deliverable, built from what the learner did.

For each learning module (days 1-12 and the day-13 reference deck) the brief gives

- **key ideas**: every card's question and the first sentence of its answer (math as LaTeX);
- **measured mastery**: FSRS probability of recall today, reviews, lapses, quiz accuracy
  (:func:`llmcore_tui.core.stats.module_mastery`);
- **evidence from the labs**: the headline numbers of the latest successful run of each of the
  module's labs, and the charts that lab declared (``labs.protocol.Chart``: its axes, log
  scales, reference lines and what to look for); a run recorded without declared charts shows
  its most informative curves instead;

then the weakest cards, the topics to revisit and a 14-day timeline (reviews, new cards, quiz
answers and lab runs per study day). Whatever is missing is said, with the command that fixes
it ("no lab runs yet — run `llmcore-tui lab run mdp --toy`").

Two formats from one :class:`Brief`: Markdown (math kept as ``$LaTeX$``) and one self-contained
HTML file (inline CSS and SVG, MathML when ``latex2mathml`` is installed, no scripts, no external
resources, well-formed XML). Where each part lives:

- ``model``: the typed records; ``build``: reading them from the course; ``evidence``: a lab's
  runs as headline, declared figures or curves;
- ``tables``: every table described once (columns, a cell function per column), drawn by both
  renderers; ``formatting`` and ``words``: the sentences and their English and Chinese;
- ``markdown``, ``html`` (with ``svg`` and ``mathhtml``): the two renderers;
- ``output``: format, target checks, atomic write, the export setting.

Pure Python: no textual, no torch; the statistics and the deck load on first use.
"""

from llmcore_tui.core.brief.build import build_brief, days_done
from llmcore_tui.core.brief.evidence import pick_curves
from llmcore_tui.core.brief.html import render_html
from llmcore_tui.core.brief.markdown import render_markdown, sparkline
from llmcore_tui.core.brief.mathhtml import inline_html, math_html, safe_mathml
from llmcore_tui.core.brief.model import (SETTING, Brief, BriefError, Curve, Figure, Idea, LabEvidence, ModuleBrief,
                                          Revisit, TimelineDay, Totals, WeakItem)
from llmcore_tui.core.brief.output import atomic_write, check_target, default_output, normalize_format, render, write_brief
from llmcore_tui.core.brief.prose import short_text
from llmcore_tui.core.brief.svg import svg_curve, svg_figure, svg_mastery, svg_timeline

__all__ = [
    "Brief", "BriefError", "Curve", "Figure", "Idea", "LabEvidence", "ModuleBrief", "Revisit", "TimelineDay", "Totals",
    "WeakItem", "build_brief", "days_done", "render", "render_markdown", "render_html", "write_brief",
    "normalize_format", "default_output", "check_target", "atomic_write", "short_text", "sparkline", "pick_curves",
    "svg_curve", "svg_figure", "svg_mastery", "svg_timeline", "inline_html", "math_html", "safe_mathml", "SETTING",
]
