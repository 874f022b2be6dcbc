"""Pilot tests: sit a quiz on the shipped questions; answers stored, a miss scheduled for Review."""

from __future__ import annotations

from textual.widgets import Input, OptionList

from llmcore_tui.tui.app import LlmcoreApp
from llmcore_tui.tui.screens.quiz import ModulePicker, QuizScreen
from llmcore_tui.tui.screens.review import ReviewScreen
from tests.test_quizrun import right_answer, wrong_answer


async def answer(pilot, screen: QuizScreen, text: str) -> None:
    shown = screen.sitting.current
    if shown.kind == "recall":
        await pilot.press("space")
        await pilot.press({"yes": "y", "no": "n"}[text])
    else:
        screen.query_one("#quiz-input", Input).value = text
        await pilot.press("enter")
    await pilot.pause()


async def test_quiz_right_and_wrong_answers_are_stored(real_course):
    app = LlmcoreApp(real_course)
    async with app.run_test(size=(110, 40)) as pilot:
        screen = QuizScreen(seed=11)
        await app.push_screen(screen)
        await pilot.pause()
        sitting = screen.sitting
        assert sitting is not None and sitting.module == "mdp"  # day 1: today's module
        first = sitting.current
        await answer(pilot, screen, right_answer(first))
        assert screen.state == "feedback"
        assert "Right" in str(screen.query_one("#quiz-feedback").content.markup)
        await pilot.press("enter")
        await pilot.pause()
        second = sitting.current
        assert screen.state == "answer" and second.id != first.id
        await answer(pilot, screen, wrong_answer(second))
        assert screen.state == "feedback"
        rows = real_course.store.query("SELECT question_id, correct FROM quiz_attempts ORDER BY id")
        assert rows == [{"question_id": first.id, "correct": 1}, {"question_id": second.id, "correct": 0}]
        scheduled = real_course.store.query("SELECT item_id, kind FROM srs_items")
        assert scheduled == [{"item_id": f"quiz:{second.id}", "kind": "quiz"}]
        # the Review screen shows the missed question: question (and choices) in front, answer behind
        review = ReviewScreen()
        await app.push_screen(review)
        await pilot.pause()
        review.current = real_course.srs.row(f"quiz:{second.id}")
        front, back = review._card_text("front"), review._card_text("back")
        assert "no longer" not in front
        if second.choices_for("en"):
            assert "**A**" in front
        assert back.startswith("**Answer:**")


async def test_invalid_input_stores_nothing_and_a_full_sitting_is_saved(real_course):
    app = LlmcoreApp(real_course)
    async with app.run_test(size=(110, 40)) as pilot:
        screen = QuizScreen(module="gae", seed=5)
        await app.push_screen(screen)
        await pilot.pause()
        sitting = screen.sitting
        if sitting.current.kind != "recall":
            screen.query_one("#quiz-input", Input).value = "not an answer ???"
            await pilot.press("enter")
            await pilot.pause()
            assert screen.state == "answer" and sitting.index == 0
            assert real_course.store.scalar("SELECT count(*) FROM quiz_attempts") == 0
        while not sitting.done:
            await answer(pilot, screen, right_answer(sitting.current))
            await pilot.press("enter")
            await pilot.pause()
        assert screen.state == "done"
        rows = real_course.store.query("SELECT module, questions, correct, passed FROM quiz_sittings")
        assert rows == [{"module": "gae", "questions": sitting.total, "correct": sitting.total, "passed": 1}]


async def test_pick_another_module(real_course):
    app = LlmcoreApp(real_course)
    async with app.run_test(size=(110, 40)) as pilot:
        screen = QuizScreen(seed=1)
        await app.push_screen(screen)
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, ModulePicker)
        options = app.screen.query_one(OptionList)
        options.highlighted = [o.id for o in options.options].index("reference")
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen and screen.sitting.module == "reference"
