"""The td_learning lab: SARSA vs Q-learning on the cliff walk, TD(0) on the random walk."""

from __future__ import annotations

import io
import random

import gymnasium as gym
import numpy as np
import pytest

from claims import Claim, LabResult, check_claims
from labs import td_learning as td
from labs._runtime import EXIT_USAGE, main, run_in_process

CHEAP = ["runs=1", "episodes=100", "rw_runs=3", "rw_episodes=10", "mc_alphas=0.02"]
RMS_UNTRAINED = float(np.sqrt(np.mean((0.5 - td.RW_TRUE) ** 2)))  # V = 0.5 everywhere, before any episode

CLAIMS = [
    # Figure 6.4: SARSA's online return beats Q-learning's (S&B: about -25 vs about -50)
    Claim("SARSA - Q-learning online return, last 100 episodes",
          lambda r: r.h["sarsa_online_return_last100"] - r.h["qlearning_online_return_last100"], ">", 10),
    Claim("|SARSA online return + 25| (book: about -25)",
          lambda r: abs(r.h["sarsa_online_return_last100"] + 25), "<", 10, null=None),
    Claim("|Q-learning online return + 50| (book: about -50)",
          lambda r: abs(r.h["qlearning_online_return_last100"] + 50), "<", 20, null=None),
    # ... while Q-learning's greedy policy is the optimal cliff-edge path and SARSA's is longer
    Claim("|Q-learning greedy return + 13| (median run)",
          lambda r: abs(r.h["qlearning_greedy_return"] + 13), "<", 0.5, null=None),
    Claim("share of Q-learning runs off the optimal path",
          lambda r: 1 - r.h["qlearning_optimal_path_fraction"], "<", 0.1, null=None),
    Claim("SARSA greedy return (median run)", "sarsa_greedy_return", "<", -14, null=-13),
    # TD(0) converges towards 1/6..5/6, and faster than constant-alpha MC
    Claim("TD(0) RMS error after the last episode (untrained: 0.236)", "td0_rms_final", "<", 0.1,
          null=RMS_UNTRAINED),
    Claim("MC - TD(0) final RMS error", lambda r: r.h["mc_rms_final"] - r.h["td0_rms_final"], ">", 0),
]


@pytest.mark.lab
def test_toy_run_reproduces_example_6_6(tmp_path):
    events = run_in_process("td_learning", toy=True, out_dir=tmp_path)
    check_claims(CLAIMS, LabResult.of(events))

    # Figure 6.4: one point per episode for each method, at the same steps so they share a chart
    result = LabResult.of(events)
    sarsa, qlearn = result.metrics["returns/sarsa"], result.metrics["returns/q_learning"]
    assert [s for s, _ in sarsa] == [s for s, _ in qlearn] == list(range(1, 501))
    assert all(-100 * 500 < v <= -13 for _, v in sarsa + qlearn)
    tables = {e["name"]: e for e in events if e["event"] == "table"}
    assert {"sarsa_path", "qlearning_path", "cliff_walk", "random_walk_rms"} <= tables.keys()
    q_path = tables["qlearning_path"]["rows"]
    assert q_path[2] == [">"] * 11 + ["v"]  # straight along the cliff edge, then down to G
    assert all(cell == "." for row in q_path[:2] for cell in row)
    assert [row[0] for row in tables["random_walk_rms"]["rows"]].count("TD(0)") >= 3


def test_random_walk_episodes_and_true_values():
    rng = random.Random(0)
    rights = []
    for _ in range(20_000):
        states, reward = td.random_walk_episode(rng)
        assert states[0] == 2 and all(abs(a - b) == 1 for a, b in zip(states, states[1:]))
        assert (reward == 1.0) == (states[-1] == 4)
        rights.append(reward)
    assert np.mean(rights) == pytest.approx(0.5, abs=0.02)  # V(C) = 1/2
    np.testing.assert_allclose(td.RW_TRUE, [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])


def test_q_learning_greedy_path_is_optimal_after_training():
    env = gym.make(td.ENV_ID)
    env.reset(seed=0)
    cfg = td.Config(episodes=300)
    Q, online = td.train(env, "qlearning", cfg, td.make_rng(0, 9))
    ret, path, reached = td.greedy_path(env, Q, cfg.greedy_max_steps)
    assert reached and ret == -13 and len(path) == 14
    assert td.rows_above_cliff(path) == 1
    assert online[0] < online[-1]


def test_epsilon_greedy_breaks_ties_at_random_and_explores():
    rng = random.Random(1)
    picks = [td.epsilon_greedy([0.0, 0.0, -1.0, 0.0], 0.0, rng) for _ in range(3000)]
    assert set(picks) == {0, 1, 3}
    picks = [td.epsilon_greedy([5.0, 0.0, 0.0, 0.0], 0.2, rng) for _ in range(20_000)]
    assert np.mean(np.array(picks) != 0) == pytest.approx(0.2 * 3 / 4, abs=0.01)


def test_deterministic_for_a_seed(tmp_path):
    a = run_in_process("td_learning", toy=True, seed=5, assignments=CHEAP, out_dir=tmp_path / "a")
    b = run_in_process("td_learning", toy=True, seed=5, assignments=CHEAP, out_dir=tmp_path / "b")
    c = run_in_process("td_learning", toy=True, seed=6, assignments=CHEAP, out_dir=tmp_path / "c")
    assert a[-1]["headline"] == b[-1]["headline"]
    assert a[-1]["headline"] != c[-1]["headline"]


@pytest.mark.parametrize("bad", ["epsilon=1.5", "alpha=0", "runs=zero", "episodes=50",
                                 "td_alphas=0.1,2", "greedy_max_steps=5", "lambda=1", "td_alphas=",
                                 "rw_runs=0", "gamma=0"])
def test_bad_settings_are_usage_errors(bad, tmp_path):
    assert main(["td_learning", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE


def test_limits_name_the_field(capsys):
    assert main(["td_learning", "--toy", "--set", "rw_episodes=0"], io.StringIO()) == EXIT_USAGE
    assert "rw_episodes=0: must be >= 1" in capsys.readouterr().err
    assert td.LIMITS["mc_alphas"].may_be_empty and not td.LIMITS["td_alphas"].may_be_empty
