"""GAE(lambda): generalised advantage estimation (Schulman et al., 2016), then PPO on CartPole.

The one-step TD error and the advantage recursion, computed backwards over a rollout:

    delta_t = r_t + gamma * (1 - d_t) * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - d_t) * A_{t+1}
    R_t     = A_t + V(s_t)            (the lambda-return, the critic's target)

``d_t = 1`` means the episode ended with the transition at step t, so step t neither
bootstraps from V(s_{t+1}) nor carries A_{t+1} back. lambda = 0 gives A_t = delta_t (low
variance, biased by the critic); lambda = 1 gives the Monte-Carlo return minus V(s_t)
(unbiased, high variance).

Part 1, bias and variance against known truth. A random walk on a chain of ``chain_states``
states (start in the middle, step left or right with probability 1/2, reward -1 on falling
off the left end and +1 off the right end, plus zero-mean noise on every reward) has values
V we solve for exactly, and Q(s, a) = E[r | s, a] + gamma V(s') since each move is
deterministic. The critic is imperfect,
Vhat = V + e with a fixed perturbation e. Writing out the sum above,

    E[A_t^lambda | s_t, a_t] = Q(s_t, a_t) - Vhat(s_t) + (1 - lambda) gamma u(s_{t+1}),
    u = (I - gamma lambda P_pi)^-1 e,

so we measure each estimate against Q - Vhat, the true advantage taken from the critic's
baseline (it differs from Q - V by -e(s_t), a function of the state alone, which drops out
of the policy gradient because E[grad log pi(a|s)] = 0). The bias shrinks to 0 as lambda -> 1
while the variance grows: more and more random future rewards enter the sum. With a perfect
critic (e = 0) every lambda is unbiased and only the variance changes. Bias and variance are
measured by sampling many episodes and grouping the estimates by (s, a); the bias is also
computed exactly from the formula above, as a check.

Part 2, PPO on CartPole-v1 with A^GAE. Clipped surrogate, value regression on R_t:

    L = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)] + c_v E[(V(s) - R)^2],  rho = pi(a|s) / pi_old(a|s)

with 8 environments x 32 steps per rollout, gamma = 0.98, lambda = 0.8, and a learning
rate and clip range decayed linearly to 0 over the step budget (rl-zoo's CartPole setting).
gymnasium 1.x vector environments reset a finished sub-environment on the *next* call to
``step`` by default, which returns a bogus transition; here the vector env resets in the
same step (``AutoresetMode.SAME_STEP``), the finished episode's last observation arrives in
``info["final_obs"]``, and a truncated (time-limit) episode bootstraps from it: its last
reward becomes r + gamma V(final_obs) and the step is marked done. Solved means the mean
return of the last 10 finished training episodes reaches 475.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labs._runtime import Emitter, LabFailure, torch_threads


def compute_gae(rewards: Any, values: Any, dones: Any, last_value: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Advantages and lambda-returns for a rollout of T steps (time on axis 0).

    Works on numpy arrays and torch tensors alike, of shape (T,) or (T, n_envs).
    ``values[t]`` is V(s_t); ``last_value`` is V(s_T), used where step T-1 did not end an episode.
    """
    n_steps = len(rewards)
    advantages = rewards * 0.0
    next_advantage = 0.0
    for t in reversed(range(n_steps)):
        next_value = last_value if t == n_steps - 1 else values[t + 1]
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * not_done * next_value - values[t]
        next_advantage = delta + gamma * lam * not_done * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + values


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    # part 1: bias and variance on the random-walk chain
    chain_states: int = 9
    chain_gamma: float = 0.95
    critic_error: float = 0.3  # std of the fixed perturbation e(s) of the imperfect critic
    reward_noise: float = 0.1  # std of the noise added to every reward of the chain
    chain_episodes: int = 40_000
    lambdas: tuple[float, ...] = (0.0, 0.5, 0.9, 0.95, 1.0)
    # part 2: PPO on CartPole-v1
    env_id: str = "CartPole-v1"
    ppo_lambdas: tuple[float, ...] = (0.8, 0.95)  # the first one is the headline run
    total_timesteps: int = 100_000
    num_envs: int = 8
    num_steps: int = 32
    gamma: float = 0.98
    learning_rate: float = 1e-3
    clip_coef: float = 0.2
    update_epochs: int = 20
    num_minibatches: int = 1
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    hidden: int = 64
    solved_return: float = 475.0
    stop_when_solved: bool = True
    eval_episodes: int = 10

    def validate(self) -> None:
        if self.chain_states < 3 or self.chain_states % 2 == 0:
            raise ValueError("chain_states must be odd and >= 3 (the walk starts in the middle)")
        if not 0.0 < self.chain_gamma <= 1.0 or not 0.0 < self.gamma <= 1.0:
            raise ValueError("chain_gamma and gamma must be in (0, 1]")
        if self.critic_error < 0.0 or self.reward_noise < 0.0:
            raise ValueError("critic_error and reward_noise must be >= 0")
        if self.chain_episodes < 100:
            raise ValueError("chain_episodes must be >= 100")
        if not self.lambdas or not self.ppo_lambdas:
            raise ValueError("lambdas and ppo_lambdas must not be empty")
        if any(not 0.0 <= lam <= 1.0 for lam in (*self.lambdas, *self.ppo_lambdas)):
            raise ValueError("every lambda must be in [0, 1]")
        if self.num_envs < 1 or self.num_steps < 1 or self.update_epochs < 1 or self.hidden < 1:
            raise ValueError("num_envs, num_steps, update_epochs and hidden must be >= 1")
        if self.num_minibatches < 1 or (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError("num_minibatches must divide num_envs * num_steps")
        if self.total_timesteps < self.num_envs * self.num_steps:
            raise ValueError("total_timesteps must cover at least one rollout")
        if self.learning_rate <= 0 or not 0.0 < self.clip_coef < 1.0:
            raise ValueError("learning_rate must be > 0 and clip_coef in (0, 1)")
        if self.eval_episodes < 0:
            raise ValueError("eval_episodes must be >= 0")


TOY = {"chain_episodes": 10_000, "ppo_lambdas": (0.8,), "eval_episodes": 5}  # one PPO run: seconds, not a minute


# -- part 1: GAE bias and variance on a chain with known values -------------------------------

def chain_truth(n: int, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """True V (n states) and Q (n states x 2 actions: 0 left, 1 right) of the uniform random walk."""
    A = np.eye(n)
    b = np.zeros(n)
    for s in range(n):
        for nxt, reward in ((s - 1, -1.0 if s == 0 else 0.0), (s + 1, 1.0 if s == n - 1 else 0.0)):
            b[s] += 0.5 * reward
            if 0 <= nxt < n:
                A[s, nxt] -= 0.5 * gamma
    V = np.linalg.solve(A, b)
    V_ext = np.concatenate([[0.0], V, [0.0]])  # terminals on both ends have value 0
    Q = np.stack([np.where(np.arange(n) == 0, -1.0, 0.0) + gamma * V_ext[:-2],
                  np.where(np.arange(n) == n - 1, 1.0, 0.0) + gamma * V_ext[2:]], axis=1)
    return V, Q


def sample_chain(n: int, episodes: int, noise: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Whole episodes side by side, shape (T, episodes), padded after each episode ends.

    Padding steps have reward 0 and done 1, so they add nothing to any advantage; ``mask``
    marks the real steps.
    """
    s = np.full(episodes, n // 2)
    alive = np.ones(episodes, dtype=bool)
    states, actions, rewards, dones, masks = [], [], [], [], []
    while alive.any():
        a = rng.integers(0, 2, size=episodes)
        s2 = s + 2 * a - 1
        r = (np.where(s2 < 0, -1.0, np.where(s2 >= n, 1.0, 0.0)) + noise * rng.standard_normal(episodes)) * alive
        done = (s2 < 0) | (s2 >= n) | ~alive
        states.append(s.copy())
        actions.append(a)
        rewards.append(r)
        dones.append(done.astype(float))
        masks.append(alive.copy())
        alive &= ~done
        s = np.clip(s2, 0, n - 1)
    return {k: np.array(v) for k, v in
            (("states", states), ("actions", actions), ("rewards", rewards), ("dones", dones), ("mask", masks))}


def grouped_bias_variance(est: np.ndarray, target: np.ndarray, exact_bias: np.ndarray,
                          group: np.ndarray, n_groups: int) -> tuple[float, float, float]:
    """Visit-weighted RMS bias (sampled and exact) and mean within-(s, a) variance of ``est``.

    Raises if the sampled means stray from target + exact bias by more than sampling noise
    explains (4 standard errors, in the same visit-weighted RMS).
    """
    count = np.bincount(group, minlength=n_groups)
    seen = count > 1
    n = count[seen]
    mean = np.bincount(group, est, n_groups)[seen] / n
    second = np.bincount(group, est * est, n_groups)[seen] / n
    var = np.maximum(second - mean ** 2, 0.0) * n / (n - 1)
    w = n / n.sum()
    bias = float(np.sqrt(np.sum(w * (mean - target[seen]) ** 2)))
    bias_exact = float(np.sqrt(np.sum(w * exact_bias[seen] ** 2)))
    gap = float(np.sqrt(np.sum(w * (mean - target[seen] - exact_bias[seen]) ** 2)))
    standard_error = float(np.sqrt(np.sum(w * var / n)))
    if gap > 4 * standard_error + 1e-9:
        raise LabFailure(f"sampled GAE bias disagrees with the exact formula: RMS gap {gap:.3g}, "
                         f"sampling noise {standard_error:.3g}")
    return bias, bias_exact, float(np.sum(w * var))


def gae_bias_variance(cfg: Config, emit: Emitter) -> dict[str, Any]:
    n, gamma = cfg.chain_states, cfg.chain_gamma
    rng = np.random.default_rng([cfg.seed, 1])
    V, Q = chain_truth(n, gamma)
    e = cfg.critic_error * rng.standard_normal(n)
    data = sample_chain(n, cfg.chain_episodes, cfg.reward_noise, rng)
    mask = data["mask"]
    s, a = data["states"][mask], data["actions"][mask]
    group = s * 2 + a
    next_state = np.arange(n)[:, None] + np.array([-1, 1])[None, :]  # (n, 2); -1 or n is terminal
    P = np.zeros((n, n))  # the random walk among the live states
    for i in range(n):
        for j in (i - 1, i + 1):
            if 0 <= j < n:
                P[i, j] = 0.5
    emit.log(f"chain: {n} states, gamma={gamma}, true V = {np.round(V, 3).tolist()}, "
             f"critic error e = {np.round(e, 3).tolist()}; {int(mask.sum())} sampled steps")

    rows, results = [], {}
    checks = {}
    for lam in cfg.lambdas:
        row: list[Any] = [lam]
        for critic, err in (("imperfect", e), ("perfect", np.zeros(n))):
            Vhat = V + err
            values = np.where(mask, Vhat[data["states"]], 0.0)
            adv, _ = compute_gae(data["rewards"], values, data["dones"], np.zeros(cfg.chain_episodes), gamma, lam)
            if critic == "imperfect" and lam in (0.0, 1.0):
                checks[lam] = reference_check(data, values, adv, gamma, lam)
            u = np.linalg.solve(np.eye(n) - gamma * lam * P, err)
            u_ext = np.concatenate([[0.0], u, [0.0]])
            exact_bias = ((1.0 - lam) * gamma * u_ext[next_state + 1]).reshape(-1)
            target = (Q - Vhat[:, None]).reshape(-1)
            bias, bias_exact, var = grouped_bias_variance(adv[mask], target, exact_bias, group, 2 * n)
            results[(critic, lam)] = (bias, bias_exact, var)
            if critic == "imperfect":
                row += [round(bias, 4), round(bias_exact, 4), round(var, 4), round(bias ** 2 + var, 4)]
            else:
                row += [round(bias, 4), round(var, 4)]
        rows.append(row)
        b, _, v = results[("imperfect", lam)]
        emit.metric(int(round(lam * 100)), **{"gae/bias": b, "gae/variance": v, "gae/mse": b * b + v,
                                              "gae/variance_perfect_critic": results[("perfect", lam)][2]})
    emit.table("gae_bias_variance", ["lambda", "bias", "bias_exact", "variance", "mse",
                                     "bias_perfect_critic", "variance_perfect_critic"], rows)
    lo, hi = min(cfg.lambdas), max(cfg.lambdas)
    best = min(cfg.lambdas, key=lambda lam: results[("imperfect", lam)][0] ** 2 + results[("imperfect", lam)][2])
    emit.log(f"GAE on the chain: bias {results[('imperfect', lo)][0]:.3f} -> {results[('imperfect', hi)][0]:.3f}, "
             f"variance {results[('imperfect', lo)][2]:.3f} -> {results[('imperfect', hi)][2]:.3f} "
             f"as lambda goes {lo} -> {hi}; lowest MSE at lambda={best}")
    head = {f"bias_lambda{lo:g}": results[("imperfect", lo)][0], f"bias_lambda{hi:g}": results[("imperfect", hi)][0],
            f"variance_lambda{lo:g}": results[("imperfect", lo)][2],
            f"variance_lambda{hi:g}": results[("imperfect", hi)][2], "lowest_mse_lambda": best}
    for lam, diff in checks.items():
        head[f"max_abs_gae{lam:g}_minus_{'td_error' if lam == 0 else 'mc_return_minus_v'}"] = diff
    return head


def reference_check(data: dict[str, np.ndarray], values: np.ndarray, adv: np.ndarray,
                    gamma: float, lam: float) -> float:
    """GAE(0) must be the one-step TD error, GAE(1) the Monte-Carlo return minus V; raise if not."""
    r, d, mask = data["rewards"], data["dones"], data["mask"]
    next_values = np.concatenate([values[1:], np.zeros_like(values[:1])])
    if lam == 0.0:
        reference = r + gamma * (1.0 - d) * next_values - values
    else:
        G = np.zeros_like(r)
        running = np.zeros(r.shape[1])
        for t in reversed(range(len(r))):
            running = r[t] + gamma * (1.0 - d[t]) * running
            G[t] = running
        reference = G - values
    diff = float(np.max(np.abs(adv - reference)[mask]))
    if diff > 1e-9:
        raise LabFailure(f"GAE(lambda={lam}) differs from its closed form by {diff:.3g}")
    return diff


# -- part 2: PPO on CartPole ------------------------------------------------------------------

def make_envs(env_id: str, num_envs: int, seed: int, max_episode_steps: int | None = None):
    """A synchronous vector env that resets a finished sub-env in the same step (see the docstring)."""
    import gymnasium as gym

    kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}, **kwargs)
    envs.action_space.seed(seed)
    return envs


class EpisodeTracker:
    """Per-env running return and length; an episode is recorded on the step that ends it.

    With SAME_STEP autoreset, the reward returned with terminated/truncated belongs to the
    episode that just ended, and the next step starts the new episode: no phantom step.
    """

    def __init__(self, num_envs: int):
        self.running_return = np.zeros(num_envs)
        self.running_length = np.zeros(num_envs, dtype=int)
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.env_ids: list[int] = []  # which sub-env each recorded episode came from

    def update(self, rewards: np.ndarray, dones: np.ndarray) -> list[float]:
        self.running_return += rewards
        self.running_length += 1
        finished = []
        for i in np.flatnonzero(dones):
            finished.append(float(self.running_return[i]))
            self.returns.append(float(self.running_return[i]))
            self.lengths.append(int(self.running_length[i]))
            self.env_ids.append(int(i))
            self.running_return[i] = 0.0
            self.running_length[i] = 0
        return finished


def make_agent(obs_dim: int, n_actions: int, hidden: int):
    import torch
    from torch import nn

    def layer(i: int, o: int, std: float = float(np.sqrt(2))) -> nn.Linear:
        lin = nn.Linear(i, o)
        nn.init.orthogonal_(lin.weight, std)
        nn.init.zeros_(lin.bias)
        return lin

    class Agent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.critic = nn.Sequential(layer(obs_dim, hidden), nn.Tanh(), layer(hidden, hidden), nn.Tanh(),
                                        layer(hidden, 1, 1.0))
            self.actor = nn.Sequential(layer(obs_dim, hidden), nn.Tanh(), layer(hidden, hidden), nn.Tanh(),
                                       layer(hidden, n_actions, 0.01))

        def value(self, x: torch.Tensor) -> torch.Tensor:
            return self.critic(x).squeeze(-1)

        def log_probs(self, x: torch.Tensor) -> torch.Tensor:
            """log pi(. | s) for every action, shape (batch, n_actions)."""
            return torch.log_softmax(self.actor(x), dim=-1)

    return Agent()


def collect_rollout(envs, agent, obs, tracker: EpisodeTracker, num_steps: int, gamma: float):
    """num_steps vector steps with the current policy. Returns the rollout (tensors, time first)
    and the next observation. Time-limit truncations bootstrap from V(final_obs)."""
    import torch

    buf: dict[str, list] = {k: [] for k in ("obs", "actions", "logprobs", "values", "rewards", "dones")}
    finished: list[float] = []
    for _ in range(num_steps):
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        with torch.no_grad():
            logp = agent.log_probs(obs_t)
            action = torch.multinomial(logp.exp(), 1).squeeze(1)
            buf["logprobs"].append(logp.gather(1, action[:, None]).squeeze(1))
            buf["values"].append(agent.value(obs_t))
        next_obs, reward, terminated, truncated, info = envs.step(action.numpy())
        reward = reward.astype(np.float64)
        finished += tracker.update(reward, terminated | truncated)
        cut = np.flatnonzero(truncated & ~terminated)
        if len(cut):  # the episode did not end, time ran out: keep the value of where it was
            final = torch.as_tensor(np.stack([info["final_obs"][i] for i in cut]), dtype=torch.float32)
            with torch.no_grad():
                reward[cut] += gamma * agent.value(final).numpy()
        buf["obs"].append(obs_t)
        buf["actions"].append(action)
        buf["rewards"].append(torch.as_tensor(reward, dtype=torch.float32))
        buf["dones"].append(torch.as_tensor(terminated | truncated, dtype=torch.float32))
        obs = next_obs
    rollout = {k: torch.stack(v) for k, v in buf.items()}
    return rollout, obs, finished


def ppo_train(cfg: Config, lam: float, emit: Emitter, label: str = "") -> dict[str, Any]:
    """One PPO run; its metric names end in ``label`` (empty for the headline run)."""
    import torch

    torch.manual_seed(cfg.seed)
    envs = make_envs(cfg.env_id, cfg.num_envs, cfg.seed)
    agent = make_agent(envs.single_observation_space.shape[0], envs.single_action_space.n, cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5, foreach=True)
    batch = cfg.num_envs * cfg.num_steps
    minibatch = batch // cfg.num_minibatches
    num_updates = cfg.total_timesteps // batch
    tracker = EpisodeTracker(cfg.num_envs)
    obs, _ = envs.reset(seed=cfg.seed)
    solved_at, step, t0 = None, 0, time.perf_counter()
    for update in range(num_updates):
        frac = 1.0 - update / num_updates  # linear decay of the learning rate and the clip range
        optimizer.param_groups[0]["lr"] = cfg.learning_rate * frac
        clip = cfg.clip_coef * frac
        rollout, obs, finished = collect_rollout(envs, agent, obs, tracker, cfg.num_steps, cfg.gamma)
        step += batch
        with torch.no_grad():
            last_value = agent.value(torch.as_tensor(obs, dtype=torch.float32))
        advantages, returns = compute_gae(rollout["rewards"], rollout["values"], rollout["dones"],
                                          last_value, cfg.gamma, lam)
        b_obs = rollout["obs"].reshape(batch, -1)
        b_act, b_logp = rollout["actions"].reshape(-1), rollout["logprobs"].reshape(-1)
        b_adv, b_ret = advantages.reshape(-1), returns.reshape(-1)
        for _ in range(cfg.update_epochs):
            order = torch.randperm(batch)
            for start in range(0, batch, minibatch):
                idx = order[start:start + minibatch]
                logp = agent.log_probs(b_obs[idx])
                ratio = torch.exp(logp.gather(1, b_act[idx, None]).squeeze(1) - b_logp[idx])
                adv = b_adv[idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = -torch.min(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv).mean()
                v_loss = 0.5 * ((agent.value(b_obs[idx]) - b_ret[idx]) ** 2).mean()
                entropy = -(logp.exp() * logp).sum(-1).mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()
        with torch.no_grad():
            clipfrac = ((ratio - 1.0).abs() > clip).float().mean().item()
        recent = tracker.returns[-10:]
        values = {f"losses/policy{label}": pg_loss.item(), f"losses/value{label}": v_loss.item(),
                  f"losses/entropy{label}": entropy.item(), f"charts/clipfrac{label}": clipfrac,
                  f"charts/learning_rate{label}": cfg.learning_rate * frac}
        if finished:
            values[f"charts/episodic_return{label}"] = float(np.mean(finished))
        if len(recent) == 10:
            values[f"charts/mean10_return{label}"] = float(np.mean(recent))
        emit.metric(step, **values)
        if solved_at is None and len(recent) == 10 and np.mean(recent) >= cfg.solved_return:
            solved_at = step
            emit.log(f"PPO lambda={lam}: solved at step {step} "
                     f"(last 10 episodes mean {np.mean(recent):.1f}, {time.perf_counter() - t0:.1f}s)")
            if cfg.stop_when_solved:
                break
    envs.close()
    greedy = evaluate(cfg, agent, cfg.eval_episodes)
    if solved_at is None:
        emit.log(f"PPO lambda={lam}: not solved in {step} steps "
                 f"(last 10 episodes mean {np.mean(tracker.returns[-10:] or [0.0]):.1f})")
    return {"lambda": lam, "solved_at": solved_at, "steps": step, "episodes": len(tracker.returns),
            "mean10": float(np.mean(tracker.returns[-10:])) if tracker.returns else float("nan"),
            "greedy_eval": greedy, "seconds": time.perf_counter() - t0}


def evaluate(cfg: Config, agent, episodes: int) -> float | None:
    """Mean return of the greedy (argmax) policy over ``episodes`` fresh episodes, one per env."""
    if episodes == 0:
        return None
    import torch

    envs = make_envs(cfg.env_id, episodes, cfg.seed + 10_000)
    obs, _ = envs.reset(seed=cfg.seed + 10_000)
    running, first = np.zeros(episodes), np.full(episodes, np.nan)
    while np.isnan(first).any():
        with torch.no_grad():
            action = agent.actor(torch.as_tensor(obs, dtype=torch.float32)).argmax(-1).numpy()
        obs, reward, terminated, truncated, _ = envs.step(action)
        running += reward
        ended = (terminated | truncated) & np.isnan(first)
        first[ended] = running[ended]
    envs.close()
    return float(first.mean())


# -- the lab --------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    import torch

    torch.set_num_threads(torch_threads(1))
    emit.start(cfg, total_steps=len(cfg.ppo_lambdas) * cfg.total_timesteps)
    head = gae_bias_variance(cfg, emit)

    results = []
    for i, lam in enumerate(cfg.ppo_lambdas):
        res = ppo_train(cfg, lam, emit, "" if i == 0 else f"_lambda{lam:g}")
        results.append(res)
        emit.progress((i + 1) * cfg.total_timesteps)
    emit.table("ppo_lambda", ["lambda", "solved_at_step", "steps_run", "episodes", "last10_mean_return",
                              "greedy_eval_return", "seconds"],
               [[r["lambda"], r["solved_at"], r["steps"], r["episodes"], round(r["mean10"], 1),
                 r["greedy_eval"], round(r["seconds"], 1)] for r in results])
    main = results[0]
    if not np.isfinite(main["mean10"]):
        raise LabFailure("PPO finished no episode")
    head.update({"ppo_lambda": main["lambda"], "ppo_solved": main["solved_at"] is not None,
                 "ppo_solved_at_step": main["solved_at"], "ppo_last10_mean_return": round(main["mean10"], 2),
                 "ppo_greedy_eval_return": main["greedy_eval"]})
    for r in results[1:]:
        head[f"ppo_lambda{r['lambda']:g}_solved_at_step"] = r["solved_at"]
    emit.summary(head)
