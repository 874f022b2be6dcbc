"""Issue 17 item 7: the Labs screen shows the lesson. Selecting a lab shows its latest recorded
run at once (a run made from the CLI or earlier, no `h` needed); tables open at the top with
their header and whole column names at 120 columns; a chart whose first episodes would flatten
the rest is drawn on a robust y range and says so. Item 8: the screen says where the run's
files are."""

from __future__ import annotations

import json
import time

import pytest

from labs.protocol import fmt_value
from llmcore_tui.tui.app import LlmcoreApp
from llmcore_tui.tui.screens.labs import LabsScreen
from llmcore_tui.tui.widgets.labview import lab_table, robust_ylim
from tests.conftest import FIXED_NOW

COLUMNS = ["connector", "visual_tokens", "lm_tokens", "params", "eval_loss", "accuracy", "unclipped_fraction"]
MDP_RUN = "mdp-20260301-090000-cli1"
TD_RUN = "td_learning-20260301-091000-cli2"


def _cliff_returns() -> list[tuple[int, float]]:
    """A cliff walk's mean return per episode: -1,784 first, then SARSA-like values near -25."""
    return [(1, -1784.0), (2, -900.0), (3, -400.0)] + [(e, -25.0 - 10.0 * (e % 3)) for e in range(4, 200)]


def _record(course) -> None:
    """Two finished runs as `llmcore-tui lab run` leaves them, before the app starts."""
    rows = [["mlp_projector" if i % 2 else "q_former", 64, 128 + i, 1.2e5, 0.1234, 0.873, 0.5] for i in range(30)]
    with course.store.transaction() as conn:
        for run_id, lab, day, headline in (
                (MDP_RUN, "mdp", 1, {"vi_sweeps": 56, "V_start": 4.4513}),
                (TD_RUN, "td_learning", 2, {"sarsa_final": -25.0, "q_learning_final": -50.0})):
            conn.execute(
                "INSERT INTO lab_runs(id, lab, day, preset, config_json, status, started_ts, ended_ts, exit_code,"
                " headline_json, log_tail, out_dir) VALUES (?, ?, ?, 'toy', '{}', 'succeeded', ?, ?, 0, ?, 'done', ?)",
                (run_id, lab, day, FIXED_NOW - 3600, FIXED_NOW - 3590, json.dumps(headline),
                 f"/data/llmcore-output/labs/{run_id}"))
        conn.execute("INSERT INTO lab_tables(run_id, name, columns_json, rows_json) VALUES (?, 'connectors', ?, ?)",
                     (MDP_RUN, json.dumps(COLUMNS), json.dumps(rows)))
        conn.executemany("INSERT INTO lab_metrics(run_id, step, key, value) VALUES (?, ?, ?, ?)",
                         [(MDP_RUN, k, "vi/bellman_residual", 10.0 / k) for k in range(1, 30)]
                         + [(TD_RUN, s, "returns/sarsa", v) for s, v in _cliff_returns()])


