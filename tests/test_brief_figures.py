"""Issue 17 item 6 (the brief's part): every figure of the brief has one definition, shared with
``core/stats.py`` and the roadmap, and each is computed here a second way."""

from __future__ import annotations

from llmcore_tui.core import brief as B
from llmcore_tui.core import stats
from llmcore_tui.core.roadmap import BY_NUMBER, Criterion, DayStatus
from llmcore_tui.core.srs import AGAIN, GOOD, NewItem
from tests.conftest import FIXED_NOW
from tests.test_brief import _populate

DAY = 86400.0
D1 = FIXED_NOW - 3 * DAY


def _more_work(course) -> None:
    """Reviews of a missed quiz question (an SRS item of kind quiz), one of them undone, and a
    partly right quiz answer (score 0.5) next to the populated course's 3-of-4."""
    _populate(course)
    srs = course.srs
    srs.rate(NewItem("mdp-q-3", "quiz", "mdp", 1), AGAIN, D1 + DAY + 1500)
    srs.rate("mdp-q-3", GOOD, D1 + DAY + 1600)
    srs.rate("mdp-q-3", GOOD, D1 + 2 * DAY + 50)
    srs.undo(D1 + 2 * DAY + 51)
    with course.store.transaction() as conn:
        conn.execute("INSERT INTO quiz_attempts(sitting, question_id, module, day, answer, correct, score,"
                     " attempted_ts) VALUES ('s2', 'td-q-0', 'td_learning', 2, 'a', 0, 0.5, ?)", (D1 + 2 * DAY + 300,))


def _valid_reviews(course) -> int:
    return course.store.conn.execute(
        "SELECT count(*) FROM reviews WHERE rating IS NOT NULL "
        "AND id NOT IN (SELECT undoes FROM reviews WHERE undoes IS NOT NULL)").fetchone()[0]


def test_total_reviews_is_the_sum_of_the_timeline_and_of_its_parts(course):
    _more_work(course)
    brief = B.build_brief(course, "en")
    tot = brief.totals
    # way 1: the timeline's rows (stats.review_heatmap per study day); way 2: every rating in effect
    assert tot.reviews == sum(d.reviews for d in brief.timeline) == _valid_reviews(course) == 9
    # the cards' part is the mastery table's column (stats.module_mastery), the rest are quiz questions
    mastery = stats.module_mastery(course)
    assert tot.card_reviews == sum(m.reviews for m in mastery) == sum(
        mb.mastery.reviews for mb in brief.modules if mb.mastery) == 7
    assert tot.quiz_reviews == 2
    # the Stats screen's heatmap over the same days gives the same per-day figures
    heat = stats.review_heatmap(course, 14, brief.timeline[13].date)
    assert [d.reviews for d in brief.timeline[:14]] == list(heat.values())
    line = "Cards: 3 of 5 introduced · 9 reviews (7 of cards, 2 of missed quiz questions)"
    assert line in B.render_markdown(brief) and line in B.render_html(brief, mathml=False)


def test_quiz_score_is_the_mean_answer_score_of_module_mastery_and_of_the_timeline(course):
    _more_work(course)
    brief = B.build_brief(course, "en")
    tot = brief.totals
    mastery = {m.module: m for m in stats.module_mastery(course)}
    assert mastery["td_learning"].quiz_accuracy == 0.5  # partial credit counts in part
    # way 1: module_mastery's quiz_accuracy, weighted by answers; way 2: the timeline's score sums
    weighted = sum(m.quiz_accuracy * m.quiz_attempts for m in mastery.values() if m.quiz_attempts)
    assert tot.quiz_answers == sum(d.quiz_answers for d in brief.timeline) == 5
    assert tot.quiz_score == weighted / 5 == sum(d.quiz_score for d in brief.timeline) / 5 == 0.7
    md = B.render_markdown(brief)
    assert "Quizzes: 5 answers, mean score 70%" in md
    assert "quiz: 1 answer, mean score 50%" in md  # td_learning, as the Quiz screen shows a sitting
    assert "| D3 | 2026-03-01 | 1 ██ | 0 | 0.5/1 |" in md


