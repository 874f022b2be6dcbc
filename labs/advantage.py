"""Policy gradient on CartPole with four return signals, and the variance of each gradient.

The policy-gradient theorem lets any of these signals Psi_t weight the score function:

    g = (1/N) sum_episodes sum_t grad log pi(a_t | s_t) * Psi_t

    total         Psi_t = G_0 = sum_k gamma^k r_k                 (REINFORCE, whole-episode return)
    reward_to_go  Psi_t = G_t = sum_{k>=t} gamma^(k-t) r_k          (causality: the past cannot be credited)
    baseline      Psi_t = G_t - V(s_t)                              (a learned state-value baseline)
    advantage     Psi_t = A_t^GAE(gamma, lambda) = sum_k (gamma lambda)^k delta_{t+k},
                  delta_t = r_t + gamma V(s_{t+1}) - V(s_t)          (an estimate of Q - V, via compute_gae)

All four have (nearly) the same expectation: dropping past rewards and subtracting a
function of the state change nothing in expectation, because E[grad log pi(a|s)] = 0. The
advantage signal adds a small bias where V is wrong (lambda < 1) in exchange for a large cut
in variance. The lab measures that variance directly: at fixed policy parameters theta it
draws K independent batches of episodes, computes the four gradients on each batch (the
same episodes for all four, a paired comparison), and sums the per-parameter variance over
the K batches, trace Cov[g] = sum_j Var_k(g_kj). The headline is the variance-reduction
ratio trace Cov[g_total] / trace Cov[g_advantage], measured at the initial policy and at a
trained one (the critic for each is fitted to Monte-Carlo returns of that policy first).

Then it trains one policy per signal from the same initial weights with the same optimiser
(Adam; signals are not normalised, so only their noise differs, not their scale) and reports
how fast each learns: the mean return per iteration and the first iteration at which the
running mean of the last 5 iterations reaches ``target_return``. The baseline for learning is
the initial policy's own mean return (``return_initial_policy``), measured in the same run.

Episodes are sampled with a numpy copy of the policy (one tiny matrix product per step);
the gradients are computed by torch on the whole batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from labs._runtime import Emitter, LabFailure, Range, torch_threads
from labs.gae import compute_gae
from labs.protocol import Chart

SIGNALS = ("total", "reward_to_go", "baseline", "advantage")


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    env_id: str = "CartPole-v1"
    max_episode_steps: int = 500  # CartPole-v1's time limit; the toy preset shortens it
    gamma: float = 0.99
    gae_lambda: float = 0.95  # the advantage signal's lambda (0 = the one-step TD error)
    hidden: int = 32
    policy_lr: float = 0.01
    critic_lr: float = 0.01
    critic_steps: int = 25  # critic Adam steps per iteration (full batch, Monte-Carlo targets)
    # learning speed
    iterations: int = 150
    episodes_per_batch: int = 8
    target_return: float = 195.0
    # gradient variance at fixed parameters
    var_batches: int = 32  # K independent batches
    var_episodes: int = 4  # episodes per batch
    fit_episodes: int = 32  # episodes used to fit the critic of the policy being measured
    fit_steps: int = 300


# every numeric field's allowed values; the runtime refuses others before the run, naming the field
LIMITS = {"seed": Range(0), "max_episode_steps": Range(1), "gamma": Range(0, 1, low_open=True),
          "gae_lambda": Range(0, 1), "hidden": Range(1), "policy_lr": Range(0, low_open=True),
          "critic_lr": Range(0, low_open=True), "critic_steps": Range(0), "iterations": Range(1),
          "episodes_per_batch": Range(1), "target_return": Range(0, low_open=True),
          "var_batches": Range(2),  # a variance needs two samples
          "var_episodes": Range(1), "fit_episodes": Range(1), "fit_steps": Range(0)}

TOY = {"iterations": 30, "max_episode_steps": 200, "critic_steps": 15, "var_batches": 16, "fit_episodes": 16,
       "fit_steps": 150, "target_return": 100.0}

CHARTS = [
    Chart("Learning speed of each return signal", y=tuple(f"charts/episodic_return_{s}" for s in
                                                        ("total", "reward_to_go", "baseline", "advantage")),
          x_label="iteration", y_label="mean episode return",
          look_for="The advantage curve ends above the whole-episode return's: same start and optimiser, less noise."),
    Chart("Gradient variance per signal", table="return_signals", y=("var_initial", "var_trained"), log_y=True,
          x_label="signal: total, reward-to-go, baseline, advantage", y_label="trace Cov[g]",
          look_for="Reward-to-go already cuts the whole-episode variance; the advantage signal cuts it far more."),
]


# -- networks and episodes --------------------------------------------------------------------

def mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.Tanh(), nn.Linear(hidden, out))


class Sampler:
    """Runs n whole episodes side by side on gymnasium's numpy-vectorised CartPole.

    Each batch resets every sub-env and steps them together until each has finished one
    episode; a sub-env that is done is simply ignored until the batch ends (its automatic
    reset on the next step is never used), so the episodes are exact.
    """

    def __init__(self, env_id: str, n: int, seed: int, max_episode_steps: int = 500):
        import gymnasium as gym

        self.envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point",
                                 max_episode_steps=max_episode_steps)
        self.n = n
        self.seed = seed  # the first reset is seeded; later ones continue the env's RNG
        self.rng = np.random.default_rng([seed, 7])

    def episodes(self, policy: nn.Sequential, n: int) -> list[dict]:
        w = [p.detach().numpy().astype(np.float64) for p in policy.parameters()]  # W1, b1, W2, b2
        out: list[dict] = []
        while len(out) < n:
            obs, _ = self.envs.reset(seed=self.seed)
            self.seed = None
            k = min(self.n, n - len(out))
            steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
            length = np.zeros(self.n, dtype=int)
            terminated_at = np.zeros(self.n, dtype=bool)
            final_obs = np.zeros_like(obs)
            live = np.ones(self.n, dtype=bool)
            live[k:] = False
            while live.any():
                logits = np.tanh(obs @ w[0].T + w[1]) @ w[2].T + w[3]
                p1 = 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))  # P(action 1), two actions
                actions = (self.rng.random(self.n) < p1).astype(np.int64)
                nxt, reward, terminated, truncated, _ = self.envs.step(actions)
                steps.append((obs, actions, reward))
                length[live] += 1
                ended = live & (terminated | truncated)
                terminated_at[ended] = terminated[ended]
                final_obs[ended] = nxt[ended]
                live &= ~ended
                obs = nxt
            for i in range(k):
                T = length[i]
                out.append({"obs": torch.tensor(np.array([s[0][i] for s in steps[:T]]), dtype=torch.float32),
                            "actions": torch.tensor(np.array([s[1][i] for s in steps[:T]])),
                            "rewards": np.array([s[2][i] for s in steps[:T]], dtype=np.float64),
                            "terminated": bool(terminated_at[i]),
                            "final_obs": torch.tensor(final_obs[i], dtype=torch.float32)})
        return out

    def close(self) -> None:
        self.envs.close()


def discounted_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    out = np.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def signals(episodes: list[dict], critic: nn.Sequential, gamma: float, lam: float) -> dict[str, torch.Tensor]:
    """The four Psi_t, concatenated over the batch's episodes (time-major within each episode)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in SIGNALS}
    with torch.no_grad():
        for ep in episodes:
            rtg = discounted_to_go(ep["rewards"], gamma)
            v = critic(ep["obs"]).squeeze(-1).double().numpy()
            dones = np.zeros(len(rtg))
            dones[-1] = 1.0 if ep["terminated"] else 0.0  # a time-limit cut bootstraps from V(final obs)
            last = 0.0 if ep["terminated"] else critic(ep["final_obs"]).item()
            adv, _ = compute_gae(ep["rewards"], v, dones, last, gamma, lam)
            parts["total"].append(np.full(len(rtg), rtg[0]))
            parts["reward_to_go"].append(rtg)
            parts["baseline"].append(rtg - v)
            parts["advantage"].append(adv)
    return {k: torch.tensor(np.concatenate(v), dtype=torch.float32) for k, v in parts.items()}


