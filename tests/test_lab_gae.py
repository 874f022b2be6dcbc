"""The gae lab: compute_gae itself, GAE's bias/variance trade-off, and PPO on CartPole."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import gae
from labs._runtime import EXIT_USAGE, main, run_in_process
from labs.gae import compute_gae

CHEAP = ["chain_episodes=500", "ppo_lambdas=0.8", "total_timesteps=1024", "eval_every=512"]
TOY_BUDGET = gae.TOY.get("total_timesteps", gae.Config.total_timesteps)


def _chain(column):
    return lambda r: [row[column] for row in sorted(r.tables["gae_bias_variance"], key=lambda row: row["lambda"])]


def _smallest_step(column, sign):
    """The smallest change of ``column`` between neighbouring lambdas, signed so that > 0 is the claimed trend."""
    return lambda r: min(sign * (b - a) for a, b in zip(_chain(column)(r), _chain(column)(r)[1:]))


CLAIMS = [
    # part 1: the two closed forms, and the trade-off against known truth
    Claim("max |GAE(0) - one-step TD error|", "max_abs_gae0_minus_td_error", "<", 1e-9, null=None),
    Claim("max |GAE(1) - (MC return - V)|", "max_abs_gae1_minus_mc_return_minus_v", "<", 1e-9, null=None),
    Claim("log10 bias(lambda=0) / bias(lambda=1), imperfect critic (0.7: five times)",
          lambda r: np.log10(r.h["bias_lambda0"] / r.h["bias_lambda1"]), ">", 0.7),
    Claim("variance(lambda=1) / variance(lambda=0)",
          lambda r: r.h["variance_lambda1"] / r.h["variance_lambda0"], ">", 5, null=1.0),
    Claim("smallest fall in bias from one lambda to the next", _smallest_step("bias", -1), ">", 0),
    Claim("smallest rise in variance from one lambda to the next", _smallest_step("variance", 1), ">", 0),
    Claim("max |sampled bias - exact bias| over lambdas", lambda r: max(
        abs(a - b) for a, b in zip(_chain("bias")(r), _chain("bias_exact")(r))), "<", 0.02, null=None),
    Claim("max bias with a perfect critic", lambda r: max(_chain("bias_perfect_critic")(r)), "<", 0.02, null=None),
    Claim("lambda with the lowest MSE, above 0", "lowest_mse_lambda", ">", 0, null=0.0),
    Claim("lambda with the lowest MSE, below 1", "lowest_mse_lambda", "<", 1, null=1.0),
    # part 2: PPO solves CartPole-v1 as gymnasium defines it: mean >= 475 over 100 episodes
    Claim("500 - eval100 greedy mean return of the final policy",
          lambda r: 500 - r.h["eval100_greedy_mean_return"], "<", 25, null=None),
    Claim("eval100 sampled mean return, final - untrained (the baseline, measured at step 0)",
          lambda r: r.h["eval100_sampled_mean_return"] - r.h["eval100_sampled_mean_return_untrained"], ">", 300),
    Claim("steps to the first evaluation >= 475", "ppo_steps_to_solve", "<", 0.8 * TOY_BUDGET, null=TOY_BUDGET),
]


# -- compute_gae ------------------------------------------------------------------------------

def test_hand_computed_monte_carlo_returns():
    rewards = np.ones(5)
    values = np.zeros(5)
    dones = np.array([0, 0, 0, 0, 1.0])
    adv, ret = compute_gae(rewards, values, dones, 0.0, gamma=0.9, lam=1.0)
    np.testing.assert_allclose(adv, [4.0951, 3.439, 2.71, 1.9, 1.0], atol=1e-12)
    np.testing.assert_allclose(ret, adv)  # V = 0: the lambda-return is the advantage


def test_episode_boundary_stops_the_sum():
    adv, _ = compute_gae(np.ones(5), np.zeros(5), np.array([0, 0, 1, 0, 0.0]), 0.0, gamma=1.0, lam=1.0)
    np.testing.assert_allclose(adv, [3, 2, 1, 2, 1])


def test_last_value_bootstraps_an_unfinished_rollout():
    adv, _ = compute_gae(np.zeros(3), np.zeros(3), np.zeros(3), 10.0, gamma=0.5, lam=1.0)
    np.testing.assert_allclose(adv, [1.25, 2.5, 5.0])


def _random_rollout(rng, T=40, n=3):
    rewards = rng.normal(size=(T, n))
    values = rng.normal(size=(T, n))
    dones = (rng.random((T, n)) < 0.15).astype(float)
    last = rng.normal(size=n)
    return rewards, values, dones, last


def test_lambda0_is_the_one_step_td_error():
    r, v, d, last = _random_rollout(np.random.default_rng(0))
    adv, ret = compute_gae(r, v, d, last, gamma=0.97, lam=0.0)
    next_v = np.concatenate([v[1:], last[None]])
    np.testing.assert_allclose(adv, r + 0.97 * (1 - d) * next_v - v, atol=1e-12)
    np.testing.assert_allclose(ret, r + 0.97 * (1 - d) * next_v, atol=1e-12)


def test_lambda1_is_the_monte_carlo_return_minus_v():
    r, v, d, last = _random_rollout(np.random.default_rng(1))
    T, n = r.shape
    gamma = 0.95
    G = np.zeros_like(r)
    for j in range(n):  # the discounted return, written forwards, bootstrapped at the cut
        for t in range(T):
            total, k = 0.0, t
            while True:
                total += gamma ** (k - t) * r[k, j]
                if d[k, j]:
                    break
                if k == T - 1:
                    total += gamma ** (T - t) * last[j]
                    break
                k += 1
            G[t, j] = total
    adv, ret = compute_gae(r, v, d, last, gamma=gamma, lam=1.0)
    np.testing.assert_allclose(adv, G - v, atol=1e-10)
    np.testing.assert_allclose(ret, G, atol=1e-10)


def test_gae_is_the_discounted_sum_of_td_errors():
    r, v, d, last = _random_rollout(np.random.default_rng(2), T=12, n=1)
    r, v, d, last = r[:, 0], v[:, 0], np.zeros(12), last[0]
    gamma, lam = 0.9, 0.7
    delta = r + gamma * np.concatenate([v[1:], [last]]) - v
    expected = [sum((gamma * lam) ** (k - t) * delta[k] for k in range(t, 12)) for t in range(12)]
    adv, _ = compute_gae(r, v, d, last, gamma, lam)
    np.testing.assert_allclose(adv, expected, atol=1e-12)


def test_shapes_and_torch_numpy_agree():
    r, v, d, last = _random_rollout(np.random.default_rng(3), T=32, n=8)
    adv_np, ret_np = compute_gae(r, v, d, last, 0.98, 0.8)
    assert adv_np.shape == ret_np.shape == (32, 8)
    t = [torch.tensor(x, dtype=torch.float64) for x in (r, v, d, last)]
    adv_t, ret_t = compute_gae(*t, 0.98, 0.8)
    assert isinstance(adv_t, torch.Tensor) and adv_t.shape == (32, 8)
    np.testing.assert_allclose(adv_t.numpy(), adv_np, atol=1e-12)
    np.testing.assert_allclose(ret_t.numpy(), ret_np, atol=1e-12)
    adv1, _ = compute_gae(r[:, 0], v[:, 0], d[:, 0], last[0], 0.98, 0.8)  # (T,) works too
    np.testing.assert_allclose(adv1, adv_np[:, 0], atol=1e-12)
    adv_int, _ = compute_gae(np.ones(4, dtype=int), np.zeros(4), np.zeros(4), 0.0, 1.0, 1.0)
    np.testing.assert_allclose(adv_int, [4, 3, 2, 1])  # integer rewards do not truncate


# -- the chain with known values -----------------------------------------------------------------

def test_chain_truth_satisfies_bellman():
    V, Q = gae.chain_truth(7, 0.9)
    np.testing.assert_allclose(V, Q.mean(axis=1), atol=1e-12)  # V(s) = sum_a pi(a|s) Q(s, a)
    np.testing.assert_allclose(V, -V[::-1], atol=1e-12)  # symmetric walk, antisymmetric rewards
    V1, _ = gae.chain_truth(5, 1.0)
    np.testing.assert_allclose(V1, np.linspace(-1, 1, 7)[1:-1], atol=1e-12)  # gamma = 1: linear


def test_sampled_chain_episodes_are_well_formed():
    data = gae.sample_chain(5, 200, 0.0, np.random.default_rng(0))
    mask, dones, rewards = data["mask"], data["dones"], data["rewards"]
    ends = (dones == 1) & mask
    assert np.all(ends.sum(axis=0) == 1)  # every episode ends exactly once
    assert np.all(np.abs(rewards[ends]) == 1.0) and np.all(rewards[~ends] == 0.0)
    assert np.all(data["states"][0] == 2)


# -- PPO's environment bookkeeping -------------------------------------------------------------

def test_episode_accounting_matches_single_env_replays():
    """SAME_STEP vector envs + EpisodeTracker give the same episodes as plain envs stepped alone."""
    n, seed, steps = 4, 7, 300
    actions = np.random.default_rng(0).integers(0, 2, size=(steps, n))
    envs = gae.make_envs("CartPole-v1", n, seed)
    envs.reset(seed=seed)
    tracker = gae.EpisodeTracker(n)
    for t in range(steps):
        _, reward, terminated, truncated, _ = envs.step(actions[t])
        tracker.update(reward, terminated | truncated)
    envs.close()
    assert len(tracker.returns) > 10
    assert tracker.returns == [float(x) for x in tracker.lengths]  # CartPole pays 1 per step

    for i in range(n):
        env = gym.make("CartPole-v1")
        env.reset(seed=seed + i)
        expected, length = [], 0
        for t in range(steps):
            _, _, terminated, truncated, _ = env.step(int(actions[t, i]))
            length += 1
            if terminated or truncated:
                expected.append(length)
                env.reset()
                length = 0
        got = [L for L, e in zip(tracker.lengths, tracker.env_ids) if e == i]
        assert got == expected


def test_next_step_autoreset_would_add_a_phantom_step():
    """Why the lab picks SAME_STEP: gymnasium's default inserts a reset step with reward 0."""
    envs = gym.make_vec("CartPole-v1", num_envs=1, vectorization_mode="sync")
    envs.reset(seed=0)
    tracker = gae.EpisodeTracker(1)
    rewards = []
    while len(tracker.returns) < 2:
        _, reward, terminated, truncated, _ = envs.step(np.array([0]))
        rewards.append(float(reward[0]))
        tracker.update(reward, terminated | truncated)
    envs.close()
    assert 0.0 in rewards  # the NEXT_STEP reset transition
    assert tracker.lengths[1] == tracker.returns[1] + 1


