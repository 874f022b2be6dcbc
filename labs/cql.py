"""Offline RL on the cliff walk: naive DQN vs behaviour cloning vs conservative Q-learning (CQL).

The lab collects a fixed data set D with a mediocre behaviour policy on gymnasium's
CliffWalking-v1 (4 x 12 grid, -1 a step, -100 and back to the start for stepping into the cliff,
the episode ends at the goal). In each episode the behaviour policy picks one route: with
probability ``safe_route_prob`` the long safe route along the top row (17 steps), otherwise the
short route along the cliff edge (13 steps); at every step it takes a random action with
probability ``epsilon``. D therefore covers only a fraction of the 48 x 4 state-action pairs.
No learner ever touches the environment again except to evaluate its greedy policy.

All three learners are the same MLP on a one-hot state, trained on minibatches of D:

    behaviour cloning:  min  -log pi(a | s)                                  (imitates D)
    naive offline DQN:  min  ( Q(s,a) - [r + gamma (1 - d) max_a' Q_target(s',a')] )^2
    CQL (discrete, Kumar et al. 2020, CQL(H)):
                        min  TD loss  +  alpha * E_{(s,a) ~ D} [ logsumexp_a' Q(s,a') - Q(s,a) ]

The max in DQN's target reaches actions D never took; nothing in the data corrects their
values, so errors there are copied into every bootstrap target and the values drift upwards
(out-of-distribution overestimation), and the greedy policy heads for actions it knows nothing
about. The CQL term pushes down a soft maximum over all actions while pushing up the actions
in D, so unseen actions end up below the data's values: the greedy policy stays on the data,
but, unlike cloning, it can still pick the better of the routes D contains.

Reported: each greedy policy's return (gamma-free, capped at ``eval_max_steps``) next to the
optimal return, obtained the same way: Q* by value iteration on the environment's known
transition table (Q(s,a) <- sum_s' P(s'|s,a) [r + gamma (1 - d) max_a' Q(s',a')] until it stops
changing), then its greedy policy rolled out in the environment. Also the mean Q on
the (state, action) pairs of D and on out-of-distribution pairs (a state of D with an action D
never took there), both next to the true Q* from value iteration on the known model, and a sweep
of alpha (alpha = 0 is naive DQN).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from labs._runtime import Emitter, LabFailure, Range
from labs._tinylm import cpu_threads
from labs.protocol import Chart

ENV_ID = "CliffWalking-v1"
ROWS, COLS = 4, 12
N_STATES, N_ACTIONS = ROWS * COLS, 4
UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
ARROWS = "^>v<"
START = 36


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    # the data set
    episodes: int = 200
    epsilon: float = 0.01  # behaviour noise
    safe_route_prob: float = 0.6
    max_episode_steps: int = 100
    # learners
    gamma: float = 0.99
    hidden: int = 64
    lr: float = 1e-3
    batch_size: int = 128
    train_steps: int = 3000
    target_every: int = 25  # hard target-network update period (DQN and CQL)
    cql_alpha: float = 1.0
    alpha_sweep: tuple[float, ...] = (0.1, 0.5, 1.0, 5.0)  # plus 0 (naive DQN) and cql_alpha
    eval_max_steps: int = 100
    log_every: int = 100

    def validate(self) -> None:
        if self.episodes < 1 or self.train_steps < 1 or self.batch_size < 1:
            raise ValueError("episodes, train_steps and batch_size must be positive")
        if not 0.0 <= self.epsilon <= 1.0 or not 0.0 <= self.safe_route_prob <= 1.0:
            raise ValueError("epsilon and safe_route_prob must be in [0, 1]")
        if not 0.0 < self.gamma < 1.0:
            raise ValueError("gamma must be in (0, 1)")
        if self.cql_alpha <= 0 or any(a < 0 for a in self.alpha_sweep):
            raise ValueError("cql_alpha must be > 0 and the swept alphas >= 0")
        if self.eval_max_steps < 13:
            raise ValueError("eval_max_steps must be >= 13 (the shortest path)")


LIMITS = {"episodes": Range(1), "epsilon": Range(0, 1), "safe_route_prob": Range(0, 1),
          "max_episode_steps": Range(1), "gamma": Range(0, 1, low_open=True, high_open=True), "hidden": Range(1),
          "lr": Range(0, low_open=True), "batch_size": Range(1), "train_steps": Range(1), "target_every": Range(1),
          "cql_alpha": Range(0, low_open=True), "alpha_sweep": Range(0, may_be_empty=True), "eval_max_steps": Range(13),
          "log_every": Range(1)}

TOY = {"train_steps": 1000, "alpha_sweep": (5.0,)}

CHARTS = [
    Chart("Overestimation of actions outside the data", table="alpha_sweep", x="alpha",
          y=("Q_minus_Qstar_ood", "best_ood_minus_best_data"), x_label="CQL alpha (0: naive DQN)",
          y_label="Q - Q*, best unseen - best seen",
          look_for="At alpha 0 unseen actions are overestimated; the CQL penalty pushes them below Q*."),
    Chart("Return of the greedy policy vs alpha", table="alpha_sweep", x="alpha", y=("greedy_return",),
          x_label="CQL alpha (0: naive DQN)", y_label="return (-13 optimal, -100 the cliff)",
          look_for="Naive DQN trusts its overestimates and falls off the cliff; with the penalty it reaches the goal."),
]


# -- the data set --------------------------------------------------------------------------

def route_action(state: int, safe: bool) -> int:
    """The behaviour policy's intended action: up to row 0 (safe) or row 2 (edge), right, then down."""
    row, col = divmod(state, COLS)
    lane = 0 if safe else 2
    if col == COLS - 1:
        return DOWN
    if row > lane:
        return UP
    if row < lane:
        return DOWN
    return RIGHT