def policy_loss(policy: nn.Sequential, episodes: list[dict], psi: torch.Tensor) -> torch.Tensor:
    """-(1/N) sum log pi(a_t|s_t) Psi_t: its gradient is minus the estimator g."""
    obs = torch.cat([ep["obs"] for ep in episodes])
    actions = torch.cat([ep["actions"] for ep in episodes])
    logp = torch.log_softmax(policy(obs), dim=-1).gather(1, actions[:, None]).squeeze(1)
    return -(logp * psi).sum() / len(episodes)


def fit_critic(critic: nn.Sequential, opt: torch.optim.Optimizer, episodes: list[dict], gamma: float,
               steps: int) -> float:
    obs = torch.cat([ep["obs"] for ep in episodes])
    target = torch.tensor(np.concatenate([discounted_to_go(ep["rewards"], gamma) for ep in episodes]),
                          dtype=torch.float32)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        loss = ((critic(obs).squeeze(-1) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


# -- gradient variance at fixed parameters ----------------------------------------------------

def gradient_variance(cfg: Config, policy: nn.Sequential, sampler: Sampler, label: str,
                      emit: Emitter) -> dict[str, dict[str, float]]:
    critic = mlp(4, cfg.hidden, 1)
    fit_eps = sampler.episodes(policy, cfg.fit_episodes)
    fit_loss = fit_critic(critic, torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr), fit_eps, cfg.gamma,
                          cfg.fit_steps)
    mean_return = float(np.mean([ep["rewards"].sum() for ep in fit_eps]))
    params = list(policy.parameters())
    grads: dict[str, list[torch.Tensor]] = {k: [] for k in SIGNALS}
    for _ in range(cfg.var_batches):
        batch = sampler.episodes(policy, cfg.var_episodes)
        psi = signals(batch, critic, cfg.gamma, cfg.gae_lambda)
        for name in SIGNALS:
            g = torch.autograd.grad(-policy_loss(policy, batch, psi[name]), params)
            grads[name].append(torch.cat([x.reshape(-1) for x in g]).double())
    out = {}
    for name in SIGNALS:
        G = torch.stack(grads[name])  # (K, n_params)
        trace = float(G.var(dim=0, unbiased=True).sum())
        signal = float(G.mean(dim=0).pow(2).sum())
        if not np.isfinite(trace):
            raise LabFailure(f"non-finite gradient variance for {name} at {label}")
        out[name] = {"trace_var": trace, "mean_grad_sq": signal}
    emit.log(f"variance at the {label} policy (mean return {mean_return:.1f}; critic fit MSE {fit_loss:.2f}): "
             + ", ".join(f"{k} {v['trace_var']:.4g}" for k, v in out.items()))
    out["_meta"] = {"mean_return": mean_return}
    return out


# -- learning speed ---------------------------------------------------------------------------

def train(cfg: Config, signal: str, sampler: Sampler, emit: Emitter, step0: int):
    torch.manual_seed(cfg.seed)  # the same initial weights for every signal
    policy, critic = mlp(4, cfg.hidden, 2), mlp(4, cfg.hidden, 1)
    p_opt = torch.optim.Adam(policy.parameters(), lr=cfg.policy_lr)
    c_opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    curve = []
    for it in range(cfg.iterations):
        batch = sampler.episodes(policy, cfg.episodes_per_batch)
        psi = signals(batch, critic, cfg.gamma, cfg.gae_lambda)[signal]
        loss = policy_loss(policy, batch, psi)
        p_opt.zero_grad()
        loss.backward()
        p_opt.step()
        values = {f"charts/episodic_return_{signal}": float(np.mean([ep["rewards"].sum() for ep in batch]))}
        if signal in ("baseline", "advantage"):
            values[f"losses/value_{signal}"] = fit_critic(critic, c_opt, batch, cfg.gamma, cfg.critic_steps)
        curve.append(values[f"charts/episodic_return_{signal}"])
        emit.metric(it + 1, **values)
        emit.progress(step0 + it + 1)
    return policy, curve


def first_reaching(curve: list[float], target: float, window: int = 5) -> int | None:
    for i in range(window - 1, len(curve)):
        if np.mean(curve[i - window + 1:i + 1]) >= target:
            return i + 1
    return None


# -- the lab --------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    torch.set_num_threads(torch_threads(1))
    n_pool = max(cfg.episodes_per_batch, cfg.var_episodes)
    emit.start(cfg, total_steps=len(SIGNALS) * cfg.iterations + 2)

    # the initial policy, and the variance of each signal's gradient there
    torch.manual_seed(cfg.seed)
    init_policy = mlp(4, cfg.hidden, 2)
    sampler = Sampler(cfg.env_id, n_pool, cfg.seed, cfg.max_episode_steps)
    var_init = gradient_variance(cfg, init_policy, sampler, "initial", emit)
    emit.progress(1)

    curves, trained = {}, None
    for k, name in enumerate(SIGNALS):
        train_sampler = Sampler(cfg.env_id, n_pool, cfg.seed + 1, cfg.max_episode_steps)  # same seeds for each
        policy, curves[name] = train(cfg, name, train_sampler, emit, 1 + k * cfg.iterations)
        train_sampler.close()
        if name == "advantage":
            trained = policy
    var_trained = gradient_variance(cfg, trained, sampler, "trained", emit)
    sampler.close()
    emit.progress(len(SIGNALS) * cfg.iterations + 2)

    rows = []
    for name in SIGNALS:
        rows.append([name,
                     var_init[name]["trace_var"], round(var_init["total"]["trace_var"] / var_init[name]["trace_var"], 2),
                     var_trained[name]["trace_var"],
                     round(var_trained["total"]["trace_var"] / var_trained[name]["trace_var"], 2),
                     round(var_trained[name]["mean_grad_sq"] / var_trained[name]["trace_var"], 4),
                     first_reaching(curves[name], cfg.target_return),
                     round(float(np.mean(curves[name][-10:])), 1), round(float(np.mean(curves[name])), 1)])
    emit.table("return_signals", ["signal", "var_initial", "reduction_initial", "var_trained", "reduction_trained",
                                  "snr_trained", f"iters_to_{cfg.target_return:g}", "return_last10",
                                  "return_mean_all"], rows)
    emit.log(f"policies measured: initial (mean return {var_init['_meta']['mean_return']:.1f}) and the one "
             f"trained with the advantage signal (mean return {var_trained['_meta']['mean_return']:.1f})")
    ratio_init = var_init["total"]["trace_var"] / var_init["advantage"]["trace_var"]
    ratio_trained = var_trained["total"]["trace_var"] / var_trained["advantage"]["trace_var"]
    emit.summary({
        "return_initial_policy": round(var_init["_meta"]["mean_return"], 1),  # the baseline: before training
        "variance_ratio_total_over_advantage": round(ratio_init, 3),
        "variance_ratio_trained_policy": round(ratio_trained, 3),
        "variance_ratio_total_over_reward_to_go": round(var_init["total"]["trace_var"]
                                                        / var_init["reward_to_go"]["trace_var"], 3),
        **{f"return_last10_{name}": round(float(np.mean(curves[name][-10:])), 1) for name in SIGNALS},
        **{f"iters_to_target_{name}": first_reaching(curves[name], cfg.target_return) for name in SIGNALS},
    })
