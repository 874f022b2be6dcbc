"""Q-learning vs SARSA on the cliff walk (Sutton & Barto, Example 6.6), and TD(0) prediction
on the 5-state random walk (Example 6.2).

Both control methods learn an action-value table Q from one transition at a time,
behaving epsilon-greedily (epsilon = 0.1) with step size alpha:

    SARSA (on-policy):       Q(s,a) <- Q(s,a) + alpha [r + gamma Q(s',a') - Q(s,a)],  a' the action it will take
    Q-learning (off-policy): Q(s,a) <- Q(s,a) + alpha [r + gamma max_b Q(s',b) - Q(s,a)]

(at a terminal s' the bracket is r - Q(s,a)). Q-learning learns the values of the greedy
policy, so it finds the optimal path along the cliff edge (greedy return -13), but while
exploring it keeps stepping off the cliff (-100): its online return per episode is worse.
SARSA learns the values of the epsilon-greedy policy it follows, so it prefers the safer
path one or two rows up, and its online return is better (S&B's figure: about -25 vs -50).
The curves are the book's Figure 6.4: the sum of rewards of each episode, ``returns/sarsa``
and ``returns/q_learning`` emitted at the same step (the episode number) so they share one
chart, each the mean over ``runs`` independent runs (50 in the full preset, 8 in the toy).
The headline averages the last 100 episodes of each curve.

TD(0) prediction estimates V of a fixed policy from sampled transitions,

    V(s) <- V(s) + alpha [r + gamma V(s') - V(s)],

here on the random walk A-B-C-D-E (start C, each step left or right with probability 1/2,
reward 1 only on leaving E to the right, gamma = 1), whose true values are 1/6 ... 5/6.
Constant-alpha Monte Carlo, V(s) <- V(s) + alpha [G - V(s)], runs alongside for comparison.
The error is the RMS over the five states, averaged over runs.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labs._runtime import Emitter, LabFailure, Range
from labs.protocol import Chart

ENV_ID = "CliffWalking-v1"
ROWS, COLS = 4, 12
ARROWS = "^>v<"  # CliffWalking's actions: 0 up, 1 right, 2 down, 3 left
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))
RW_TRUE = np.arange(1, 6) / 6.0  # random walk: true V(A..E)


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    # control on the cliff walk
    episodes: int = 500
    runs: int = 50  # independent runs averaged per curve
    alpha: float = 0.5
    epsilon: float = 0.1
    gamma: float = 1.0
    greedy_max_steps: int = 100  # cap when replaying the learned greedy policy
    # prediction on the random walk
    rw_episodes: int = 100
    rw_runs: int = 100
    td_alphas: tuple[float, ...] = (0.05, 0.1, 0.15)
    mc_alphas: tuple[float, ...] = (0.01, 0.02, 0.03, 0.04)


# every field's allowed values; the runtime refuses others before the run, naming the field.
# episodes >= 100: the headline averages the last 100; greedy_max_steps >= 13: the shortest path.
LIMITS = {"seed": Range(0), "episodes": Range(100), "runs": Range(1), "alpha": Range(0, 1, low_open=True),
          "epsilon": Range(0, 1), "gamma": Range(0, 1, low_open=True), "greedy_max_steps": Range(13),
          "rw_episodes": Range(1), "rw_runs": Range(1), "td_alphas": Range(0, 1, low_open=True),
          "mc_alphas": Range(0, 1, low_open=True, may_be_empty=True)}

TOY = {"runs": 8, "rw_runs": 50}

CHARTS = [
    Chart("Cliff walk: return per episode", y=("returns/sarsa", "returns/q_learning"),
          x_label="episode", y_label="sum of rewards (mean over runs)",
          look_for="SARSA ends above Q-learning: Q-learning walks the cliff edge and falls off while exploring."),
    Chart("Random walk: TD(0) vs Monte Carlo", y=("random_walk/rms_td_alpha0.05", "random_walk/rms_td_alpha0.1",
                                                   "random_walk/rms_mc_alpha0.01", "random_walk/rms_mc_alpha0.03"),
          x_label="episode", y_label="RMS error over the 5 states",
          look_for="TD(0) lines fall faster and lower than the Monte-Carlo ones at these step sizes."),
]


def make_rng(seed: int, *stream: int) -> random.Random:
    """An independent, reproducible stream for (seed, *stream)."""
    state = np.random.SeedSequence([seed, *stream]).generate_state(2)
    return random.Random(int(state[0]) << 32 | int(state[1]))


# -- control: SARSA and Q-learning on CliffWalking-v1 ----------------------------------------

def epsilon_greedy(q_row: list[float], epsilon: float, rng: random.Random) -> int:
    if rng.random() < epsilon:
        return rng.randrange(len(q_row))
    best = max(q_row)
    ties = [a for a, q in enumerate(q_row) if q == best]
    return ties[0] if len(ties) == 1 else rng.choice(ties)


def train(env, algo: str, cfg: Config, rng: random.Random) -> tuple[list[list[float]], list[float]]:
    """One run: the learned Q table and the online (epsilon-greedy) return of every episode."""
    n_s, n_a = env.observation_space.n, env.action_space.n
    Q = [[0.0] * n_a for _ in range(n_s)]
    returns = []
    for _ in range(cfg.episodes):
        s, _ = env.reset()
        a = epsilon_greedy(Q[s], cfg.epsilon, rng)
        total, done = 0.0, False
        while not done:
            s2, r, terminated, truncated, _ = env.step(a)
            total += r
            a2 = epsilon_greedy(Q[s2], cfg.epsilon, rng)
            if terminated:
                target = r
            elif algo == "sarsa":
                target = r + cfg.gamma * Q[s2][a2]
            else:
                target = r + cfg.gamma * max(Q[s2])
            Q[s][a] += cfg.alpha * (target - Q[s][a])
            s, a, done = s2, a2, terminated or truncated
        returns.append(total)
    return Q, returns


def greedy_path(env, Q: list[list[float]], max_steps: int) -> tuple[float, list[tuple[int, int]], bool]:
    """Replay argmax Q from the start: its return, the states visited, whether it reached the goal."""
    s, _ = env.reset()
    path, total = [s], 0.0
    for _ in range(max_steps):
        a = max(range(len(Q[s])), key=lambda b: Q[s][b])
        s, r, terminated, truncated, _ = env.step(a)
        total += r
        path.append(s)
        if terminated or truncated:
            return total, path, terminated
    return total, path, False


def draw_path(path: list[int], Q: list[list[float]]) -> list[list[str]]:
    """The 4x12 grid: S start, G goal, C cliff, the greedy action on the path, '.' elsewhere."""
    grid = [["."] * COLS for _ in range(ROWS)]
    for c in range(1, COLS - 1):
        grid[ROWS - 1][c] = "C"
    for s in path[:-1]:
        r, c = divmod(s, COLS)
        grid[r][c] = ARROWS[max(range(4), key=lambda b: Q[s][b])]
    grid[ROWS - 1][0], grid[ROWS - 1][COLS - 1] = "S", "G"
    return grid


def rows_above_cliff(path: list[int]) -> int:
    """How far from the cliff the path runs: the smallest row offset above the bottom row, mid-grid."""
    middle = [divmod(s, COLS) for s in path if 0 < s % COLS < COLS - 1]
    return min((ROWS - 1 - r for r, _ in middle), default=0)


# -- prediction: TD(0) and constant-alpha MC on the random walk -------------------------------

def random_walk_episode(rng: random.Random) -> tuple[list[int], float]:
    """States visited (0..4 = A..E) and the final reward (1 if it leaves E to the right)."""
    s, states = 2, []
    while 0 <= s <= 4:
        states.append(s)
        s += 1 if rng.random() < 0.5 else -1
    return states, 1.0 if s == 5 else 0.0


def rms_curve(method: str, alpha: float, cfg: Config, stream: int) -> np.ndarray:
    """RMS error (over states) after 0..rw_episodes episodes, averaged over rw_runs runs."""
    true = RW_TRUE.tolist()

    def rms(V: list[float]) -> float:
        return math.sqrt(sum((v - t) ** 2 for v, t in zip(V, true)) / len(true))

    errors = np.zeros(cfg.rw_episodes + 1)
    for run_i in range(cfg.rw_runs):
        rng = make_rng(cfg.seed, 2, stream, run_i)
        V = [0.5] * 5
        errors[0] += rms(V)
        for ep in range(1, cfg.rw_episodes + 1):
            states, reward = random_walk_episode(rng)
            if method == "td":
                for t, s in enumerate(states):
                    last = t == len(states) - 1
                    target = reward if last else V[states[t + 1]]  # r = 0 inside, gamma = 1
                    V[s] += alpha * (target - V[s])
            else:  # every-visit constant-alpha MC: the return from every state is the final reward
                for s in states:
                    V[s] += alpha * (reward - V[s])
            errors[ep] += rms(V)
    return errors / cfg.rw_runs


# -- the lab --------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    import gymnasium as gym

    env = gym.make(ENV_ID)
    env.reset(seed=cfg.seed)  # the cliff walk is deterministic; all randomness is the agent's
    emit.start(cfg, total_steps=2 * cfg.runs + 1)

    curves: dict[str, np.ndarray] = {}
    greedy: dict[str, list[tuple[float, list[int], bool]]] = {}
    tables: dict[str, list[list[list[float]]]] = {}
    for k, algo in enumerate(("sarsa", "qlearning")):
        returns, results, qs = [], [], []
        for run_i in range(cfg.runs):
            Q, online = train(env, algo, cfg, make_rng(cfg.seed, 1, k, run_i))
            if not all(np.isfinite(v) for row in Q for v in row):
                raise LabFailure(f"{algo}: the Q table diverged")
            returns.append(online)
            results.append(greedy_path(env, Q, cfg.greedy_max_steps))
            qs.append(Q)
            emit.progress(k * cfg.runs + run_i + 1)
        curves[algo] = np.mean(returns, axis=0)
        greedy[algo] = results
        tables[algo] = qs
    env.close()

    for ep in range(cfg.episodes):  # Figure 6.4: both curves at the same step, one chart
        emit.metric(ep + 1, **{"returns/sarsa": float(curves["sarsa"][ep]),
                               "returns/q_learning": float(curves["qlearning"][ep])})
    emit.log(f"sum of rewards per episode, mean over {cfg.runs} runs: last 100 episodes "
             f"SARSA {np.mean(curves['sarsa'][-100:]):.1f}, Q-learning {np.mean(curves['qlearning'][-100:]):.1f}")

    summary_rows, head = [], {}
    for algo in ("sarsa", "qlearning"):
        online_last = float(np.mean(curves[algo][-100:]))
        g_returns = [g for g, _, _ in greedy[algo]]
        reached = sum(ok for _, _, ok in greedy[algo])
        distance = Counter(rows_above_cliff(p) for _, p, ok in greedy[algo] if ok)
        summary_rows.append([algo, round(online_last, 2), round(float(np.mean(g_returns)), 2),
                             float(np.median(g_returns)), int(max(g_returns)), f"{reached}/{cfg.runs}",
                             ", ".join(f"{d}:{n}" for d, n in sorted(distance.items()))])
        head[f"{algo}_online_return_last100"] = round(online_last, 3)
        head[f"{algo}_greedy_return"] = float(np.median(g_returns))  # median: a run that loops scores -cap
        head[f"{algo}_greedy_reaches_goal"] = round(reached / cfg.runs, 3)
        _, path0, _ = greedy[algo][0]
        grid = draw_path(path0, tables[algo][0])
        emit.table(f"{algo}_path", [str(c) for c in range(COLS)], grid)
        emit.log(f"{algo}: greedy path of run 0 (return {greedy[algo][0][0]:.0f})\n"
                 + "\n".join(" ".join(row) for row in grid))
    emit.table("cliff_walk", ["method", "online_return_last100", "greedy_return_mean", "greedy_return_median",
                              "greedy_return_best", "greedy_reaches_goal", "path_rows_above_cliff(count)"],
               summary_rows)
    head["qlearning_optimal_path_fraction"] = round(
        sum(g == -13 for g, _, _ in greedy["qlearning"]) / cfg.runs, 3)

    # TD(0) vs constant-alpha MC on the random walk
    methods = [("td", a) for a in cfg.td_alphas] + [("mc", a) for a in cfg.mc_alphas]
    rms = {(m, a): rms_curve(m, a, cfg, i) for i, (m, a) in enumerate(methods)}
    for ep in range(cfg.rw_episodes + 1):
        emit.metric(ep, **{f"random_walk/rms_{m}_alpha{a:g}": float(rms[(m, a)][ep]) for m, a in methods})
    marks = sorted({e for e in (0, 1, 10, 25, 50, 100, cfg.rw_episodes) if e <= cfg.rw_episodes})
    emit.table("random_walk_rms", ["method", "alpha", *[f"after_{e}" for e in marks]],
               [[m.upper() if m == "mc" else "TD(0)", a, *[round(float(rms[(m, a)][e]), 4) for e in marks]]
                for m, a in methods])
    best_td = min(cfg.td_alphas, key=lambda a: rms[("td", a)][-1])
    head["td0_best_alpha"] = best_td
    head["td0_rms_final"] = round(float(rms[("td", best_td)][-1]), 4)
    if cfg.mc_alphas:
        best_mc = min(cfg.mc_alphas, key=lambda a: rms[("mc", a)][-1])
        head["mc_rms_final"] = round(float(rms[("mc", best_mc)][-1]), 4)
    emit.progress(2 * cfg.runs + 1)
    emit.summary(head)