def collect(cfg: Config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    env = gym.make(ENV_ID)
    data: dict[str, list] = {"s": [], "a": [], "r": [], "s2": [], "done": []}
    returns = []
    for _ in range(cfg.episodes):
        s, _ = env.reset(seed=int(rng.integers(2**31)))
        safe = rng.random() < cfg.safe_route_prob
        total = 0.0
        for _ in range(cfg.max_episode_steps):
            a = int(rng.integers(N_ACTIONS)) if rng.random() < cfg.epsilon else route_action(s, safe)
            s2, r, terminated, truncated, _ = env.step(a)
            for key, value in zip(data, (s, a, r, s2, float(terminated))):
                data[key].append(value)
            total += r
            s = s2
            if terminated:
                break
        returns.append(total)
    env.close()
    out = {k: np.asarray(v) for k, v in data.items()}
    out["returns"] = np.asarray(returns)
    return out


def true_q(gamma: float, sweeps: int = 2000) -> np.ndarray:
    """Q* by value iteration on the environment's known transition table."""
    P = gym.make(ENV_ID).unwrapped.P
    Q = np.zeros((N_STATES, N_ACTIONS))
    for _ in range(sweeps):
        V = Q.max(axis=1)
        new = np.array([[sum(p * (r + gamma * (0.0 if d else V[s2])) for p, s2, r, d in P[s][a])
                         for a in range(N_ACTIONS)] for s in range(N_STATES)])
        if np.abs(new - Q).max() < 1e-10:
            return new
        Q = new
    return Q


# -- learners ------------------------------------------------------------------------------

def make_net(cfg: Config) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(N_STATES, cfg.hidden), torch.nn.ReLU(),
                               torch.nn.Linear(cfg.hidden, cfg.hidden), torch.nn.ReLU(),
                               torch.nn.Linear(cfg.hidden, N_ACTIONS))