def test_truncated_steps_bootstrap_from_the_final_observation():
    torch.manual_seed(0)
    envs = gae.make_envs("CartPole-v1", 2, 0, max_episode_steps=5)
    agent = gae.Agent(4, 2, 16)
    obs, _ = envs.reset(seed=0)
    tracker = gae.EpisodeTracker(2)
    rollout, _, finished = gae.collect_rollout(envs, agent, obs, tracker, 12, gamma=0.9)
    envs.close()
    assert rollout["rewards"].shape == rollout["dones"].shape == (12, 2)
    assert len(finished) == len(tracker.returns) == 4
    assert tracker.lengths == [5, 5, 5, 5]  # the pole cannot fall in 5 steps: every end is a time-limit cut
    assert tracker.returns == [5.0] * 4  # the bookkeeping counts the raw rewards, not the bootstrapped ones
    dones = rollout["dones"].numpy().astype(bool)
    assert dones.sum() == 4 and dones[4].all() and dones[9].all()
    # at each cut the reward carries gamma * V(final obs); elsewhere it is the plain 1
    boot = rollout["rewards"].numpy() - 1.0
    assert np.all(np.abs(boot[dones]) > 1e-6)
    assert np.all(boot[~dones] == 0.0)
    # and the value it adds is the critic's value of the last observation of the episode
    replay = gym.make("CartPole-v1")
    obs0, _ = replay.reset(seed=0)
    for t in range(5):
        final, *_ = replay.step(int(rollout["actions"][t, 0]))
    with torch.no_grad():
        v_final = agent.value(torch.as_tensor(final, dtype=torch.float32)).item()
    assert boot[4, 0] == pytest.approx(0.9 * v_final, rel=1e-5)


