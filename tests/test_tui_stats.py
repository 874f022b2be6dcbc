"""Pilot test: the Stats screen renders the numbers of a hand-built history."""

from __future__ import annotations

from datetime import date, timedelta

from textual.widgets import DataTable

from llmcore_tui.tui.app import LlmcoreApp
from llmcore_tui.tui.screens.stats import StatsScreen, heatmap_lines
from tests.test_stats import GOOD, REVIEW, history, review, ts  # noqa: F401 - history is a fixture


def text(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def loaded(app, pilot) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_stats_screen_shows_retention_heatmap_forecast_and_mastery(history):
    app = LlmcoreApp(history)
    async with app.run_test(size=(140, 80)) as pilot:
        screen = StatsScreen()
        await app.push_screen(screen)
        await loaded(app, pilot)
        assert screen.report is not None and screen.report.today == date(2026, 3, 2)

        retention = text(screen, "#stats-retention")
        # last 30 days: 5 of the 8 reviews of cards in Review state passed
        assert "True retention, last 30 days: 62.5% (5 of 8 reviews of cards in review)" in retention
        assert "desired 90.0% · 27.5 points below" in retention
        assert "First-review retention, last 14 days: 77.8% (7 of 9 first reviews of the day)" in retention
        assert "02-20 1/1  02-28 2/3  03-01 3/3  03-02 1/2" in retention

        heatmap = text(screen, "#stats-heatmap")
        assert "12 reviews in 84 days · 4 active days · today 3 · busiest 2026-02-28 (5)" in heatmap
        lines = heatmap.splitlines()
        assert [line[:3] for line in lines[1:8]] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        assert "██" in lines[6]  # Saturday 02-28, the busiest day, in the darkest shade

        forecast = text(screen, "#stats-forecast").splitlines()
        assert forecast[0].startswith("    today │") and forecast[0].endswith(" 3")
        assert forecast[1].startswith("Tue 03-03 │") and forecast[1].endswith(" 1")
        assert "5 due in 14 days" in forecast[-1]

        table = screen.query_one(DataTable)
        assert app.focused is not None and app.focused.id == "stats-body"  # the keys scroll the page
        await pilot.press("tab")
        assert table.has_focus
        mdp = [str(cell) for cell in table.get_row("mdp")]
        assert mdp[:3] == ["1", "mdp", "3/3"] and mdp[4:] == ["10", "3", "4 · 75.0%"]
        assert [str(cell) for cell in table.get_row("td_learning")][2:4] == ["2/2", "100.0%"]

        assert text(screen, "#stats-weakest").splitlines()[0].startswith("mdp-one (mdp) · recall ")

        # f5 recomputes: a new review today shows up
        review(history.store, "mdp-two", GOOD, ts(3, 2, 9), REVIEW)
        await pilot.press("f5")
        await loaded(app, pilot)
        assert "today 4" in text(screen, "#stats-heatmap")


async def test_stats_opens_as_a_lazy_mode_on_a_fresh_course(course):
    app = LlmcoreApp(course)
    async with app.run_test(size=(120, 60)) as pilot:
        app.action_open("stats")
        await loaded(app, pilot)
        screen = app.screen
        assert isinstance(screen, StatsScreen) and screen.report is not None
        assert "no reviews of cards in review yet" in text(screen, "#stats-retention")
        assert "0 reviews in 84 days" in text(screen, "#stats-heatmap")
        assert "No cards introduced yet." in text(screen, "#stats-weakest")
        await pilot.press("escape")
        await pilot.pause()
        assert app.current_mode == "today"


def test_heatmap_grid_is_weeks_by_weekdays():
    counts = {date(2026, 3, 2) - timedelta(days=i): 0 for i in range(84)}
    counts[date(2026, 3, 2)] = 4
    counts[date(2026, 3, 1)] = 1
    lines = heatmap_lines(counts)
    assert len(lines) == 9  # months, 7 weekdays, legend
    assert "Dec" in lines[0] and "Jan" in lines[0] and "Feb" in lines[0] and "Mar" in lines[0]
    monday, sunday = lines[1], lines[7]
    assert monday.endswith("[green]██[/green]")          # today, the busiest
    assert sunday.endswith("[green]░░[/green]  ")        # yesterday, a quarter of the peak; then the future
    assert lines[2].endswith("  ") and not lines[2].endswith("    ")  # Tuesday 03-03 has not come yet
