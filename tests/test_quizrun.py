"""Quiz sittings: answers stored, misses scheduled as quiz:<id>, invalid input stores nothing."""

from __future__ import annotations

import pytest

from llmcore_tui.core import calc
from llmcore_tui.core.quiz import PresentedQuestion
from llmcore_tui.core.quizrun import QuizSitting, default_module, item_id, pass_threshold
from tests.conftest import FIXED_NOW

LETTERS = "ABCDEFGH"


def right_answer(shown: PresentedQuestion) -> str:
    q = shown.question
    if q.kind in ("single", "multiple"):
        return ",".join(LETTERS[i] for i in q.answer)
    if q.kind == "recall":
        return "yes"
    return shown.expected_for("en")


def wrong_answer(shown: PresentedQuestion) -> str:
    q = shown.question
    if q.kind in ("single", "multiple"):
        n = len(shown.choices_for("en"))
        return next(LETTERS[i] for i in range(n) if i not in q.answer)
    if q.kind == "recall":
        return "no"
    number, unit = calc.split_quantity(shown.expected_for("en"))
    return f"{number * 7 + 1:g} {unit}".strip()


def attempts(course):
    return course.store.query("SELECT sitting, question_id, module, day, answer, correct, score, attempted_ts "
                              "FROM quiz_attempts ORDER BY id")


def test_quiz_modules_come_from_the_bank(real_course):
    modules = real_course.quiz_modules()
    assert {"mdp", "reference", "review"} <= modules
    assert real_course.quiz_bank is not None
    assert default_module(real_course) == "mdp"  # day 1 of a fresh course
    criteria = [c.name for c in real_course.day_statuses()[0].criteria]
    assert "quiz" in criteria


def test_right_answer_is_stored_and_not_scheduled(real_course):
    sitting = QuizSitting(real_course, "mdp", seed=1)
    shown = sitting.current
    grade = sitting.answer(right_answer(shown), FIXED_NOW)
    assert grade.valid and grade.correct
    rows = attempts(real_course)
    assert len(rows) == 1
    assert rows[0]["question_id"] == shown.id and rows[0]["correct"] == 1 and rows[0]["score"] == 1.0
    assert rows[0]["sitting"] == sitting.id and rows[0]["module"] == "mdp" and rows[0]["day"] == 1
    assert real_course.srs.row(item_id(shown.id)) is None
    assert sitting.index == 1


def test_wrong_answer_is_stored_and_scheduled(real_course):
    sitting = QuizSitting(real_course, "mdp", seed=2)
    shown = sitting.current
    grade = sitting.answer(wrong_answer(shown), FIXED_NOW)
    assert grade.valid and not grade.correct
    rows = attempts(real_course)
    assert [(r["question_id"], r["correct"]) for r in rows] == [(shown.id, 0)]
    row = real_course.srs.row(f"quiz:{shown.id}")
    assert row is not None and row["kind"] == "quiz" and row["module"] == "mdp" and row["day"] == 1
    assert row["due_ts"] < FIXED_NOW + 3600  # Again: back within the hour
    assert real_course.store.scalar("SELECT rating FROM reviews WHERE item_id = ?", (f"quiz:{shown.id}",)) == 1
    # it shows up in the review queue
    assert real_course.review_queue().next(FIXED_NOW + 3600)["item_id"] == f"quiz:{shown.id}"


def test_missed_again_rates_the_existing_item(real_course):
    first = QuizSitting(real_course, "mdp", seed=3, shuffle=False)
    qid = first.current.id
    first.answer(wrong_answer(first.current), FIXED_NOW)
    second = QuizSitting(real_course, "mdp", seed=3, shuffle=False)
    second.answer(wrong_answer(second.current), FIXED_NOW + 60)
    assert real_course.srs.row(item_id(qid))["reps"] == 2
    assert real_course.store.scalar("SELECT count(*) FROM quiz_attempts WHERE question_id = ?", (qid,)) == 2


def test_invalid_answer_stores_nothing(real_course):
    sitting = QuizSitting(real_course, "mdp", seed=4)
    shown = sitting.current
    bad = "Z" if shown.kind in ("single", "multiple") else ("maybe" if shown.kind == "recall" else "lots")
    grade = sitting.answer(bad, FIXED_NOW)
    assert not grade.valid and grade.feedback_for("en")
    assert attempts(real_course) == []
    assert real_course.store.scalar("SELECT count(*) FROM srs_items") == 0
    assert sitting.current is shown and sitting.index == 0


@pytest.mark.parametrize("right", [True, False])
def test_finish_writes_the_sitting(real_course, right):
    sitting = QuizSitting(real_course, "mdp", seed=5)
    while not sitting.done:
        shown = sitting.current
        assert sitting.answer(right_answer(shown) if right else wrong_answer(shown), FIXED_NOW).valid
    result = sitting.finish(FIXED_NOW + 300)
    assert result.passed is right and result.total == sitting.total
    rows = real_course.store.query("SELECT * FROM quiz_sittings")
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == sitting.id and row["module"] == "mdp" and row["day"] == 1
    assert row["questions"] == sitting.total and row["correct"] == (sitting.total if right else 0)
    assert row["score"] == pytest.approx(1.0 if right else 0.0) and row["passed"] == int(right)
    assert row["finished_ts"] == FIXED_NOW + 300
    assert sitting.finish(FIXED_NOW + 400) is result  # written once
    assert real_course.store.scalar("SELECT count(*) FROM quiz_sittings") == 1
    quiz = [c for c in real_course.day_statuses()[0].criteria if c.name == "quiz"][0]
    assert quiz.met is right


def test_threshold_setting_overrides_the_file(real_course):
    assert pass_threshold(real_course, "mdp") == 0.8
    real_course.settings.set("quiz_pass_threshold", 0.5)
    assert pass_threshold(real_course, "mdp") == 0.5
    sitting = QuizSitting(real_course, "mdp", seed=6)
    half = (sitting.total + 1) // 2
    for k in range(sitting.total):
        shown = sitting.current
        sitting.answer(right_answer(shown) if k < half else wrong_answer(shown), FIXED_NOW)
    assert sitting.finish(FIXED_NOW).passed


def test_unknown_module_is_an_error(real_course):
    with pytest.raises(ValueError, match="no quiz questions"):
        QuizSitting(real_course, "nope")


def test_advanced_questions_wait_until_the_advanced_cards_are_learned(real_course):
    from llmcore_tui.core.srs import GOOD

    advanced = {q.id for q in real_course.quiz_bank.for_module("grpo") if "advanced" in q.tags}
    assert advanced  # the frontier topics beside day 8 ask some
    asked = {shown.id for shown in QuizSitting(real_course, "grpo", seed=1).questions}
    assert asked and not asked & advanced
    for item in real_course.new_items({8}):
        if item.item_id in real_course.summary.advanced["grpo"]:
            real_course.srs.rate(item, GOOD, FIXED_NOW)
    asked = {shown.id for shown in QuizSitting(real_course, "grpo", seed=1).questions}
    assert advanced <= asked
