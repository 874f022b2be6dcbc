"""Pilot tests: review a card end to end, undo, navigation."""

from __future__ import annotations

from llmcore_tui.tui.app import LlmcoreApp
from llmcore_tui.tui.screens.review import ReviewScreen


async def test_review_rates_a_card_into_the_database(course):
    app = LlmcoreApp(course)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("r")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ReviewScreen)
        first = screen.current_id
        assert first == "mdp-one"
        await pilot.press("3")  # not revealed yet: nothing is stored
        assert course.store.scalar("SELECT count(*) FROM reviews") == 0
        await pilot.press("space", "3")
        await pilot.pause()
        rows = course.store.query("SELECT item_id, rating FROM reviews")
        assert rows == [{"item_id": "mdp-one", "rating": 3}]
        assert screen.current_id == "mdp-two"


async def test_undo_restores_the_card(course):
    app = LlmcoreApp(course)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("r", "space", "4")
        await pilot.pause()
        assert course.store.scalar("SELECT count(*) FROM srs_items") == 1
        await pilot.press("u")
        await pilot.pause()
        assert app.screen.current_id == "mdp-one"
        assert course.store.scalar("SELECT count(*) FROM srs_items") == 0
        assert course.store.query("SELECT rating, undoes FROM reviews ORDER BY id") == [
            {"rating": 4, "undoes": None}, {"rating": None, "undoes": 1}]


async def test_theme_choice_is_remembered(course):
    from llmcore_tui.core.course import Course

    app = LlmcoreApp(course)
    async with app.run_test(size=(100, 40)) as pilot:
        app.theme = "nord"
        await pilot.pause()
    reopened = Course.open(course.store.path, course.content_root, clock=course.clock)
    assert reopened.settings.get("theme") == "nord"
    again = LlmcoreApp(reopened)
    async with again.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        assert again.theme == "nord"


async def test_command_palette_lists_every_screen(course):
    app = LlmcoreApp(course)
    async with app.run_test(size=(100, 40)) as pilot:
        titles = {command.title for command in app.get_system_commands(app.screen)}
    assert {"Today", "Review", "Roadmap", "Labs", "Quiz", "Stats", "Calculator", "Help"} <= titles


async def test_export_brief_from_the_app(course, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = LlmcoreApp(course)
    async with app.run_test(size=(100, 40)) as pilot:
        app.export_brief("md")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert course.store.get_setting("brief_exported_ts") is not None
    text = (tmp_path / "brief.md").read_text(encoding="utf-8")
    assert "MDP" in text


async def test_empty_queue_says_when_the_next_card_comes_and_r_looks_again(course):
    course.settings.set("new_per_day", 1)
    app = LlmcoreApp(course)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("r", "space", "4")  # the one new card of the day, rated Easy: due in days
        await pilot.pause()
        screen = app.screen
        assert screen.current is None
        text = str(screen.query_one("#review-empty").render())
        assert "The next card comes" in text and "04:00" in text  # from the day-start hour
        course.clock.advance(40 * 86_400)
        await pilot.press("r")  # looks again on the same screen: the card is due now
        await pilot.pause()
        assert screen.current_id == "mdp-one"
