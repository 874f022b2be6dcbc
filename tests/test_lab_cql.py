"""The cql lab: naive offline DQN vs behaviour cloning vs CQL on a fixed cliff-walk data set."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import cql
from labs._runtime import EXIT_USAGE, main, run_in_process


CLAIMS = [
    Claim("CQL greedy return - naive offline DQN's", lambda r: r.h["cql_return"] - r.h["dqn_return"], ">", 40),
    Claim("CQL greedy return - behaviour cloning's", lambda r: r.h["cql_return"] - r.h["bc_return"], ">", 2),
    Claim("optimal return (Q*'s greedy rollout) - CQL greedy return",
          lambda r: r.h["optimal_return"] - r.h["cql_return"], "<", 2, null=None),
    Claim("mean Q on unseen actions, DQN - CQL", lambda r: r.h["dqn_q_ood"] - r.h["cql_q_ood"], ">", 3),
    Claim("CQL: best unseen action's Q - best seen action's (mean over states)", "cql_ood_gap", "<", -2),
]


@pytest.mark.lab
def test_toy_run_cql_beats_naive_dqn(tmp_path):
    events = run_in_process("cql", toy=True, out_dir=tmp_path)
    head = events[-1]["headline"]
    check_claims(CLAIMS, LabResult.of(events))
    assert head["coverage_fraction"] < 0.5  # the data set leaves most state-action pairs unseen
    assert head["optimal_return"] == -13.0  # Q*'s greedy policy walks the cliff edge: 13 steps of -1
    assert head["cql_q_ood"] < head["cql_q_data"]  # conservative: unseen actions below the data's values
    tables = {e["name"]: e for e in events if e["event"] == "table"}
    assert {"offline_rl", "alpha_sweep", "bc_path", "dqn_path", "cql_path"} <= tables.keys()
    assert [row[0] for row in tables["alpha_sweep"]["rows"]][0] == 0.0  # alpha = 0 is naive DQN
    metrics = [e["values"] for e in events if e["event"] == "metric"]
    assert any("charts/q_ood_dqn" in m for m in metrics)
    assert (tmp_path / "q_tables.npz").exists()


@pytest.mark.parametrize("bad", ["gamma=1", "epsilon=1.5", "alpha_sweep=-1", "target_every=0", "eval_max_steps=5",
                                 "batch_size=0"])
def test_bad_settings_are_usage_errors(bad, tmp_path):
    assert main(["cql", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE


def test_optimal_return_comes_from_value_iteration_and_a_rollout():
    q = cql.true_q(0.99)
    ret, path, reached = cql.greedy_return(q, 100)
    assert reached and ret == -13.0 and len(path) == 14
    # a model that only knows a longer safe route gives a different, worse answer
    q_safe = np.zeros_like(q)
    for s in range(cql.N_STATES):
        q_safe[s, cql.route_action(s, safe=True)] = 1.0
    assert cql.greedy_return(q_safe, 100)[0] == -17.0


def test_cql_penalty_hand_example():
    q = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    actions = torch.tensor([1, 0])
    expected = ((math.log(math.e + math.e**2) - 2.0) + (math.log(2.0) - 0.0)) / 2
    assert cql.cql_penalty(q, actions).item() == pytest.approx(expected, abs=1e-6)
    # zero only in the limit where the data's action dominates; never negative
    assert cql.cql_penalty(torch.tensor([[0.0, 50.0]]), torch.tensor([1])).item() == pytest.approx(0.0, abs=1e-6)
    assert cql.cql_penalty(torch.randn(64, 4), torch.randint(4, (64,))).item() > 0


def test_behaviour_routes_reach_the_goal():
    for safe, length in ((True, 17), (False, 13)):
        s, steps = cql.START, 0
        while s != 47:
            r, c = divmod(s, cql.COLS)
            dr, dc = ((-1, 0), (0, 1), (1, 0), (0, -1))[cql.route_action(s, safe)]
            s = (r + dr) * cql.COLS + (c + dc)
            steps += 1
            assert steps <= length and not (r + dr == 3 and 0 < c + dc < 11)  # never into the cliff
        assert steps == length


def test_true_q_and_ood_gaps():
    q = cql.true_q(0.99)
    assert q[cql.START].max() == pytest.approx(-(1 - 0.99**13) / 0.01, abs=1e-6)  # 13 steps of -1
    table = np.zeros((cql.N_STATES, cql.N_ACTIONS))
    table[0] = [1.0, 5.0, 0.0, 0.0]
    covered = np.zeros_like(table, dtype=bool)
    covered[0, 0] = True
    ood = covered.any(axis=1)[:, None] & ~covered
    assert cql.ood_gaps(table, covered, ood).tolist() == [4.0]
