"""The gae lab: compute_gae itself, GAE's bias/variance trade-off, and PPO on CartPole."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from labs import gae
from labs._runtime import EXIT_USAGE, main, run_in_process
from labs.gae import compute_gae

CHEAP = ["chain_episodes=500", "ppo_lambdas=0.8", "total_timesteps=1024", "eval_episodes=2"]


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
    agent = gae.make_agent(4, 2, 16)
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
    head = events[-1]["headline"]
    assert head["max_abs_gae0_minus_td_error"] < 1e-9
    assert head["max_abs_gae1_minus_mc_return_minus_v"] < 1e-9
    assert head["bias_lambda0"] > 5 * head["bias_lambda1"]
    assert head["variance_lambda1"] > 5 * head["variance_lambda0"]
    assert 0 < head["lowest_mse_lambda"] < 1
    assert head["ppo_solved"] is True
    assert head["ppo_last10_mean_return"] >= 475
    assert head["ppo_solved_at_step"] < 100_000

    table = next(e for e in events if e["event"] == "table" and e["name"] == "gae_bias_variance")
    rows = {row[0]: dict(zip(table["columns"], row)) for row in table["rows"]}
    biases = [rows[lam]["bias"] for lam in sorted(rows)]
    variances = [rows[lam]["variance"] for lam in sorted(rows)]
    assert biases == sorted(biases, reverse=True) and variances == sorted(variances)
    for row in rows.values():  # the sampled bias matches the closed form
        assert abs(row["bias"] - row["bias_exact"]) < 0.02
    assert all(row["bias_perfect_critic"] < 0.02 for row in rows.values())
    ppo = next(e for e in events if e["event"] == "table" and e["name"] == "ppo_lambda")
    assert len(ppo["rows"]) == len(events[0]["config"]["ppo_lambdas"])
    returns = [e["values"]["charts/episodic_return"] for e in events if e["event"] == "metric"
               and "charts/episodic_return" in e["values"]]
    assert returns and 0 < min(returns) and max(returns) <= 500


def test_deterministic_for_a_seed(tmp_path):
    a = run_in_process("gae", toy=True, seed=3, assignments=CHEAP, out_dir=tmp_path / "a")
    b = run_in_process("gae", toy=True, seed=3, assignments=CHEAP, out_dir=tmp_path / "b")
    assert a[-1]["headline"] == b[-1]["headline"]
    ma = [e["values"] for e in a if e["event"] == "metric"]
    mb = [e["values"] for e in b if e["event"] == "metric"]
    assert ma == mb


@pytest.mark.parametrize("bad", ["lambdas=0.5,1.5", "ppo_lambdas=", "chain_states=4", "num_minibatches=3",
                                 "total_timesteps=10", "critic_error=-1", "gamma=0", "update_epochs=x"])
def test_bad_settings_are_usage_errors(bad, tmp_path):
    assert main(["gae", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE
