"""Pilot test: the Stats screen renders the numbers of a hand-built history."""

from __future__ import annotations

from datetime import date, timedelta

from textual.widgets import DataTable

from llmcore_tui.core import fsrs_fit
from llmcore_tui.core.srs import stored_parameters
from llmcore_tui.tui.app import LlmcoreApp
from llmcore_tui.tui.screens.stats import ConfirmSwitch, StatsScreen, heatmap_lines
from tests.test_fsrs_fit import FITTED, canned_report
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


def fake_fit(history, on_progress=None, **_):
    """The fit itself is tested in test_fsrs_fit.py; here only the screen around it."""
    on_progress(fsrs_fit.Progress(1, 3, "held-out check"))
    return canned_report(len(history))


async def optimize(app, pilot, screen):
    await app.push_screen(screen)
    await loaded(app, pilot)
    assert "In use: FSRS-6's default parameters" in text(screen, "#stats-fsrs")
    await pilot.press("o")
    await loaded(app, pilot)


async def test_o_fits_fsrs_in_a_worker_and_switches_after_the_learner_confirms(history, monkeypatch):
    monkeypatch.setattr(fsrs_fit, "fit", fake_fit)
    app = LlmcoreApp(history)
    async with app.run_test(size=(140, 80)) as pilot:
        screen = StatsScreen()
        await optimize(app, pilot, screen)
        assert any(b.id == "stats.optimize" and b.key == "o" for b in screen.BINDINGS)  # shown in the footer
        assert isinstance(app.screen, ConfirmSwitch)
        assert "better than the defaults" in str(app.screen.query_one("#confirm-question").render())
        figures = text(screen, "#stats-fsrs")
        assert "in-sample" in figures and "held-out" in figures and "0.3700" in figures
        assert stored_parameters(history.store) is None  # nothing switched before the answer
        await pilot.press("y")
        await loaded(app, pilot)
        assert stored_parameters(history.store).parameters == FITTED
        assert history.srs.scheduler.parameters == FITTED  # the scheduler Review shares, at once
        assert "In use: parameters fitted on 2026-03-02 to 12 reviews" in text(screen, "#stats-fsrs")


async def test_keep_leaves_the_defaults_and_too_few_reviews_are_refused_on_screen(history, monkeypatch):
    app = LlmcoreApp(history)
    async with app.run_test(size=(140, 80)) as pilot:
        screen = StatsScreen()
        await optimize(app, pilot, screen)  # the real fit: 12 reviews are far too few
        assert app.screen is screen
        refusal = text(screen, "#stats-fsrs")
        assert "not enough reviews" in refusal and f"at least {fsrs_fit.MIN_REVIEWS}" in refusal

        monkeypatch.setattr(fsrs_fit, "fit", fake_fit)
        await pilot.press("o")
        await loaded(app, pilot)
        assert isinstance(app.screen, ConfirmSwitch)
        await pilot.press("n")
        await loaded(app, pilot)
        assert app.screen is screen and stored_parameters(history.store) is None
