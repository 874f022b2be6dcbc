"""Everything the brief shows, read once from the course: its store, deck and roadmap.

Numbers come from where the app computes them (``stats`` for mastery, reviews and the weakest
cards; ``course`` for day statuses and passed quizzes; ``labhistory`` for runs), so the brief and
the screens cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from llmcore_tui.core import roadmap
from llmcore_tui.core.brief.evidence import lab_evidence
from llmcore_tui.core.brief.model import (LANGS, PLAN_DAYS, RECALL_TARGET, WEAKEST, Brief, BriefError, Idea,
                                          ModuleBrief, QuizExtra, Revisit, TimelineDay, Totals, WeakItem)
from llmcore_tui.core.brief.prose import join_lines, short_text
from llmcore_tui.core.brief.words import pct, phrase
from llmcore_tui.core.clock import day_bounds, study_date

if TYPE_CHECKING:
    from llmcore_tui.core.course import Course
    from llmcore_tui.core.labhistory import RunRecord
    from llmcore_tui.core.stats import ModuleMastery


def _timeline(course: "Course", start: date, today: date, runs: list["RunRecord"]) -> tuple[TimelineDay, ...]:
    """Study days 1-14 from ``start`` (and, when there was activity later, one row for all the
    days after day 14; when there was any before day 1 (a changed time zone or day start can
    move an early review there), one row for it first). Together the rows hold every review in
    effect, so the brief's total is their sum."""
    from llmcore_tui.core import stats

    hour, tz = course.settings.get("day_start_hour"), course.tz
    dates = [start + timedelta(days=i) for i in range(PLAN_DAYS)]
    bounds = [day_bounds(d, hour, tz) for d in dates]
    lo, end = bounds[0][0], bounds[-1][1]
    # the Stats screen's own count (valid reviews, same study-day bucketing), for days 1-14 and after
    reviews = stats.review_heatmap(course, PLAN_DAYS, dates[-1])
    later_days = max((today - dates[-1]).days, 0)
    later_reviews = sum(stats.review_heatmap(course, later_days, today).values()) if later_days else 0
    conn = course.store.conn
    first = conn.execute("SELECT min(reviewed_ts) FROM reviews").fetchone()[0]
    earlier_days = (start - study_date(first, hour, tz)).days if first is not None and first < lo else 0
    earlier_reviews = sum(stats.review_heatmap(course, earlier_days, start - timedelta(days=1)).values()) \
        if earlier_days > 0 else 0

    def bucket(ts: float) -> int | None:
        if ts < lo:
            return PLAN_DAYS + 1
        if ts >= end:
            return PLAN_DAYS
        for i, (a, b) in enumerate(bounds):
            if a <= ts < b:
                return i
        return None

    n = PLAN_DAYS + 2  # days 1-14, after day 14, before day 1
    new = [0] * n
    answers, sittings, passed = [0] * n, [0] * n, [0] * n
    scores = [0.0] * n
    labs: list[list[tuple[str, str]]] = [[] for _ in range(n)]
    for (ts,) in conn.execute("SELECT introduced_ts FROM srs_items WHERE kind = 'card' AND introduced_ts IS NOT NULL"):
        i = bucket(ts)
        if i is not None:
            new[i] += 1
    for ts, score in conn.execute("SELECT attempted_ts, score FROM quiz_attempts"):
        i = bucket(ts)
        if i is not None:
            answers[i] += 1
            scores[i] += float(score or 0.0)
    for ts, ok in conn.execute("SELECT coalesce(finished_ts, started_ts), passed FROM quiz_sittings "
                               "WHERE coalesce(finished_ts, started_ts) IS NOT NULL"):
        i = bucket(ts)
        if i is not None:
            sittings[i] += 1
            passed[i] += int(ok or 0)
    for run in sorted(runs, key=lambda r: r.started_ts):
        i = bucket(run.started_ts)
        if i is not None:
            labs[i].append((run.lab, run.status))
    days = [TimelineDay(i + 1, d, reviews.get(d, 0), new[i], answers[i], scores[i], sittings[i], passed[i],
                        tuple(labs[i]), today=d == today, future=d > today)
            for i, d in enumerate(dates)]
    later = TimelineDay(None, None, later_reviews, new[PLAN_DAYS], answers[PLAN_DAYS], scores[PLAN_DAYS],
                        sittings[PLAN_DAYS], passed[PLAN_DAYS], tuple(labs[PLAN_DAYS]))
    if not later.empty:
        days.append(later)
    earlier = TimelineDay(0, None, earlier_reviews, new[-1], answers[-1], scores[-1], sittings[-1], passed[-1],
                          tuple(labs[-1]))
    if not earlier.empty:
        days.insert(0, earlier)
    return tuple(days)