def cql_penalty(q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of logsumexp_a Q(s,a) - Q(s, a_data); q is (batch, actions)."""
    return (torch.logsumexp(q, dim=1) - q.gather(1, actions[:, None]).squeeze(1)).mean()


def train(kind: str, cfg: Config, D: dict[str, torch.Tensor], alpha: float, seed: int,
          on_log=None) -> torch.nn.Module:
    """kind: 'bc' (cross-entropy on D's actions) or 'q' (DQN TD loss + alpha * CQL penalty)."""
    torch.manual_seed(seed)
    net = make_net(cfg).to(cfg.device)
    target = make_net(cfg).to(cfg.device)
    target.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(D["a"])
    for step in range(1, cfg.train_steps + 1):
        idx = torch.randint(n, (cfg.batch_size,), generator=gen).to(cfg.device)
        s, a = D["s"][idx], D["a"][idx]
        logits = net(s)
        if kind == "bc":
            loss = F.cross_entropy(logits, a)
            parts = {"losses/bc": loss.item()}
        else:
            with torch.no_grad():
                y = D["r"][idx] + cfg.gamma * (1 - D["done"][idx]) * target(D["s2"][idx]).max(dim=1).values
            td = F.mse_loss(logits.gather(1, a[:, None]).squeeze(1), y)
            penalty = cql_penalty(logits, a)
            loss = td + alpha * penalty
            parts = {"losses/td": td.item(), "losses/cql_penalty": penalty.item()}
        opt.zero_grad()
        loss.backward()
        opt.step()
        if kind == "q" and step % cfg.target_every == 0:
            target.load_state_dict(net.state_dict())
        if on_log and step % cfg.log_every == 0:
            on_log(step, parts, net)
    return net


def q_table(net: torch.nn.Module) -> np.ndarray:
    device = next(net.parameters()).device
    with torch.no_grad():
        return net(torch.eye(N_STATES, device=device)).cpu().numpy().astype(np.float64)


def ood_gaps(table: np.ndarray, covered: np.ndarray, ood: np.ndarray) -> np.ndarray:
    """Per state with unseen actions: best unseen action's Q minus best seen action's Q (> 0: the
    greedy policy would leave the data there)."""
    states = np.flatnonzero(ood.any(axis=1))
    return np.array([table[s][ood[s]].max() - table[s][covered[s]].max() for s in states])


def greedy_return(table: np.ndarray, max_steps: int) -> tuple[float, list[int], bool]:
    """Undiscounted return of the greedy policy from the start (deterministic env), its path, and
    whether it reached the goal within max_steps."""
    env = gym.make(ENV_ID)
    s, _ = env.reset(seed=0)
    total, path = 0.0, [s]
    for _ in range(max_steps):
        s, r, terminated, _, _ = env.step(int(table[s].argmax()))
        total += r
        path.append(s)
        if terminated:
            return total, path, True
    return total, path, False


def draw_policy(table: np.ndarray, path: list[int], covered: np.ndarray) -> list[list[str]]:
    """Greedy arrows on the states the policy visits; '.' elsewhere, 'C' the cliff, 'G' the goal."""
    rows = [["." for _ in range(COLS)] for _ in range(ROWS)]
    for c in range(1, COLS - 1):
        rows[3][c] = "C"
    rows[3][COLS - 1] = "G"
    for s in path[:-1]:
        r, c = divmod(s, COLS)
        a = int(table[s].argmax())
        rows[r][c] = ARROWS[a] if covered[s, a] else ARROWS[a] + "?"  # ? marks an action D never took there
    return rows


# -- the lab -------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    alphas = sorted(set(cfg.alpha_sweep) | {0.0, cfg.cql_alpha})  # alpha = 0 is naive DQN
    n_runs = 1 + len(alphas)  # behaviour cloning, then one Q-learner per alpha
    emit.start(cfg, total_steps=n_runs * cfg.train_steps)
    with cpu_threads(1):  # tiny matmuls: a second thread only adds contention on a shared CPU
        _run(cfg, emit, out_dir, alphas)


def _run(cfg: Config, emit: Emitter, out_dir: Path, alphas: list[float]) -> None:
    rng = np.random.default_rng(cfg.seed)
    data = collect(cfg, rng)
    covered = np.zeros((N_STATES, N_ACTIONS), dtype=bool)
    covered[data["s"], data["a"]] = True
    seen_states = covered.any(axis=1)
    ood = seen_states[:, None] & ~covered  # a state of D with an action D never took there
    if not ood.any():
        raise LabFailure("the data set covers every action of every state it visits; lower epsilon")
    emit.log(f"data set: {len(data['a'])} transitions from {cfg.episodes} episodes, behaviour return "
             f"{data['returns'].mean():.1f} (mean), covering {covered.sum()} of {N_STATES * N_ACTIONS} "
             f"state-action pairs; {ood.sum()} unseen pairs in visited states")
    Qstar = true_q(cfg.gamma)
    optimal_return, _, optimal_reached = greedy_return(Qstar, cfg.eval_max_steps)
    if not optimal_reached:
        raise LabFailure("the greedy policy of Q* did not reach the goal: value iteration went wrong")
    D = {"s": F.one_hot(torch.as_tensor(data["s"]), N_STATES).float(),
         "a": torch.as_tensor(data["a"]),
         "r": torch.as_tensor(data["r"], dtype=torch.float32),
         "s2": F.one_hot(torch.as_tensor(data["s2"]), N_STATES).float(),
         "done": torch.as_tensor(data["done"], dtype=torch.float32)}
    D = {k: v.to(cfg.device) for k, v in D.items()}

    done_steps = 0

    def fit(kind: str, alpha: float, name: str, seed_offset: int) -> dict:
        nonlocal done_steps
        base = done_steps

        def on_log(step: int, parts: dict, net: torch.nn.Module) -> None:
            if kind == "q":  # watch the values drift (or not) while training
                table = q_table(net)
                parts = {**parts, "charts/q_data": table[covered].mean(), "charts/q_ood": table[ood].mean()}
            emit.metric(base + step, **{f"{k}_{name}": v for k, v in parts.items()})
            emit.progress(base + step)

        t0 = time.perf_counter()
        net = train(kind, cfg, D, alpha, cfg.seed * 1000 + seed_offset, on_log)
        done_steps += cfg.train_steps
        table = q_table(net)
        ret, path, reached = greedy_return(table, cfg.eval_max_steps)
        res = {"name": name, "return": ret, "reached_goal": reached, "path": path, "table": table,
               "seconds": time.perf_counter() - t0}
        if kind == "q":
            res["q_data"] = table[covered].mean()
            res["q_ood"] = table[ood].mean()
            res["over_data"] = (table - Qstar)[covered].mean()
            res["over_ood"] = (table - Qstar)[ood].mean()
            gaps = ood_gaps(table, covered, ood)
            res["ood_gap"] = float(gaps.mean())
            res["ood_looks_best"] = float((gaps > 0).mean())
        return res

    bc = fit("bc", 0.0, "bc", 1)
    by_alpha = {a: fit("q", a, "dqn" if a == 0 else f"cql_alpha{a:g}", 2) for a in alphas}
    dqn, cql = by_alpha[0.0], by_alpha[cfg.cql_alpha]

    q_cols = ["method", "greedy_return", "reached_goal", "mean_Q_data", "mean_Q_ood",
              "Q_minus_Qstar_data", "Q_minus_Qstar_ood", "best_ood_minus_best_data", "states_where_ood_looks_best"]
    rows = [["behaviour policy (mean of D)", float(data["returns"].mean()), None, None, None, None, None, None, None],
            ["behaviour cloning", bc["return"], bc["reached_goal"], None, None, None, None, None, None]]
    for label, res in (("naive offline DQN", dqn), (f"CQL alpha={cfg.cql_alpha:g}", cql)):
        rows.append([label, res["return"], res["reached_goal"], res["q_data"], res["q_ood"], res["over_data"],
                     res["over_ood"], res["ood_gap"], res["ood_looks_best"]])
    star_gaps = ood_gaps(Qstar, covered, ood)
    rows.append(["Q* (true, for reference)", optimal_return, optimal_reached, Qstar[covered].mean(),
                 Qstar[ood].mean(), 0.0, 0.0, star_gaps.mean(), (star_gaps > 0).mean()])
    emit.table("offline_rl", q_cols, rows)
    emit.table("alpha_sweep", ["alpha", "greedy_return", "mean_Q_data", "mean_Q_ood", "Q_minus_Qstar_ood",
                               "best_ood_minus_best_data"],
               [[a, r["return"], r["q_data"], r["q_ood"], r["over_ood"], r["ood_gap"]] for a, r in by_alpha.items()])
    for label, res in (("bc_path", bc), ("dqn_path", dqn), ("cql_path", cql)):
        emit.table(label, [str(c) for c in range(COLS)], draw_policy(res["table"], res["path"], covered))
    emit.metric(done_steps, **{"eval/return_bc": bc["return"], "eval/return_dqn": dqn["return"],
                               "eval/return_cql": cql["return"], "eval/q_ood_dqn": dqn["q_ood"],
                               "eval/q_ood_cql": cql["q_ood"]})
    np.savez(out_dir / "q_tables.npz", dqn=dqn["table"], cql=cql["table"], bc_logits=bc["table"], q_star=Qstar,
             covered=covered)
    emit.summary({
        "behaviour_return": float(data["returns"].mean()),
        "coverage_fraction": float(covered.mean()),
        "bc_return": bc["return"],
        "dqn_return": dqn["return"],
        "cql_return": cql["return"],
        "dqn_q_data": dqn["q_data"],
        "dqn_q_ood": dqn["q_ood"],
        "cql_q_data": cql["q_data"],
        "cql_q_ood": cql["q_ood"],
        "dqn_overestimation_ood": dqn["over_ood"],
        "dqn_ood_gap": dqn["ood_gap"],
        "cql_ood_gap": cql["ood_gap"],
        "cql_overestimation_ood": cql["over_ood"],
        "optimal_return": optimal_return,
    }, artifacts=["q_tables.npz"])