async def _wait(pilot, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the Labs screen"
        await pilot.pause(0.05)


async def _move_to(pilot, screen: LabsScreen, wanted, key: str) -> None:
    for _ in range(20):
        if wanted(screen.selected_lab()):
            return
        await pilot.press(key)
    raise AssertionError(f"no such lab row (at {screen.selected_lab()})")


async def _labs_showing(app: LlmcoreApp, pilot, run_id: str) -> LabsScreen:
    """The Labs screen, once it shows ``run_id`` (the selected lab's latest run)."""
    screen = LabsScreen()
    await app.push_screen(screen)
    await _wait(pilot, lambda: screen.shown_run == run_id)
    return screen


async def _live_screen(app: LlmcoreApp, pilot, lab: str) -> LabsScreen:
    """The Labs screen following a run of ``lab`` whose events the test feeds itself."""
    from llmcore_tui.tui.widgets.live_feed import LiveFeed

    screen = LabsScreen()
    await app.push_screen(screen)
    await pilot.pause(0.2)
    screen.feed = LiveFeed(lab, "toy")
    screen._show_live()
    await pilot.pause(0.1)
    return screen


def _lines(screen: LabsScreen) -> list[str]:
    return [strip.text for strip in screen.query_one("#labs-log").lines]


async def test_a_recorded_run_shows_at_once_with_its_table_header_and_whole_names(course):
    _record(course)
    app = LlmcoreApp(course)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = LabsScreen()
        await app.push_screen(screen)
        await _wait(pilot, lambda: screen.shown_run == MDP_RUN and len(_lines(screen)) > 30)
        assert screen.selected_lab() == "mdp" and not screen.showing_live
        # headline and curves without pressing h
        assert screen.query_one("#labs-panel").display
        assert len(screen.series["vi/bellman_residual"]) == 29
        # the table opens at the top: its title and header are on screen, names whole, nothing cut
        log = screen.query_one("#labs-log")
        await pilot.pause(0.2)
        assert log.scroll_y == 0
        lines = _lines(screen)
        title = next(i for i, line in enumerate(lines) if line.startswith("connectors"))
        rule = next(i for i, line in enumerate(lines) if i > title and set(line.strip()) <= set("─━┡╇┩"))
        assert rule < log.size.height, "the table's header is not in view"
        header_text = " ".join(lines[title + 1:rule])
        for name in COLUMNS:
            parts = [p for p in name.replace("_", "_ ").split() if p]
            assert all(p.strip() in header_text for p in parts), (name, header_text)
        assert not any("…" in line for line in lines), "a cell or a column name was cut"
        assert any(line.strip() == f"files: /data/llmcore-output/labs/{MDP_RUN}" for line in lines)


async def test_the_next_lab_and_a_run_row_show_at_once_and_a_cliff_chart_is_clipped(course):
    _record(course)
    old_run = "mdp-20260228-090000-old1"
    with course.store.transaction() as conn:
        conn.execute("INSERT INTO lab_runs(id, lab, day, preset, config_json, status, started_ts, ended_ts, exit_code,"
                     " error, log_tail) VALUES (?, 'mdp', 1, 'toy', '{}', 'failed', ?, ?, 1, 'it broke', '')",
                     (old_run, FIXED_NOW - 86400, FIXED_NOW - 86390))
    app = LlmcoreApp(course)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _labs_showing(app, pilot, MDP_RUN)
        await pilot.pause(0.3)
        assert not screen.clipped and "y&#160;clipped" not in app.export_screenshot()  # an ordinary curve is not
        await _move_to(pilot, screen, lambda lab: lab == "td_learning", "down")
        await _wait(pilot, lambda: screen.shown_run == TD_RUN)
        assert screen.chart_keys[0] == "returns/sarsa"
        low, high = screen.clipped["returns/sarsa"]
        assert -1784 < low < -45 and high >= -25, (low, high)  # SARSA's -25 vs -45 gap stays visible
        assert high - low < 100
        await pilot.pause(0.3)
        assert "y&#160;clipped&#160;to&#160;5-95th&#160;pct" in app.export_screenshot()  # the chart says so
        # a lab never run says how to run it, and shows nothing stale
        await _move_to(pilot, screen, lambda lab: lab not in ("mdp", "td_learning"), "down")
        await _wait(pilot, lambda: screen.shown_run is None)
        assert not screen.series and not screen.query_one("#labs-panel").display
        title = str(screen.query_one("#labs-run-title").content)
        assert "no run yet" in title and str(course.store.path.parent / "llmcore-output" / "labs") in title
        # the runs list: moving onto a run shows it
        await _move_to(pilot, screen, lambda lab: lab == "mdp", "up")
        await _wait(pilot, lambda: screen.shown_run == MDP_RUN)
        screen.query_one("#labs-runs").focus()
        await pilot.press("down")
        await _wait(pilot, lambda: screen.shown_run == old_run)
        assert "it broke" in str(screen.query_one("#labs-run-title").content)
        await pilot.press("up")
        await _wait(pilot, lambda: screen.shown_run == MDP_RUN)


def test_robust_ylim_clips_only_extreme_first_points():
    values = [v for _, v in _cliff_returns()]
    low, high = robust_ylim(values)
    assert -60 < low < -45 and -25 <= high < -15
    loss = [3.0 * 0.98 ** k + 0.5 for k in range(300)]  # an ordinary decaying curve keeps its range
    assert robust_ylim(loss) is None
    assert robust_ylim([1.0, 2.0, 1000.0]) is None  # too few points to call any an outlier
    assert robust_ylim([5.0] * 50) is None


def test_lab_table_keeps_column_names_whole_at_the_width_of_a_120_column_screen():
    from rich.console import Console

    rows = [["mlp_projector", 64, 128, 1.2e5, 0.1234, 0.873, 0.5]] * 3
    for width in (72, 120):
        console = Console(width=width, record=True)
        console.print(lab_table("connectors", COLUMNS, rows, width))
        text = console.export_text()
        assert "…" not in text
        flat = text.replace("│", " ").replace("┃", " ")
        for name in COLUMNS:
            assert all(part in flat for part in name.replace("_", "_ ").split()), name
        assert fmt_value(1.2e5) in text
    wide = Console(width=120, record=True)
    wide.print(lab_table("connectors", COLUMNS, rows, 120))
    text = wide.export_text()
    assert all(name in text for name in COLUMNS)  # room enough: one line per name


@pytest.mark.parametrize("name,expected", [("lm_tokens", "lm_tokens"),
                                           ("unclipped_fraction", "unclipped_\nfraction")])
def test_wrap_name_breaks_after_underscores(name, expected):
    from llmcore_tui.tui.widgets.labview import _wrap_name

    assert _wrap_name(name) == expected


async def test_a_live_table_is_shown_from_its_header_not_its_last_rows(course):
    """A table arriving during a run (after many log lines) is scrolled to its title, not past it."""
    app = LlmcoreApp(course)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _live_screen(app, pilot, "vlm")
        for i in range(60):
            screen.feed.receive({"event": "log", "text": f"step {i}"})
        screen.feed.receive({"event": "table", "name": "connectors", "columns": COLUMNS,
                              "rows": [["q_former", 64, 128 + i, 1.2e5, 0.1, 0.8, 0.5] for i in range(30)]})
        screen._drain()
        await pilot.pause(0.2)
        log = screen.query_one("#labs-log")
        lines = _lines(screen)
        title = next(i for i, line in enumerate(lines) if line.startswith("connectors"))
        assert title >= 60 and log.scroll_y == title, (title, log.scroll_y)
        assert log.max_scroll_y > log.scroll_y  # the last rows are below, not in view


# -- the charts a lab declares (issue 13) -------------------------------------------------------

def test_log_axis_ticks_are_decades_inside_the_data_and_steps_get_whole_numbers():
    from llmcore_tui.tui.widgets.labview import decade_ticks, integer_ticks

    ticks, labels = decade_ticks([9.08e-11, 8.0])
    assert labels == ["1e-10", "1e-8", "1e-6", "1e-4", "1e-2", "1e0"] and ticks[0] == pytest.approx(1e-10)
    assert decade_ticks([2.0, 1000.0])[1] == ["1e1", "1e2", "1e3"]
    assert decade_ticks([2.0, 9.0]) is None  # no two decades: plotext's own ticks
    assert integer_ticks([float(k) for k in range(1, 57)])[1] == ["1", "15", "28", "42", "56"]
    assert integer_ticks([0.5, 0.9, 0.99]) is None


def test_compared_runs_share_a_declared_chart_and_its_formula_is_drawn_once():
    from labs.protocol import LiveRun
    from llmcore_tui.tui.widgets.lab_charts import charts_of, drawn_lines
    from tests.test_snapshots_labs import GAE_CHARTS, GAE_RUN, replay

    run = replay(GAE_RUN)
    (chart,) = charts_of(run)
    alone = drawn_lines(chart, {GAE_RUN: run})
    assert [(d.label, d.reference) for d in alone] == [("bias", False), ("variance", False),
                                                       ("bias_exact (reference)", True)]
    assert alone[0].xs == [0.0, 0.5, 0.9, 0.95, 1.0] and alone[0].ys[0] == 0.3254  # y against the table's x
    earlier = "gae-20260301-080000-old1"
    both = drawn_lines(chart, {GAE_RUN: run, earlier: replay(GAE_RUN)})
    assert [d.label for d in both] == ["091500-snap bias", "091500-snap variance", "bias_exact (reference)",
                                       "080000-old1 bias", "080000-old1 variance"]
    assert charts_of(LiveRun("fake")) == ()  # nothing declared, nothing measured: no chart
    assert GAE_CHARTS == run.charts


def test_the_legend_is_a_line_of_its_own_in_each_line_s_colour_and_marker():
    from labs.protocol import Chart
    from llmcore_tui.tui.widgets.lab_charts import REFERENCE_COLOR, drawn_lines, legend
    from tests.test_snapshots_labs import GAE_CHARTS, GAE_RUN, replay

    lines = drawn_lines(GAE_CHARTS[0], {GAE_RUN: replay(GAE_RUN)})
    bias, variance, exact = (line.color for line in lines)
    assert len({bias, variance, exact}) == 3 and exact == REFERENCE_COLOR  # the formula grey, the others apart
    wide = legend(lines, 80)
    assert wide.plain == "▀▄ bias  ▀▄ variance  •• bias_exact (reference)"
    assert [span.style.color.number for span in wide.spans] == [bias, variance, exact]
    # narrow: whole entries per row, never a marker without its label
    assert legend(lines, 24).plain.split("\n") == ["▀▄ bias  ▀▄ variance", "•• bias_exact (reference)"]
    assert legend(drawn_lines(Chart("lone", y=("bias",), table="gae_bias_variance"),
                              {GAE_RUN: replay(GAE_RUN)}), 80).plain == ""  # the title names a lone line


async def test_a_live_run_draws_the_charts_its_lab_declares_and_n_moves_between_them(course):
    from tests.test_snapshots_labs import MDP_CHARTS, mdp_events

    app = LlmcoreApp(course)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _live_screen(app, pilot, "mdp")
        events = mdp_events()
        screen.feed.receive(events[1])  # the charts come first: a log axis with no point yet is drawn
        await _wait(pilot, lambda: screen.chart_keys == [MDP_CHARTS[0].title])
        await pilot.pause(0.2)
        assert "no&#160;points&#160;yet" in app.export_screenshot()
        for event in events[:42]:  # start, charts and the first forty sweeps
            screen.feed.receive(event)
        await _wait(pilot, lambda: len(screen.series.get("vi/bellman_residual", [])) == 40)
        await pilot.pause(0.3)
        assert screen.chart_keys == [MDP_CHARTS[0].title]  # 76 columns: one chart at a time
        shot = app.export_screenshot()
        assert "look&#160;for:&#160;A&#160;straight&#160;line" in shot
        assert "1e0" in shot and "sweep" in shot  # decade ticks on the log axis, the x label
        for event in events[42:]:
            screen.feed.receive(event)
        await _wait(pilot, lambda: "gamma_sweep" in screen.live.tables)
        assert screen.query_one("#labs-progress").total == 7
        await pilot.press("n")
        await pilot.pause(0.3)
        assert screen.chart_keys == [MDP_CHARTS[1].title]
        assert "horizon_1/(1-gamma)&#160;(reference)" in app.export_screenshot()  # the formula, labelled
        await pilot.press(*["n"] * (len(MDP_CHARTS) - 1))
        assert screen.chart_keys == [MDP_CHARTS[0].title]  # and round again


async def test_compare_overlays_an_earlier_run_on_the_declared_chart(course):
    from tests.test_snapshots_labs import GAE_CHARTS, GAE_RUN, record_run

    earlier = "gae-20260301-080000-old1"
    record_run(course, GAE_RUN)
    record_run(course, earlier, started_ts=FIXED_NOW - 86400, events_of=GAE_RUN)
    app = LlmcoreApp(course)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = LabsScreen()
        await app.push_screen(screen)
        await _move_to(pilot, screen, lambda lab: lab == "gae", "down")
        await _wait(pilot, lambda: screen.shown_run == GAE_RUN)
        await pilot.press("x")
        await pilot.pause(0.3)
        assert screen.compared == [GAE_RUN, earlier]
        assert screen.chart_keys == [GAE_CHARTS[0].title]  # the declared chart, not a metric by index
        shot = app.export_screenshot()
        assert "091500-snap&#160;bias" in shot and "080000-old1&#160;bias" in shot
        legend_line = str(screen.query_one(".labs-chart-legend").render())
        assert "091500-snap bias" in legend_line and "080000-old1 bias" in legend_line
        plot = screen.query_one(".labs-plot").render().plain
        assert "bias" not in plot and "reference" not in plot  # no plotext legend over the data


async def test_a_chart_plotext_cannot_draw_says_so_and_the_screen_keeps_working(course, monkeypatch):
    from textual_plotext.plot import Plot

    from tests.test_snapshots_labs import MDP_RUN, record_run

    def fail(self):
        raise ValueError("math domain error")

    record_run(course, MDP_RUN)
    monkeypatch.setattr(Plot, "build", fail)
    app = LlmcoreApp(course)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _labs_showing(app, pilot, MDP_RUN)
        await pilot.pause(0.3)
        assert "could&#160;not&#160;be&#160;drawn" in app.export_screenshot()
        await pilot.press("n")
        assert screen.chart_keys and app.screen is screen
