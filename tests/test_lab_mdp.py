"""The mdp lab: value/policy iteration on the slippery cliff grid, and its gamma sweep."""

from __future__ import annotations

import io

import numpy as np
import pytest

from claims import Claim, LabResult, check_claims
from labs import mdp
from labs._runtime import EXIT_USAGE, main, run_in_process

CLAIMS = [
    Claim("value iteration's final Bellman residual", "vi_final_residual", "<", 1e-8, null=None),
    Claim("max |V_pi - V_vi| after policy iteration", "max_abs_V_pi_minus_V_vi", "<", 1e-6, null=None),
    Claim("value-iteration sweeps - policy-iteration steps",
          lambda r: r.h["vi_sweeps"] - r.h["pi_iterations"], ">", 0),
    Claim("smallest gamma that walks to the far exit", "smallest_gamma_going_to_far_exit", ">", 0.5, null=0.0),
    Claim("P(far exit) at the largest gamma", "P(far exit) at largest gamma", ">", 0.7, null=0.0),
]


def _by_kind(events, kind):
    return [e for e in events if e["event"] == kind]


@pytest.mark.lab
def test_toy_run_converges_and_shows_the_horizon(tmp_path):
    events = run_in_process("mdp", toy=True, out_dir=tmp_path)
    assert events[0]["event"] == "start" and events[-1]["event"] == "summary"
    head = events[-1]["headline"]
    check_claims(CLAIMS, LabResult.of(events))
    # a short horizon settles for the near +1 exit; a long one walks to the far +10 exit
    assert head["smallest_gamma_going_to_far_exit"] < 0.99

    residuals = [e["values"]["vi/bellman_residual"] for e in _by_kind(events, "metric")
                 if "vi/bellman_residual" in e["values"]]
    assert residuals[-1] < 1e-8 and residuals[0] > 1.0
    tables = {t["name"]: t for t in _by_kind(events, "table")}
    assert {"greedy_policy", "values", "gamma_sweep"} <= tables.keys()
    grid = tables["greedy_policy"]["rows"]
    assert len(grid) == len(mdp.CLIFFGRID) and all(len(r) == len(mdp.CLIFFGRID[0]) for r in grid)
    assert all(cell in "^>v<abX#" for row in grid for cell in row)
    sweep = tables["gamma_sweep"]["rows"]
    steps = [row[-1] for row in sweep]
    assert steps[-1] > steps[0]  # the far-sighted policy takes the longer walk
    assert (tmp_path / "events.jsonl").exists()


def test_value_iteration_matches_policy_evaluation_of_its_greedy_policy():
    world = mdp.make_cliffgrid(slip=0.2)
    V, residuals = mdp.value_iteration(world, gamma=0.9, tol=1e-12, max_sweeps=10_000)
    assert residuals[-1] < 1e-12
    assert all(b <= a * 0.9 + 1e-12 for a, b in zip(residuals, residuals[1:]))  # a gamma-contraction
    pi = mdp.greedy(mdp.q_values(world, V, 0.9))
    assert np.allclose(mdp.evaluate_policy(world, pi, 0.9), V, atol=1e-9)


def test_transition_table_is_a_distribution_and_terminals_have_no_value():
    for world in (mdp.make_cliffgrid(0.2), mdp.make_frozenlake("FrozenLake-v1")):
        live = ~world.term
        assert np.allclose(world.P[live].sum(axis=-1), 1.0)
        V, _ = mdp.value_iteration(world, 0.95, 1e-10, 10_000)
        assert np.all(V[world.term] == 0.0)


def test_frozenlake_optimal_success_probability():
    # the known answer for the slippery 4x4 lake: the best policy reaches the goal ~82% of the time
    world = mdp.make_frozenlake("FrozenLake-v1")
    V, _ = mdp.value_iteration(world, 0.999, 1e-10, 100_000)
    ends, _ = mdp.outcome_from_start(world, mdp.greedy(mdp.q_values(world, V, 0.999)))
    assert 0.8 < ends["G"] < 0.85


def test_outcome_from_start_is_exact_on_a_deterministic_grid():
    world = mdp.make_cliffgrid(slip=0.0)
    V, _ = mdp.value_iteration(world, 0.5, 1e-10, 10_000)
    ends, steps = mdp.outcome_from_start(world, mdp.greedy(mdp.q_values(world, V, 0.5)))
    assert ends["a"] == pytest.approx(1.0) and steps == pytest.approx(2.0)  # up, then right to the +1


def test_deterministic_for_a_seed(tmp_path):
    args = ["gamma_sweep=0.5,0.9"]
    a = run_in_process("mdp", toy=True, seed=3, assignments=args, out_dir=tmp_path / "a")
    b = run_in_process("mdp", toy=True, seed=3, assignments=args, out_dir=tmp_path / "b")
    assert a[-1]["headline"] == b[-1]["headline"]


@pytest.mark.parametrize("bad", ["gamma=1.0", "gamma=abc", "slip=1.5", "world=Taxi-v3", "tol=0.1", "nope=1"])
def test_bad_settings_are_usage_errors(bad, tmp_path):
    assert main(["mdp", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE


def test_threads_flag_reaches_the_config_and_the_environment():
    from labs import _runtime

    cfg = _runtime.make_config(mdp, toy=True, seed=None, device=None, threads=2)
    assert not hasattr(cfg, "threads")  # mdp has no threads field: the flag only sets the environment
    assert _runtime.torch_threads(1) == 1
    assert main(["mdp", "--toy", "--threads", "0"], io.StringIO()) == EXIT_USAGE


def test_limits_refuse_an_empty_sweep_and_name_the_field(capsys):
    from labs import _runtime

    assert main(["mdp", "--toy", "--set", "gamma_sweep="], io.StringIO()) == EXIT_USAGE
    assert "gamma_sweep: needs at least one value" in capsys.readouterr().err
    for bad, field in [("gamma_sweep=0.5,1.0", "gamma_sweep=1.0"), ("slip=1", "slip=1.0"), ("max_sweeps=0", "max_sweeps=0")]:
        assert main(["mdp", "--toy", "--set", bad], io.StringIO()) == EXIT_USAGE
        assert field in capsys.readouterr().err
    limits = {"gamma": _runtime.Range(0, 1, low_open=True), "steps": _runtime.Range(1)}
    assert limits["gamma"].problem(0.0) == "must be > 0"
    assert limits["gamma"].problem(1.0) is None
    assert limits["steps"].problem(0) == "must be >= 1"
    assert _runtime.Range(may_be_empty=True).problem(True) is None  # booleans are not numbers here