# -- the lab ------------------------------------------------------------------------------------

@pytest.mark.lab
def test_toy_run_shows_the_trade_off_and_solves_cartpole(tmp_path):
    events = run_in_process("gae", toy=True, out_dir=tmp_path)
    result = LabResult.of(events)
    check_claims(CLAIMS, result)

    head, cfg = result.h, result.config
    batch = cfg["num_envs"] * cfg["num_steps"]
    assert head["eval100_greedy_solved"] is True and head["ppo_steps"] == TOY_BUDGET // batch * batch
    assert len(result.tables["ppo_lambda"]) == len(cfg["ppo_lambdas"])
    # the periodic evaluations: one at step 0, one every eval_every steps, one at the end of the budget
    evals = result.metrics["eval/greedy_mean_return"]
    assert evals[0][0] == 0 and evals[-1][0] == head["ppo_steps"]
    assert len(evals) == 2 + (head["ppo_steps"] - 1) // cfg["eval_every"]
    assert all(0 < v <= 500 for _, v in evals)
    # "time to solve" is the first of them at or above 475, never a training-return window
    first = next(step for step, v in evals if v >= 475)
    assert head["ppo_steps_to_solve"] == first and head["ppo_seconds_to_solve"] >= 0
    returns = [v for _, v in result.metrics["charts/episodic_return"]]
    assert returns and 0 < min(returns) and max(returns) <= 500