def test_days_done_is_the_same_in_both_formats_the_brief_counting_as_exported(course, tmp_path):
    # days 1-13 done; calendar day 14, whose only criterion is the export
    course.store.set_setting("start_date", "2026-02-17")
    course.store.set_setting("days_completed", {str(n): "2026-02-20" for n in range(1, 14)})
    before = course.day_statuses()
    assert sum(s.done for s in before) == 13 and before[13].unlocked and not before[13].done
    html_brief = B.write_brief(course, tmp_path / "brief.html", "html")
    md_brief = B.write_brief(course, tmp_path / "brief.md", "md")
    assert html_brief.totals.days_done == md_brief.totals.days_done == 14
    # way 2: the roadmap, now that the export is recorded
    assert sum(s.done for s in course.day_statuses()) == 14
    assert "Roadmap: 14 of 14 days done" in (tmp_path / "brief.html").read_text()
    assert "Roadmap: 14 of 14 days done" in (tmp_path / "brief.md").read_text()


def test_days_done_counts_day_14_only_when_the_export_is_all_it_lacks():
    day14 = BY_NUMBER[14]
    brief_only = DayStatus(day14, True, (Criterion("brief", False, "brief not exported yet"),))
    assert B.days_done([brief_only]) == 1
    other_unmet = DayStatus(day14, True, (Criterion("brief", False, ""), Criterion("quiz", False, "")))
    assert B.days_done([other_unmet]) == 0
    assert B.days_done([DayStatus(day14, False, (Criterion("brief", False, ""),))]) == 0  # locked
    open_day = DayStatus(BY_NUMBER[3], True, (Criterion("lab", False, ""),))
    assert B.days_done([open_day]) == 0


def test_reviews_before_day_1_get_a_row_so_the_total_still_adds_up(course):
    _more_work(course)
    course.srs.rate(NewItem("td-two", "card", "td_learning", 2), GOOD, D1 - 2 * DAY)  # e.g. after a zone change
    brief = B.build_brief(course, "en")
    first = brief.timeline[0]
    assert first.number == 0 and first.reviews == 1 and first.new_cards == 1
    assert brief.totals.reviews == sum(d.reviews for d in brief.timeline) == _valid_reviews(course) == 10
    assert brief.totals.quiz_reviews == 2 and brief.totals.card_reviews == 8
    assert "| before day 1 | — | 1" in B.render_markdown(brief)
    B.render_html(brief, mathml=False)  # the chart keeps to days 1-14


# -- the charts a lab declared (issue 13) --------------------------------------------------------

def _declared_events():
    """A mdp-like run as the protocol decodes it: a residual falling by a factor of ten per sweep
    (log y), and a γ sweep table with the formula 1/(1-γ) as the reference line."""
    from labs.protocol import Chart, Charts, Metric, Start, Summary, Table

    charts = (Chart("Bellman residual per sweep", y=("vi/residual",), log_y=True, x_label="sweep",
                    look_for="a straight line: the error shrinks by a factor γ every sweep"),
              Chart("Horizon against γ", y=("steps",), x="gamma", table="gamma_sweep", reference=("1/(1-γ)",),
                    look_for="the measured horizon follows 1/(1-γ)"),
              Chart("Never emitted", y=("nothing/here",)))
    events = [Start("mdp", {}, 5), Charts(charts)]
    events += [Metric(k, {"vi/residual": 10.0 ** -k}) for k in range(1, 6)]
    events += [Table("gamma_sweep", ["gamma", "steps", "1/(1-γ)"],
                     [[0.9, 11, 10.0], [0.5, 2, 2.0], [0.99, 95, 100.0]]),  # swept out of order on purpose
               Summary({"vi_sweeps": 5}, [])]
    return events


