"""SVG snapshots of the Labs screen drawing the charts two labs declare, from recorded runs.

The runs are canned event streams taken from real toy runs (mdp: value iteration on the slippery
cliff grid, its gamma sweep, with the charts ``labs/mdp.py`` declares; gae: part 1, GAE's bias and
variance on the chain against the exact bias, with a copy of its first chart, since importing
``labs.gae`` would load torch), so the pictures are deterministic and no lab runs here. Each run is stored the way the runner
stores a real one (``RunRecorder``: its row with the declared charts, metrics and tables; only
its start and end times are pinned) and the screen loads it back as it loads every recorded run
(``labhistory.load_run``).

Regenerate with ``pytest tests/test_snapshots_labs.py --snapshot-update``, then look at them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from labs import protocol
from labs.protocol import Chart, LiveRun
from labs.mdp import CHARTS as MDP_CHARTS  # numpy only: the figures the mdp lab declares
from labs.registry import BY_NAME
from llmcore_tui.core.labrecorder import RunRecorder
from llmcore_tui.tui.screens import labs as labs_screen
from llmcore_tui.tui.app import LlmcoreApp
from tests.conftest import FIXED_NOW

MDP_RUN = "mdp-20260302-090000-snap"
GAE_RUN = "gae-20260302-091500-snap"

# mdp --toy, seed 0: the Bellman residual of each value-iteration sweep (gamma = 0.95)
MDP_RESIDUALS = [
    8.0, 6.84, 5.271, 4.39, 3.8, 2.75, 2.12, 1.854, 1.564, 1.397, 1.173, 0.9162, 0.6091, 0.53, 0.254, 0.2271,
    0.09823, 0.08469, 0.03744, 0.02959, 0.01335, 0.01004, 0.004619, 0.003361, 0.001578, 0.001121, 0.0005362,
    0.0003741, 0.000182, 0.000125, 6.181e-05, 4.185e-05, 2.101e-05, 1.404e-05, 7.144e-06, 4.719e-06, 2.431e-06,
    1.588e-06, 8.273e-07, 5.351e-07, 2.816e-07, 1.805e-07, 9.586e-08, 6.09e-08, 3.262e-08, 2.057e-08, 1.11e-08,
    6.948e-09, 3.776e-09, 2.348e-09, 1.284e-09, 7.938e-10, 4.366e-10, 2.685e-10, 1.484e-10, 9.08e-11]
MDP_SWEEP = {"columns": ["gamma", "horizon_1/(1-gamma)", "vi_sweeps", "V(start)", "P(end X)", "P(end a)",
                         "P(end b)", "expected_steps"],
             "rows": [[0.5, 2.0, 24, 0.3978, 0.0, 0.998, 0.002, 2.65], [0.7, 3.3, 34, 0.6005, 0.0, 0.979, 0.021, 2.77],
                      [0.8, 5.0, 43, 0.7665, 0.0, 0.274, 0.726, 10.22], [0.9, 10.0, 51, 2.4433, 0.012, 0.193, 0.795, 10.78],
                      [0.99, 100.0, 63, 7.6431, 0.012, 0.111, 0.877, 13.05],
                      [0.999, 1000.0, 215, 9.1617, 0.022, 0.022, 0.956, 21.77]]}
MDP_HEADLINE = {"vi_final_residual": 9.08e-11, "vi_sweeps": 56, "pi_iterations": 6, "policies_agree": True,
                "V_start": 4.4513, "smallest_gamma_going_to_far_exit": 0.8, "P(far exit) at largest gamma": 0.9561}

GAE_CHARTS = (
    Chart("GAE bias and variance vs lambda", table="gae_bias_variance", x="lambda", y=("bias", "variance"),
          reference=("bias_exact",), x_label="lambda", y_label="advantage error",
          look_for="Bias falls to 0 as lambda -> 1 while variance rises; the measured bias sits on the formula line."),
)
# gae --toy part 1, seed 0: 10,000 chain episodes, an imperfect critic (what the lab measured)
GAE_TABLE = {"columns": ["lambda", "bias", "bias_exact", "variance", "mse", "bias_perfect_critic",
                         "variance_perfect_critic"],
             "rows": [[0.0, 0.3254, 0.3253, 0.01, 0.1159, 0.0009, 0.01], [0.5, 0.1958, 0.1956, 0.0269, 0.0652, 0.0012, 0.021],
                      [0.9, 0.0612, 0.0606, 0.1086, 0.1124, 0.0024, 0.1045],
                      [0.95, 0.035, 0.0347, 0.1555, 0.1568, 0.0026, 0.1534], [1.0, 0.0035, 0.0, 0.2649, 0.2649, 0.0035, 0.2649]]}
GAE_HEADLINE = {"bias_lambda0": 0.3254, "bias_lambda1": 0.003458, "variance_lambda0": 0.009973,
                "variance_lambda1": 0.2649, "lowest_mse_lambda": 0.5}


def mdp_events() -> list[dict]:
    return [{"event": "start", "lab": "mdp", "config": {"world": "cliffgrid", "gamma": 0.95}, "total_steps": 7},
            {"event": "charts", "charts": [c.to_json() for c in MDP_CHARTS]},
            *({"event": "metric", "step": k, "values": {"vi/bellman_residual": r}}
              for k, r in enumerate(MDP_RESIDUALS, start=1)),
            {"event": "log", "text": "value iteration: residual 9.08e-11 after 56 sweeps (gamma=0.95)"},
            {"event": "table", "name": "gamma_sweep", **MDP_SWEEP},
            {"event": "summary", "headline": MDP_HEADLINE, "artifacts": []}]


def gae_events() -> list[dict]:
    return [{"event": "start", "lab": "gae", "config": {"chain_episodes": 10_000}, "total_steps": 100_000},
            {"event": "charts", "charts": [c.to_json() for c in GAE_CHARTS]},
            {"event": "table", "name": "gae_bias_variance", **GAE_TABLE},
            {"event": "log", "text": "GAE on the chain: bias 0.325 -> 0.003, variance 0.010 -> 0.265 "
                                     "as lambda goes 0.0 -> 1.0; lowest MSE at lambda=0.5"},
            {"event": "summary", "headline": GAE_HEADLINE, "artifacts": []}]


RECORDED = {MDP_RUN: ("mdp", 1, mdp_events), GAE_RUN: ("gae", 4, gae_events)}
# the labs listed beside the charts: fixed, so that a lab added to the course leaves these pictures alone
LISTED = ("mdp", "td_learning", "advantage", "gae", "sft", "dpo", "ppo", "grpo", "rlhf", "cql", "vlm", "parallel",
          "attention", "lora")


def replay(run_id: str) -> LiveRun:
    """A canned run's events folded into a LiveRun, as the runner folds a lab's stream."""
    lab, _, events = RECORDED[run_id]
    run = LiveRun(lab)
    for event in events():
        run.feed(json.dumps(event))
    return run


def record_run(course, run_id: str, started_ts: float = FIXED_NOW - 3600, events_of: str | None = None) -> None:
    """Store a canned run as the runner stores a real one (``RunRecorder``), its times pinned."""
    lab, day, events = RECORDED[events_of or run_id]
    live = LiveRun(lab)
    recorder = RunRecorder(course.store.reopen(), run_id, live, lambda detail: "\n".join(live.logs))
    recorder.insert(lab, day, "toy", {}, Path(f"/data/llmcore-output/labs/{run_id}"), 0)
    for raw in events():
        event = protocol.decode(raw)
        live.apply(event)
        recorder.record(event)
    recorder.finish("succeeded", 0, None)
    recorder.close()
    with course.store.transaction() as conn:
        conn.execute("UPDATE lab_runs SET started_ts = ?, ended_ts = ? WHERE id = ?",
                     (started_ts, started_ts + 10, run_id))


@pytest.fixture
def labs_app(course, monkeypatch) -> LlmcoreApp:
    monkeypatch.setenv("TZ", "UTC")  # the runs list shows local start times
    time.tzset()
    for run_id in RECORDED:
        record_run(course, run_id)
    monkeypatch.setattr(labs_screen, "LABS", tuple(BY_NAME[name] for name in LISTED))
    course.store.created = False  # the "new database created at <tmp path>" toast would vary per run
    app = LlmcoreApp(course)
    app.theme = "textual-dark"
    yield app
    monkeypatch.delenv("TZ")
    time.tzset()


GAE_ROW = ["down"] * 3  # mdp (day 1, the course's day) first, then td_learning, advantage, gae


def test_mdp_residual_on_a_log_scale(snap_compare, labs_app):
    assert snap_compare(labs_app, press=["l"], terminal_size=(120, 40))


def test_mdp_horizon_against_its_formula(snap_compare, labs_app):
    assert snap_compare(labs_app, press=["l", "n"], terminal_size=(120, 40))


def test_gae_bias_and_variance_against_the_exact_bias(snap_compare, labs_app):
    assert snap_compare(labs_app, press=["l", *GAE_ROW], terminal_size=(120, 40))


def test_mdp_charts_at_80x24(snap_compare, labs_app):
    assert snap_compare(labs_app, press=["l"], terminal_size=(80, 24))


def test_both_mdp_charts_side_by_side_on_a_wide_terminal(snap_compare, labs_app):
    assert snap_compare(labs_app, press=["l"], terminal_size=(160, 48))


def test_gae_legend_above_the_plot_at_80x24(snap_compare, labs_app):
    """The legend is a line of its own (wrapped when narrow), so λ = 0's bias of 0.325 stays in view."""
    assert snap_compare(labs_app, press=["l", *GAE_ROW], terminal_size=(80, 24))


def test_mdp_horizon_at_80x24(snap_compare, labs_app):
    assert snap_compare(labs_app, press=["l", "n"], terminal_size=(80, 24))


def test_mdp_exit_choice_against_the_horizon(snap_compare, labs_app):
    """Which exit wins, per horizon on a log axis: the jump from the near exit to the far one
    (between gamma 0.7 and 0.8) has room, and gamma 0.99 and 0.999 are apart."""
    assert snap_compare(labs_app, press=["l", "n", "n"], terminal_size=(120, 40))
