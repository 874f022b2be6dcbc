"""The advantage lab: four return signals for the policy gradient, their variance and learning speed."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import advantage as adv
from labs._runtime import EXIT_USAGE, main, run_in_process

CHEAP = ["iterations=2", "var_batches=3", "fit_episodes=2", "fit_steps=5", "max_episode_steps=50",
         "critic_steps=2"]


def _var(name: str, where: str):
    return lambda r: next(row[f"var_{where}"] for row in r.tables["return_signals"] if row["signal"] == name)


CLAIMS = [
    # trace Cov[g] ratios: 1 is what a signal with no variance reduction would give
    Claim("var(total) / var(advantage), initial policy", "variance_ratio_total_over_advantage", ">", 1.5, null=1.0),
    Claim("var(total) / var(advantage), trained policy", "variance_ratio_trained_policy", ">", 1.5, null=1.0),
    Claim("var(total) / var(reward_to_go), initial policy: causality alone",
          "variance_ratio_total_over_reward_to_go", ">", 1.1, null=1.0),
    Claim("var(reward_to_go) / var(advantage), initial policy",
          lambda r: _var("reward_to_go", "initial")(r) / _var("advantage", "initial")(r), ">", 1.1, null=1.0),
    Claim("var(total) / var(baseline), trained policy",
          lambda r: _var("total", "trained")(r) / _var("baseline", "trained")(r), ">", 1.1, null=1.0),
    # the same initial weights, the same episodes' seeds: the advantage signal learns faster
    Claim("return of the last 10 iterations, advantage - total",
          lambda r: r.h["return_last10_advantage"] - r.h["return_last10_total"], ">", 10),
    Claim("return of the last 10 iterations with the advantage signal - the initial policy's return",
          lambda r: r.h["return_last10_advantage"] - r.h["return_initial_policy"], ">", 60),
]


@pytest.mark.lab
def test_toy_run_shows_variance_reduction_and_faster_learning(tmp_path):
    events = run_in_process("advantage", toy=True, out_dir=tmp_path)
    check_claims(CLAIMS, LabResult.of(events))

    table = next(e for e in events if e["event"] == "table" and e["name"] == "return_signals")
    rows = {row[0]: dict(zip(table["columns"], row)) for row in table["rows"]}
    assert list(rows) == list(adv.SIGNALS)
    for name in adv.SIGNALS:
        curve = [e["values"][f"charts/episodic_return_{name}"] for e in events if e["event"] == "metric"
                 and f"charts/episodic_return_{name}" in e["values"]]
        assert len(curve) == 30 and all(0 < r <= 200 for r in curve)


def _episode(rewards, terminated=True, obs_dim=4):
    T = len(rewards)
    return {"obs": torch.randn(T, obs_dim), "actions": torch.randint(0, 2, (T,)),
            "rewards": np.asarray(rewards, dtype=np.float64), "terminated": terminated,
            "final_obs": torch.randn(obs_dim)}


def test_signals_on_a_hand_example():
    torch.manual_seed(0)
    critic = adv.mlp(4, 8, 1)
    torch.nn.init.zeros_(critic[2].weight)
    torch.nn.init.constant_(critic[2].bias, 0.5)  # V(s) = 0.5 everywhere
    ep = _episode([1.0, 1.0, 1.0])
    psi = adv.signals([ep], critic, gamma=0.5, lam=1.0)
    np.testing.assert_allclose(psi["reward_to_go"], [1.75, 1.5, 1.0])
    np.testing.assert_allclose(psi["total"], [1.75, 1.75, 1.75])
    np.testing.assert_allclose(psi["baseline"], [1.25, 1.0, 0.5])
    np.testing.assert_allclose(psi["advantage"], psi["baseline"], atol=1e-6)  # GAE(1) on a finished episode
    td = adv.signals([ep], critic, gamma=0.5, lam=0.0)["advantage"]
    np.testing.assert_allclose(td, [1 + 0.25 - 0.5, 1 + 0.25 - 0.5, 1 - 0.5], atol=1e-6)  # one-step TD errors
    cut = adv.signals([_episode([1.0, 1.0, 1.0], terminated=False)], critic, gamma=0.5, lam=0.0)["advantage"]
    np.testing.assert_allclose(cut[-1], 1 + 0.5 * 0.5 - 0.5, atol=1e-6)  # a time-limit cut bootstraps


def test_policy_loss_gradient_is_the_score_function_estimator():
    torch.manual_seed(1)
    policy = adv.mlp(4, 8, 2)
    eps = [_episode([1.0] * 4), _episode([1.0] * 2)]
    psi = torch.randn(6)
    g = torch.autograd.grad(-adv.policy_loss(policy, eps, psi), list(policy.parameters()))
    expected = [torch.zeros_like(p) for p in policy.parameters()]
    obs = torch.cat([e["obs"] for e in eps])
    acts = torch.cat([e["actions"] for e in eps])
    for t in range(6):
        logp = torch.log_softmax(policy(obs[t]), -1)[acts[t]]
        for acc, gi in zip(expected, torch.autograd.grad(logp, list(policy.parameters()))):
            acc += gi * psi[t] / 2
    for a, b in zip(g, expected):
        torch.testing.assert_close(a, b)


def test_sampler_returns_exact_whole_episodes():
    torch.manual_seed(0)
    sampler = adv.Sampler("CartPole-v1", 4, seed=3, max_episode_steps=30)
    policy = adv.mlp(4, 8, 2)
    eps = sampler.episodes(policy, 6)  # more than the pool: two rounds
    sampler.close()
    assert len(eps) == 6
    for ep in eps:
        T = len(ep["rewards"])
        assert ep["obs"].shape == (T, 4) and ep["actions"].shape == (T,)
        assert np.all(ep["rewards"] == 1.0) and 1 <= T <= 30
        assert ep["terminated"] or T == 30
        assert np.all(np.abs(ep["obs"][:, 2].numpy()) <= 0.2095)  # every kept state is a live one


def test_first_reaching_uses_a_running_mean():
    assert adv.first_reaching([0, 0, 10, 10, 10, 10, 10], 10, window=3) == 5
    assert adv.first_reaching([50] * 4, 10, window=5) is None


def test_deterministic_for_a_seed(tmp_path):
    a = run_in_process("advantage", toy=True, seed=2, assignments=CHEAP, out_dir=tmp_path / "a")
    b = run_in_process("advantage", toy=True, seed=2, assignments=CHEAP, out_dir=tmp_path / "b")
    assert a[-1]["headline"] == b[-1]["headline"]


@pytest.mark.parametrize("bad", ["gamma=1.5", "gae_lambda=-0.1", "var_batches=1", "iterations=0",
                                 "policy_lr=0", "hidden=two", "signal=total", "fit_episodes=0",
                                 "target_return=0"])
def test_bad_settings_are_usage_errors(bad, tmp_path):
    assert main(["advantage", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE


def test_limits_name_the_field(capsys):
    assert main(["advantage", "--toy", "--set", "var_episodes=0"], io.StringIO()) == EXIT_USAGE
    assert "var_episodes=0: must be >= 1" in capsys.readouterr().err