def test_evaluate_plays_whole_episodes_side_by_side():
    torch.manual_seed(0)
    agent = gae.Agent(4, 2, 8)
    with torch.no_grad():  # a hand-made controller: push right when the pole leans or falls right
        agent.actor = torch.nn.Linear(4, 2)
        agent.actor.weight.zero_()
        agent.actor.bias.zero_()
        agent.actor.weight[1] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    returns = gae.evaluate(agent, "CartPole-v1", 100, seed=3, greedy=True)
    assert returns.shape == (100,) and returns.max() == 500 and returns.min() >= 1  # the time limit holds
    np.testing.assert_array_equal(returns, gae.evaluate(agent, "CartPole-v1", 100, seed=3, greedy=True))
    with torch.no_grad():
        agent.actor.weight.zero_()
        agent.actor.bias.copy_(torch.tensor([1.0, 0.0]))  # always push left: the pole falls in ~10 steps
    left = gae.evaluate(agent, "CartPole-v1", 100, seed=3, greedy=True)
    assert np.all((left >= 8) & (left <= 11))  # steps after an episode's end are never counted
    sampled = gae.evaluate(agent, "CartPole-v1", 100, seed=3, greedy=False)
    assert sampled.mean() > left.mean()  # sampling sometimes pushes right: the pole lasts longer


def test_deterministic_for_a_seed(tmp_path):
    a = run_in_process("gae", toy=True, seed=3, assignments=CHEAP, out_dir=tmp_path / "a")
    b = run_in_process("gae", toy=True, seed=3, assignments=CHEAP, out_dir=tmp_path / "b")
    assert a[-1]["headline"] == b[-1]["headline"]
    ma = [e["values"] for e in a if e["event"] == "metric"]
    mb = [e["values"] for e in b if e["event"] == "metric"]
    assert ma == mb


@pytest.mark.parametrize("bad", ["lambdas=0.5,1.5", "ppo_lambdas=", "chain_states=4", "num_minibatches=3",
                                 "total_timesteps=10", "critic_error=-1", "gamma=0", "update_epochs=x",
                                 "eval_episodes=10", "eval_every=0", "clip_coef=1", "chain_states=1"])
def test_bad_settings_are_usage_errors(bad, tmp_path):
    assert main(["gae", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE


def test_limits_name_the_field(capsys):
    assert main(["gae", "--toy", "--set", "eval_episodes=5"], io.StringIO()) == EXIT_USAGE
    assert "eval_episodes=5: must be >= 100" in capsys.readouterr().err
