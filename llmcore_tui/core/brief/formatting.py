"""The brief's sentences and cell texts, shared by the Markdown and HTML renderers.

Each returns plain text (or card Markdown where it says so); escaping is the renderer's job.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

from labs.protocol import fmt_duration, fmt_value
from llmcore_tui.core import roadmap
from llmcore_tui.core.brief.model import Brief, Curve, Figure, LabEvidence, ModuleBrief, TimelineDay
from llmcore_tui.core.brief.words import pct, phrase


def num(value: Any) -> str:
    return fmt_value(value)


def when(ts: float | None, tz: Any) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M")


def tz_of(brief: Brief) -> Any:
    return brief.tz or timezone.utc


def status_word(brief: Brief, status: str) -> str:
    return phrase(brief.lang, f"status_{status}") if status in ("done", "open", "locked") else status


def run_line(brief: Brief, ev: LabEvidence) -> str:
    run = ev.run
    assert run is not None
    return phrase(brief.lang, "run_line", id=run.id, status=run.status, when=when(run.started_ts, tz_of(brief)),
                  took=fmt_duration(run.duration_s), preset=run.preset or "—", n=ev.succeeded, runs=ev.runs)


def curve_line(brief: Brief, c: Curve, log: bool | None = None) -> str:
    """One line's numbers: first → last (min, max; points). ``log``: drawn on a log scale (None:
    the curve's own choice, for curves no chart declared)."""
    log = c.log_scale if log is None else log
    text = phrase(brief.lang, "curve_line", key=c.key, first=num(c.first), last=num(c.last), low=num(c.low),
                  high=num(c.high), points=c.count, log=phrase(brief.lang, "log_scale") if log else "")
    return text + (" · " + phrase(brief.lang, "reference") if c.reference else "")


def figure_head(brief: Brief, fig: Figure) -> str:
    """A declared chart's title and axes: "Residual per sweep (residual against sweep, log y)"."""
    axes = "log_xy" if fig.log_x and fig.log_y else "log_x" if fig.log_x else "log_y" if fig.log_y else ""
    return phrase(brief.lang, "figure_head", title=fig.title, y=fig.y_label, x=fig.x_label,
                  axes=phrase(brief.lang, f"axes_{axes}") if axes else "")


def module_name(brief: Brief, module: str) -> str:
    day = roadmap.BY_NUMBER.get(roadmap.MODULE_DAYS.get(module, 0))
    return day.title[brief.lang] if day else module


def day_label(brief: Brief, d: TimelineDay) -> str:
    if d.number is None:
        return phrase(brief.lang, "later")
    if d.number == 0:
        return phrase(brief.lang, "earlier")
    return f"D{d.number}"


def lab_cell(mb: ModuleBrief) -> str:
    if not mb.labs:
        return "—"
    return ", ".join(f"{ev.lab} {'✓' if ev.run else ('✗' if ev.runs else '–')}" for ev in mb.labs)


def quiz_cell(mb: ModuleBrief) -> str:
    m = mb.mastery
    if m and m.quiz_attempts:
        return f"{pct(m.quiz_accuracy)} ({m.quiz_attempts})"
    return "—" if mb.has_quiz else ""


def timeline_quiz(d: TimelineDay) -> str:
    return f"{num(round(d.quiz_score, 2))}/{d.quiz_answers}" if d.quiz_answers else "—"


def timeline_labs(d: TimelineDay) -> str:
    if not d.lab_runs:
        return "—"
    counts = Counter(d.lab_runs)
    return ", ".join(f"{lab} {status}" + (f" ×{n}" if n > 1 else "") for (lab, status), n in counts.items())


def cards_line(brief: Brief) -> str:
    tot = brief.totals
    split = phrase(brief.lang, "reviews_split", cards=tot.card_reviews, quiz=tot.quiz_reviews) if tot.quiz_reviews else ""
    return phrase(brief.lang, "cards_line", introduced=tot.introduced, total=tot.cards, reviews=tot.reviews,
                  split=split, recall=pct(tot.recall))


def glance_lines(brief: Brief) -> list[str]:
    """The "at a glance" list: cards, quizzes, labs, roadmap."""
    tot, lang = brief.totals, brief.lang
    return [cards_line(brief),
            phrase(lang, "quiz_line", answers=tot.quiz_answers, accuracy=pct(tot.quiz_score),
                   passed=tot.quizzes_passed, quizzes=tot.quizzes),
            phrase(lang, "lab_line", ok=tot.lab_succeeded, labs_ok=tot.labs_ok, labs=tot.labs, runs=tot.lab_runs),
            phrase(lang, "days_line", done=tot.days_done)]


def mastery_text(brief: Brief, mb: ModuleBrief) -> str:
    lang = brief.lang
    m = mb.mastery
    text = phrase(lang, "mastery_line", introduced=mb.introduced, total=m.cards_total if m else 0,
                  recall=pct(mb.recall), reviews=m.reviews if m else 0, lapses=m.lapses if m else 0)
    if m and m.quiz_attempts:
        text += " · " + phrase(lang, "quiz_acc", answers=m.quiz_attempts, accuracy=pct(m.quiz_accuracy))
    for q in mb.extra_quizzes:
        text += " · " + phrase(lang, "extra_quiz", name=q.module, answers=q.answers, accuracy=pct(q.accuracy))
    return text
