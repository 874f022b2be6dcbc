"""GAE(lambda): generalised advantage estimation (Schulman et al., 2016), then PPO on CartPole.

The one-step TD error and the advantage recursion, computed backwards over a rollout:

    delta_t = r_t + gamma * (1 - d_t) * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - d_t) * A_{t+1}
    R_t     = A_t + V(s_t)            (the lambda-return, the critic's target)

``d_t = 1`` means the episode ended with the transition at step t, so step t neither
bootstraps from V(s_{t+1}) nor carries A_{t+1} back. lambda = 0 gives A_t = delta_t (low
variance, biased by the critic); lambda = 1 gives the Monte-Carlo return minus V(s_t)
(unbiased, high variance).

Part 1, bias and variance against known truth (``labs/_gae_chain.py``). On a random-walk
chain whose V and Q are solved exactly, with an imperfect critic Vhat = V + e,

    E[A_t^lambda | s_t, a_t] = Q(s_t, a_t) - Vhat(s_t) + (1 - lambda) gamma u(s_{t+1}),
    u = (I - gamma lambda P_pi)^-1 e,

so the bias shrinks to 0 as lambda -> 1 while the variance grows: more and more random
future rewards enter the sum. The lab measures both by sampling and checks the bias
against this formula.

Part 2, PPO on CartPole-v1 with A^GAE. Clipped surrogate, value regression on R_t:

    L = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)] + c_v E[(V(s) - R)^2],  rho = pi(a|s) / pi_old(a|s)

with 8 environments x 32 steps per rollout, lambda = 0.8, 20 epochs of full-batch updates, and
a learning rate and clip range decayed linearly to 0 over a fixed budget of ``total_timesteps``
(rl-zoo's CartPole setting, 100k steps), but gamma = 0.99 where rl-zoo has 0.98: with a 50k
budget, 0.98 (a horizon of ~50 steps) left one seed in three with a policy that balances the
pole but drifts off the track after ~210 steps. Training never stops early. gymnasium 1.x vector environments reset a
finished sub-environment on the *next* call to ``step`` by default, which returns a bogus
transition; here the vector env resets in the same step (``AutoresetMode.SAME_STEP``), the
finished episode's last observation arrives in ``info["final_obs"]``, and a truncated
(time-limit) episode bootstraps from it: its last reward becomes r + gamma V(final_obs) and
the step is marked done.

Evaluation follows gymnasium's definition: CartPole-v1 is solved when the mean return over
100 consecutive episodes reaches 475. Every ``eval_every`` steps (and at step 0, the untrained
policy: the baseline) the greedy policy plays ``eval_episodes`` >= 100 fresh episodes side by
side; "time to solve" is the first of these evaluations that reaches 475, in environment steps
and in training seconds (evaluation time excluded). The final policy is then evaluated on
``eval_episodes`` new episodes twice: greedy (argmax) and sampled (the stochastic policy it
was trained as).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from labs._gae_chain import chain_truth, gae_bias_variance, sample_chain  # noqa: F401  (part 1)
from labs._runtime import Emitter, LabFailure, Range, torch_threads
from labs.protocol import Chart


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
    total_timesteps: int = 100_000  # the whole budget: no early stop
    num_envs: int = 8
    num_steps: int = 32
    gamma: float = 0.99  # rl-zoo: 0.98; see the docstring
    learning_rate: float = 1e-3
    clip_coef: float = 0.2
    update_epochs: int = 20
    num_minibatches: int = 1
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    hidden: int = 64
    solved_return: float = 475.0  # gymnasium's threshold for CartPole-v1, over 100 episodes
    eval_episodes: int = 100
    eval_every: int = 4096  # environment steps between evaluations of the greedy policy

    def validate(self) -> None:
        if self.chain_states % 2 == 0:
            raise ValueError("chain_states must be odd (the walk starts in the middle)")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError("num_minibatches must divide num_envs * num_steps")
        if self.total_timesteps < self.num_envs * self.num_steps:
            raise ValueError("total_timesteps must cover at least one rollout of num_envs * num_steps")


# every numeric field's allowed values; the runtime refuses others before the run, naming the field
LIMITS = {"seed": Range(0), "chain_states": Range(3), "chain_gamma": Range(0, 1, low_open=True),
          "critic_error": Range(0), "reward_noise": Range(0), "chain_episodes": Range(100),
          "lambdas": Range(0, 1), "ppo_lambdas": Range(0, 1), "total_timesteps": Range(1),
          "num_envs": Range(1), "num_steps": Range(1), "gamma": Range(0, 1, low_open=True),
          "learning_rate": Range(0, low_open=True), "clip_coef": Range(0, 1, low_open=True, high_open=True),
          "update_epochs": Range(1), "num_minibatches": Range(1), "vf_coef": Range(0), "ent_coef": Range(0),
          "max_grad_norm": Range(0, low_open=True), "hidden": Range(1), "solved_return": Range(0, low_open=True),
          "eval_episodes": Range(100),  # gymnasium's "solved" is a mean over 100 episodes
          "eval_every": Range(1)}

# one PPO run over the full 100k budget (~20 s): at 50k, 2 seeds in 10 ended on a policy that had
# solved the task and then drifted back (final greedy means 472 and 156)
TOY = {"chain_episodes": 10_000, "ppo_lambdas": (0.8,)}

CHARTS = [
    Chart("GAE bias and variance vs lambda", table="gae_bias_variance", x="lambda", y=("bias", "variance"),
          reference=("bias_exact",), x_label="lambda", y_label="advantage error",
          look_for="Bias falls to 0 as lambda -> 1 while variance rises; the measured bias sits on the formula line."),
    Chart("PPO with GAE on CartPole", y=("eval/greedy_mean_return",), x_label="environment steps",
          y_label="greedy mean return",
          look_for="The greedy return climbs towards 500; 475 over 100 episodes counts as solved."),
]


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
        """Add one vector step; return the returns of the episodes it ended."""
        self.running_return += rewards
        self.running_length += 1
        ended = np.flatnonzero(dones)
        finished = [float(self.running_return[i]) for i in ended]
        self.returns += finished
        self.lengths += [int(self.running_length[i]) for i in ended]
        self.env_ids += [int(i) for i in ended]
        self.running_return[ended], self.running_length[ended] = 0.0, 0
        return finished


def layer(i: int, o: int, std: float = float(np.sqrt(2))) -> nn.Linear:
    """A linear layer with orthogonal weights of gain ``std`` and zero bias (CleanRL's init)."""
    lin = nn.Linear(i, o)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.zeros_(lin.bias)
    return lin


class Agent(nn.Module):
    """Separate actor and critic MLPs; the policy head starts near uniform (gain 0.01)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int) -> None:
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





def collect_rollout(envs, agent, obs, tracker: EpisodeTracker, num_steps: int, gamma: float):
    """num_steps vector steps with the current policy. Returns the rollout (tensors, time first)
    and the next observation. Time-limit truncations bootstrap from V(final_obs)."""
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


def evaluate(agent, env_id: str, episodes: int, seed: int, greedy: bool) -> np.ndarray:
    """Returns of ``episodes`` fresh episodes played side by side, one per sub-env, by the greedy
    (argmax) or the sampled policy. A sub-env that has finished is ignored until all have, so its
    automatic reset never counts. CartPole has a numpy-vectorised env: 100 episodes cost about as
    much as one."""
    import gymnasium as gym

    envs = gym.make_vec(env_id, num_envs=episodes)
    obs, _ = envs.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)  # sampling does not touch the training RNG
    returns, live = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while live.any():
        with torch.no_grad():
            logits = agent.actor(torch.as_tensor(obs, dtype=torch.float32))
            action = (logits.argmax(-1) if greedy else
                      torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1))
        obs, reward, terminated, truncated, _ = envs.step(action.numpy())
        returns += reward * live
        live &= ~(terminated | truncated)
    envs.close()
    return returns


def ppo_train(cfg: Config, lam: float, emit: Emitter, label: str = "") -> dict[str, Any]:
    """One PPO run over the whole budget; its metric names end in ``label`` (empty for the headline run)."""
    torch.manual_seed(cfg.seed)
    envs = make_envs(cfg.env_id, cfg.num_envs, cfg.seed)
    agent = Agent(envs.single_observation_space.shape[0], envs.single_action_space.n, cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5, foreach=True)
    batch = cfg.num_envs * cfg.num_steps
    minibatch = batch // cfg.num_minibatches
    num_updates = cfg.total_timesteps // batch
    tracker = EpisodeTracker(cfg.num_envs)
    obs, _ = envs.reset(seed=cfg.seed)
    evals: list[tuple[int, float, float]] = []  # (step, training seconds so far, greedy mean return)
    train_seconds = 0.0

    def periodic_eval(step: int) -> None:  # the same eval_episodes starting states every time
        mean = float(evaluate(agent, cfg.env_id, cfg.eval_episodes, cfg.seed + 10_000, greedy=True).mean())
        evals.append((step, train_seconds, mean))
        emit.metric(step, **{f"eval/greedy_mean_return{label}": mean})

    untrained_sampled = float(evaluate(agent, cfg.env_id, cfg.eval_episodes, cfg.seed + 10_000, False).mean())
    periodic_eval(0)  # the untrained policy, greedy and sampled: the baseline
    for update in range(num_updates):
        t0 = time.perf_counter()
        frac = 1.0 - update / num_updates  # linear decay of the learning rate and the clip range
        optimizer.param_groups[0]["lr"] = cfg.learning_rate * frac
        clip = cfg.clip_coef * frac
        rollout, obs, finished = collect_rollout(envs, agent, obs, tracker, cfg.num_steps, cfg.gamma)
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
        train_seconds += time.perf_counter() - t0
        step = (update + 1) * batch
        values = {f"losses/policy{label}": pg_loss.item(), f"losses/value{label}": v_loss.item(),
                  f"losses/entropy{label}": entropy.item(),
                  f"charts/clipfrac{label}": ((ratio - 1.0).abs() > clip).float().mean().item(),
                  f"charts/learning_rate{label}": cfg.learning_rate * frac}
        if finished:
            values[f"charts/episodic_return{label}"] = float(np.mean(finished))
        emit.metric(step, **values)
        if step // cfg.eval_every > (step - batch) // cfg.eval_every or update == num_updates - 1:
            periodic_eval(step)
    envs.close()
    solved = next(((s, round(sec, 1)) for s, sec, mean in evals if mean >= cfg.solved_return), (None, None))
    final = {mode: evaluate(agent, cfg.env_id, cfg.eval_episodes, cfg.seed + 20_000, greedy=mode == "greedy")
             for mode in ("greedy", "sampled")}  # new starting states, never used to pick anything
    emit.log(f"PPO lambda={lam}: {num_updates * batch} steps in {train_seconds:.1f}s of training; "
             + (f"first evaluation >= {cfg.solved_return:g} at step {solved[0]} ({solved[1]:.1f}s)"
                if solved[0] is not None else f"no evaluation reached {cfg.solved_return:g}")
             + f"; final {cfg.eval_episodes}-episode mean return: greedy {final['greedy'].mean():.1f}, "
             f"sampled {final['sampled'].mean():.1f}")
    return {"lambda": lam, "steps": num_updates * batch, "training_episodes": len(tracker.returns),
            "greedy_untrained": evals[0][2], "sampled_untrained": untrained_sampled,
            "solved_at_step": solved[0], "solved_at_seconds": solved[1], "greedy_mean": float(final["greedy"].mean()),
            "greedy_min": float(final["greedy"].min()), "sampled_mean": float(final["sampled"].mean()),
            "training_seconds": round(train_seconds, 1)}


# -- the lab --------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    torch.set_num_threads(torch_threads(1))
    emit.start(cfg, total_steps=len(cfg.ppo_lambdas) * cfg.total_timesteps)
    head = gae_bias_variance(cfg, emit, compute_gae)

    results = []
    for i, lam in enumerate(cfg.ppo_lambdas):
        results.append(ppo_train(cfg, lam, emit, "" if i == 0 else f"_lambda{lam:g}"))
        emit.progress((i + 1) * cfg.total_timesteps)
    n = cfg.eval_episodes
    columns = list(results[0])
    emit.table("ppo_lambda", [f"eval{n}_{c}" if "greedy" in c or "sampled" in c else c for c in columns],
               [[r[c] for c in columns] for r in results])
    main = results[0]
    if main["training_episodes"] == 0:
        raise LabFailure("PPO finished no training episode")
    head.update({"ppo_lambda": main["lambda"], "ppo_steps": main["steps"],
                 f"eval{n}_greedy_mean_return_untrained": main["greedy_untrained"],
                 f"eval{n}_sampled_mean_return_untrained": main["sampled_untrained"],
                 f"eval{n}_greedy_mean_return": main["greedy_mean"],
                 f"eval{n}_sampled_mean_return": main["sampled_mean"],
                 f"eval{n}_greedy_solved": main["greedy_mean"] >= cfg.solved_return,
                 "ppo_steps_to_solve": main["solved_at_step"], "ppo_seconds_to_solve": main["solved_at_seconds"]})
    for r in results[1:]:
        head[f"eval{n}_greedy_mean_return_lambda{r['lambda']:g}"] = r["greedy_mean"]
        head[f"ppo_steps_to_solve_lambda{r['lambda']:g}"] = r["solved_at_step"]
    emit.summary(head)