def _quiz_extras(course: "Course", mastery: list["ModuleMastery"]) -> dict[str, list[QuizExtra]]:
    """Quiz modules outside the roadmap (the mixed review), attached to the module of their day."""
    extras: dict[str, list[QuizExtra]] = {}
    known = set(roadmap.MODULE_DAYS)
    days = dict(course.store.conn.execute("SELECT module, max(day) FROM quiz_attempts GROUP BY module").fetchall())
    for m in mastery:
        if m.module in known or not m.quiz_attempts:
            continue
        day = roadmap.BY_NUMBER.get(int(days.get(m.module) or 13)) or roadmap.BY_NUMBER[13]
        extras.setdefault(day.module, []).append(QuizExtra(m.module, m.quiz_attempts, m.quiz_accuracy))
    return extras


def build_brief(course: "Course", lang: str = "en", now: float | None = None, weakest: int = WEAKEST) -> Brief:
    """Everything the brief shows, read from the course's store and deck."""
    from llmcore_tui.core import labhistory, stats
    from labs.registry import labs_for_day

    if lang not in LANGS:
        raise BriefError(f"unknown language {lang!r}: expected en or zh")
    now = course.now() if now is None else now
    deck = course.deck
    by_id = deck.by_id
    mastery_list = stats.module_mastery(course, now)
    mastery = {m.module: m for m in mastery_list}
    extras = _quiz_extras(course, mastery_list)
    statuses = {s.day.number: s for s in course.day_statuses()}
    quiz_modules = course.quiz_modules()
    runs = labhistory.list_runs(course.store)
    runs_by_lab: dict[str, list[RunRecord]] = {}
    for run in runs:  # newest first
        runs_by_lab.setdefault(run.lab, []).append(run)
    study = course.study_date(now)
    threshold = float(course.settings.get("quiz_pass_threshold"))

    modules: list[ModuleBrief] = []
    revisit: list[Revisit] = []
    for day in roadmap.DAYS:
        if day.module not in roadmap.LEARNING_MODULES:
            continue
        status = statuses.get(day.number)
        label = status.label if status else "locked"
        m = mastery.get(day.module)
        cards = deck.for_module(day.module)
        ideas = tuple(Idea(c.id, join_lines(c.text("front", lang)), short_text(c.text("back", lang)), c.tags)
                      for c in cards)
        evidence = tuple(lab_evidence(course.store, lab, runs_by_lab.get(lab.name, []))
                         for lab in labs_for_day(day.number))
        has_quiz = day.module in quiz_modules
        missing: list[str] = []
        if not (m and m.introduced):
            missing.append(phrase(lang, "no_cards_module", day=day.number))
        if has_quiz and not (m and m.quiz_attempts):
            missing.append(phrase(lang, "no_quiz_module", day=day.number))
        for ev in evidence:
            if ev.runs == 0:
                missing.append(phrase(lang, "no_lab_module", command=ev.command))
            elif ev.run is None and ev.latest is not None:
                missing.append(phrase(lang, "lab_failed", lab=ev.lab, runs=ev.runs, status=ev.latest.status,
                                  error=(ev.latest.error or "—").splitlines()[0][:120], command=ev.command))
        name = day.title[lang]
        title = deck.titles.get(day.module, {}).get(lang) or deck.titles.get(day.module, {}).get("en") or name
        brief = ModuleBrief(day, name, title, day.goal[lang], label, m, has_quiz, ideas, evidence,
                            tuple(extras.get(day.module, ())), tuple(missing))
        modules.append(brief)
        if label != "locked":
            reasons, score = _revisit_reasons(brief, threshold, lang)
            if reasons:
                revisit.append(Revisit(day.module, day.number, name, tuple(reasons), score))
    revisit.sort(key=lambda r: (-r.score, r.day))

    weak: list[WeakItem] = []
    for w in stats.weakest_cards(course, weakest, now):
        card = by_id.get(w.item_id)
        front = join_lines(card.text("front", lang)) if card else w.item_id
        weak.append(WeakItem(w.item_id, w.module, roadmap.MODULE_DAYS.get(w.module, 0), front, w.retrievability,
                             w.lapses, w.difficulty, card.tags if card else ()))
    tags = Counter(t for w in weak for t in w.tags)
    weak_tags = tuple((t, n) for t, n in tags.most_common(8) if n >= 2)

    introduced = sum(mb.introduced for mb in modules)
    recall_sum = sum((mb.mastery.mean_retrievability * mb.mastery.introduced) for mb in modules if mb.mastery)
    answers = sum(m.quiz_attempts for m in mastery_list)
    # the mean answer score over every quiz: module_mastery's quiz_accuracy weighted by answers
    score = sum((m.quiz_accuracy or 0.0) * m.quiz_attempts for m in mastery_list) / answers if answers else None
    timeline = _timeline(course, course.start_date, study, runs)
    all_labs = [ev for mb in modules for ev in mb.labs]
    totals = Totals(
        cards=sum(course.summary.totals.get(mb.module, 0) for mb in modules),
        introduced=introduced,
        reviews=sum(d.reviews for d in timeline),
        card_reviews=sum(m.reviews for m in mastery_list),
        recall=recall_sum / introduced if introduced else None,
        quiz_answers=answers,
        quiz_score=score,
        quizzes=len(quiz_modules),
        quizzes_passed=len(course.quizzes_passed() & quiz_modules),
        lab_runs=len(runs),
        lab_succeeded=sum(1 for r in runs if r.status == "succeeded"),
        labs=len(all_labs),
        labs_ok=sum(1 for ev in all_labs if ev.run is not None),
        days_done=days_done(statuses.values()),
    )
    notes = []
    if not introduced:
        notes.append(phrase(lang, "no_reviews"))
    if not answers:
        notes.append(phrase(lang, "no_quiz"))
    if not runs:
        notes.append(phrase(lang, "no_labs"))
    tz = course.tz
    local = datetime.fromtimestamp(now, tz)
    return Brief(lang, now, local.strftime("%Y-%m-%d %H:%M"), local.tzname() or str(tz), course.start_date, study,
                 roadmap.calendar_day(course.start_date, study), totals, tuple(modules), tuple(weak),
                 tuple(revisit), weak_tags, timeline, tuple(notes), tz)