def _declared_run():
    from labs.protocol import LiveRun

    live = LiveRun("mdp")
    for event in _declared_events():
        live.apply(event)
    return live


def record_run(course, run_id, events, lab="mdp"):
    """Record ``events`` as a finished run through the app's own recorder (what a real run writes)."""
    from labs.protocol import LiveRun
    from llmcore_tui.core.labrecorder import RunRecorder

    live = LiveRun(lab)
    recorder = RunRecorder(course.store.reopen(), run_id, live, lambda detail: "")
    recorder.insert(lab, 1, "toy", {}, course.store.path.parent, 0)
    for event in events:
        live.apply(event)
        recorder.record(event)
    recorder.finish("succeeded", 0, None)
    recorder.close()


def test_declared_charts_become_figures_with_their_axes_and_reference_lines():
    residual, horizon, empty = B.evidence.figures(_declared_run())
    assert (residual.title, residual.x_label, residual.log_y, residual.log_x) == (
        "Bellman residual per sweep", "sweep", True, False)
    assert residual.lines[0].points == tuple((k, 10.0 ** -k) for k in range(1, 6))
    assert horizon.x_label == "gamma" and [line.reference for line in horizon.lines] == [False, True]
    assert horizon.lines[0].points == ((0.5, 2.0), (0.9, 11.0), (0.99, 95.0))  # sorted by x
    assert horizon.lines[1].key == "1/(1-γ)" and horizon.lines[1].high == 100.0
    assert empty.lines[0].points == () and empty.drawn == ()


def test_a_declared_chart_is_drawn_as_svg_with_log_ticks_a_dashed_reference_and_a_legend():
    import xml.etree.ElementTree as ET

    residual, horizon, empty = B.evidence.figures(_declared_run())
    ns = {"s": "http://www.w3.org/2000/svg"}
    svg = ET.fromstring(B.svg_figure(residual))
    ticks = [t.text for t in svg.findall("s:text", ns) if t.get("class") == "tick"]
    assert {"1e-05", "0.0001", "0.001", "0.01", "0.1"} <= set(ticks)  # one tick per decade
    assert "sweep" in ticks  # the x axis is named
    svg = ET.fromstring(B.svg_figure(horizon))
    paths = {p.get("class") for p in svg.findall("s:path", ns)}
    assert paths == {"line s0", "line ref"}  # the measured line and the dashed reference
    texts = [t.text for t in svg.findall("s:text", ns)]
    assert "1/(1-γ) (reference)" in texts and "steps" in texts  # the legend
    assert texts.count("1/(1-γ)") == 1  # the reference is labelled where it ends
    assert "no points recorded for this chart" in B.svg_figure(empty)


def test_the_brief_shows_the_declared_charts_instead_of_the_most_informative_curves(course):
    _populate(course)  # its mdp run, recorded before labs declared charts, is older than this one
    record_run(course, "mdp-declared", _declared_events())
    brief = B.build_brief(course, "en")
    ev = next(ev for mb in brief.modules for ev in mb.labs if ev.lab == "mdp")
    assert ev.run.id == "mdp-declared" and len(ev.figures) == 3 and ev.curves == ()
    md = B.render_markdown(brief)
    assert ("  - **Bellman residual per sweep (vi/residual against sweep, log y)** — Look for: a straight line: "
            "the error shrinks by a factor γ every sweep") in md
    assert "    - `█▆▄▂▁` vi/residual: 0.1 → 1e-05 (min 1e-05, max 0.1; 5 points, log scale)" in md
    assert "1/(1-γ): 2 → 100 (min 2, max 100; 3 points) · reference" in md
    assert "  - **Never emitted (nothing/here against step)**\n    - no points recorded for this chart" in md
    assert "vi/bellman_residual" not in md  # the old choice of curves is gone for this run
    page = B.render_html(brief, mathml=False)
    assert page.count('<figure class="fig">') == 3
    assert "<figcaption>Look for: the measured horizon follows 1/(1-γ)</figcaption>" in page