def days_done(statuses: Any) -> int:
    """Days of the roadmap done, as the brief counts them: the roadmap's own statuses, except
    that day 14 whose only unmet criterion is the export counts as done, because the brief
    being written *is* that export. So the first export (HTML or Markdown) and every later one
    say the same, instead of the first one saying 13 and the next 14."""
    done = 0
    for s in statuses:
        if s.done:
            done += 1
        elif s.day.module == "brief" and s.unlocked and all(c.met for c in s.criteria if c.name != "brief"):
            done += 1
    return done


def _revisit_reasons(mb: ModuleBrief, threshold: float, lang: str) -> tuple[list[str], float]:
    reasons: list[str] = []
    score = 0.0
    m = mb.mastery
    if m and m.introduced:
        if m.mean_retrievability < RECALL_TARGET:
            reasons.append(phrase(lang, "r_recall", recall=pct(m.mean_retrievability), target=pct(RECALL_TARGET)))
            score += 2 * (RECALL_TARGET - m.mean_retrievability) * 10
        if m.lapses:
            reasons.append(phrase(lang, "r_lapses", n=m.lapses))
            score += min(m.lapses, 10) * 0.5
    if m and m.quiz_accuracy is not None and m.quiz_accuracy < threshold:
        reasons.append(phrase(lang, "r_quiz", accuracy=pct(m.quiz_accuracy)))
        score += (threshold - m.quiz_accuracy) * 10
    total = m.cards_total if m else 0
    if total and (m.introduced if m else 0) < total:
        unseen = total - (m.introduced if m else 0)
        reasons.append(phrase(lang, "r_unseen", n=unseen, total=total))
        score += unseen / total
    if mb.has_quiz and not (m and m.quiz_attempts):
        reasons.append(phrase(lang, "r_no_quiz"))
        score += 0.5
    for ev in mb.labs:
        if ev.run is None:
            reasons.append(phrase(lang, "r_lab", lab=ev.lab))
            score += 0.5
    return reasons, score


