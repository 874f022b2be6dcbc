"""Value iteration and policy iteration on a slippery gridworld; how gamma sets the horizon.

The MDP is the five-tuple (S, A, P, R, gamma) written out as arrays:

    P[s, a, s']   probability that action a in state s lands in s'
    R[s, a]       expected reward of the transition, sum_s' P[s, a, s'] r(s, a, s')
    term[s']      True where s' ends the episode (its value is 0 by definition)

Both planners use the Bellman backup

    Q(s, a) = R[s, a] + gamma * sum_s' P[s, a, s'] (1 - term[s']) V(s')

* Value iteration (Bellman optimality operator, a gamma-contraction in the max norm):
      V_{k+1}(s) = max_a Q_k(s, a),    residual_k = max_s |V_{k+1}(s) - V_k(s)|
  It stops when the residual falls below ``tol``; then ||V_k - V*|| <= gamma/(1-gamma) * residual.
* Policy iteration: evaluate pi exactly by solving the linear system
      (I - gamma P_pi diag(1 - term)) V_pi = R_pi
  then improve greedily, pi(s) <- argmax_a Q_pi(s, a), until the policy stops changing
  (a handful of iterations; each one is a linear solve, not a sweep).

The gamma sweep re-plans for several discounts. A reward k steps away is worth gamma^k,
so the planner effectively looks about 1/(1-gamma) steps ahead: with a small gamma the
greedy policy settles for the near, small exit; with a large one it walks to the far,
big exit and takes the long way round the cliff. For each gamma the exact behaviour of the
greedy policy from the start (probability of each ending, expected episode length) comes
from the absorbing Markov chain it induces, not from sampling.

The default world is this lab's own grid (``world=cliffgrid``); ``world=FrozenLake-v1`` or
``FrozenLake8x8-v1`` plans on gymnasium's slippery lake, read from ``env.unwrapped.P``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labs._runtime import Emitter, LabFailure, Range
from labs.protocol import Chart

ARROWS = "^>v<"  # action 0 up, 1 right, 2 down, 3 left (the cliffgrid's order)
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))

# S start, . floor, # wall, X cliff (-10, ends the episode), a near exit (+1), b far exit (+10)
CLIFFGRID = (
    "........",
    ".......#",
    ".a.....b",
    "S.......",
    "XXXXXXXX",
)
CELL_REWARD = {"X": -10.0, "a": 1.0, "b": 10.0}
WORLDS = ("cliffgrid", "FrozenLake-v1", "FrozenLake8x8-v1")


@dataclass
class Config:
    seed: int = 0  # the planners are deterministic; kept for the runner
    device: str = "cpu"
    world: str = "cliffgrid"  # or FrozenLake-v1 / FrozenLake8x8-v1 (gymnasium's P)
    slip: float = 0.2  # cliffgrid: chance the move goes sideways (half to each side)
    gamma: float = 0.95  # discount of the main run
    tol: float = 1e-10  # value iteration stops when the Bellman residual is below this
    max_sweeps: int = 100_000
    gamma_sweep: tuple[float, ...] = (0.3, 0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 0.999)

    def validate(self) -> None:
        if self.world not in WORLDS:
            raise ValueError(f"world must be one of {', '.join(WORLDS)}")


TOY = {"gamma_sweep": (0.5, 0.7, 0.8, 0.9, 0.99, 0.999)}
LIMITS = {
    "slip": Range(0, 1, high_open=True),
    "gamma": Range(0, 1, low_open=True, high_open=True),
    "gamma_sweep": Range(0, 1, low_open=True, high_open=True),
    "tol": Range(0, 1e-8, low_open=True),
    "max_sweeps": Range(1),
}

CHARTS = [
    Chart("Value iteration: Bellman residual per sweep", y=("vi/bellman_residual",), log_y=True,
          x_label="sweep", y_label="max |V_k+1 - V_k|",
          look_for="A straight line on the log scale: every sweep shrinks the error by a factor of about gamma."),
    # against the horizon on a log axis, not gamma: gamma 0.99 and 0.999 would share one column
    Chart("The discount sets the horizon", table="gamma_sweep", x="horizon_1/(1-gamma)", y=("expected_steps",),
          reference=("horizon_1/(1-gamma)",), log_x=True, log_y=True,
          x_label="horizon 1/(1-gamma)", y_label="steps",
          look_for="Episodes get longer once the horizon 1/(1-gamma) nears the far exit: the planner looks further "
                   "(gamma 0.9: 10 steps)."),
    Chart("Which exit the greedy policy takes", table="gamma_sweep", x="horizon_1/(1-gamma)",
          y=("P(end a)", "P(end b)"), log_x=True, x_label="horizon 1/(1-gamma)", y_label="probability from the start",
          look_for="A short horizon settles for the near +1 exit; past a threshold the far +10 exit wins."),
]


# -- the MDP --------------------------------------------------------------------------------

@dataclass
class MDP:
    P: np.ndarray  # (S, A, S)
    R: np.ndarray  # (S, A)
    term: np.ndarray  # (S,) bool
    start: int
    layout: list[str]  # one string per grid row, one character per cell
    cell_of: list[tuple[int, int]]  # state -> (row, col)
    arrows: str  # action index -> arrow


def make_cliffgrid(slip: float) -> MDP:
    layout = list(CLIFFGRID)
    rows, cols = len(layout), len(layout[0])
    cells = [(r, c) for r in range(rows) for c in range(cols) if layout[r][c] != "#"]
    index = {cell: i for i, cell in enumerate(cells)}
    n_s, n_a = len(cells), len(MOVES)
    P = np.zeros((n_s, n_a, n_s))
    R = np.zeros((n_s, n_a))
    term = np.array([layout[r][c] in CELL_REWARD for r, c in cells])

    def land(cell: tuple[int, int], move: int) -> tuple[int, int]:
        r, c = cell[0] + MOVES[move][0], cell[1] + MOVES[move][1]
        if 0 <= r < rows and 0 <= c < cols and layout[r][c] != "#":
            return r, c
        return cell  # bumping into a wall or the edge leaves you where you were

    for cell, s in index.items():
        if term[s]:
            continue  # terminal: no transitions out (its value is 0)
        for a in range(n_a):
            for move, p in ((a, 1.0 - slip), ((a + 1) % 4, slip / 2), ((a + 3) % 4, slip / 2)):
                if p == 0.0:
                    continue
                nxt = land(cell, move)
                P[s, a, index[nxt]] += p
                R[s, a] += p * CELL_REWARD.get(layout[nxt[0]][nxt[1]], 0.0)
    start = index[next((r, c) for r, c in cells if layout[r][c] == "S")]
    return MDP(P, R, term, start, layout, cells, ARROWS)


def make_frozenlake(name: str) -> MDP:
    """Read gymnasium's transition table: P[s][a] = [(prob, next_state, reward, terminated), ...]."""
    import gymnasium as gym

    env = gym.make(name, is_slippery=True)
    table, desc = env.unwrapped.P, env.unwrapped.desc
    env.close()
    layout = ["".join(ch.decode() for ch in row).replace("F", ".") for row in desc]
    cols = len(layout[0])
    n_s, n_a = len(table), len(table[0])
    P = np.zeros((n_s, n_a, n_s))
    R = np.zeros((n_s, n_a))
    term = np.zeros(n_s, dtype=bool)
    for s in range(n_s):
        r, c = divmod(s, cols)
        if layout[r][c] in "HG":
            continue  # gymnasium loops terminal states onto themselves; here they have value 0
        for a in range(n_a):
            for p, s2, reward, done in table[s][a]:
                P[s, a, s2] += p
                R[s, a] += p * reward
                term[s2] |= bool(done)
    cells = [divmod(s, cols) for s in range(n_s)]
    return MDP(P, R, term, 0, layout, cells, "<v>^")  # FrozenLake: 0 left, 1 down, 2 right, 3 up


def make_world(cfg: Config) -> MDP:
    mdp = make_cliffgrid(cfg.slip) if cfg.world == "cliffgrid" else make_frozenlake(cfg.world)
    live = ~mdp.term
    if not np.allclose(mdp.P[live].sum(axis=-1), 1.0):
        raise LabFailure("transition probabilities do not sum to 1")
    return mdp


# -- planning -------------------------------------------------------------------------------

def q_values(mdp: MDP, V: np.ndarray, gamma: float) -> np.ndarray:
    return mdp.R + gamma * mdp.P @ (np.where(mdp.term, 0.0, V))


def value_iteration(mdp: MDP, gamma: float, tol: float, max_sweeps: int) -> tuple[np.ndarray, list[float]]:
    V = np.zeros(len(mdp.R))
    residuals: list[float] = []
    for _ in range(max_sweeps):
        V_new = np.where(mdp.term, 0.0, q_values(mdp, V, gamma).max(axis=1))
        residuals.append(float(np.max(np.abs(V_new - V))))
        V = V_new
        if residuals[-1] < tol:
            return V, residuals
    raise LabFailure(f"value iteration did not converge in {max_sweeps} sweeps "
                     f"(gamma={gamma}, residual {residuals[-1]:.3g})")


def evaluate_policy(mdp: MDP, pi: np.ndarray, gamma: float) -> np.ndarray:
    n = len(pi)
    P_pi = mdp.P[np.arange(n), pi] * (~mdp.term)[None, :]
    R_pi = mdp.R[np.arange(n), pi]
    return np.linalg.solve(np.eye(n) - gamma * P_pi, R_pi)


def greedy(Q: np.ndarray, previous: np.ndarray | None = None, eps: float = 1e-12) -> np.ndarray:
    """argmax_a Q; keeps the previous action when it is (numerically) tied for best, so PI cannot cycle."""
    best = Q.argmax(axis=1)
    if previous is not None:
        rows = np.arange(len(Q))
        keep = Q[rows, previous] >= Q[rows, best] - eps
        best = np.where(keep, previous, best)
    return best


def policy_iteration(mdp: MDP, gamma: float, max_iters: int = 1000) -> tuple[np.ndarray, np.ndarray, list[int]]:
    pi = np.zeros(len(mdp.R), dtype=int)
    changes: list[int] = []
    for _ in range(max_iters):
        V = evaluate_policy(mdp, pi, gamma)
        new_pi = greedy(q_values(mdp, V, gamma), pi)
        changes.append(int(np.sum(new_pi[~mdp.term] != pi[~mdp.term])))
        pi = new_pi
        if changes[-1] == 0:
            return pi, V, changes
    raise LabFailure(f"policy iteration did not stabilise in {max_iters} iterations")


def outcome_from_start(mdp: MDP, pi: np.ndarray) -> tuple[dict[str, float], float]:
    """Exact behaviour of pi from the start state, from its absorbing Markov chain.

    With T the transient states, Q = P_pi[T, T] and B = P_pi[T, terminal], the probability of
    ending in each terminal is (I - Q)^-1 B and the expected number of steps is (I - Q)^-1 1.
    A policy that can loop forever makes I - Q singular; such starts get 0 probability of ending.
    """
    n = len(pi)
    P_pi = mdp.P[np.arange(n), pi]
    live = np.flatnonzero(~mdp.term)
    dead = np.flatnonzero(mdp.term)
    Q = P_pi[np.ix_(live, live)]
    B = P_pi[np.ix_(live, dead)]
    i = int(np.flatnonzero(live == mdp.start)[0])
    try:
        N = np.linalg.inv(np.eye(len(live)) - Q)
    except np.linalg.LinAlgError:
        return {}, float("inf")
    ends = N[i] @ B
    by_kind: dict[str, float] = {}
    for j, s in enumerate(dead):
        r, c = mdp.cell_of[s]
        kind = mdp.layout[r][c]
        by_kind[kind] = by_kind.get(kind, 0.0) + float(ends[j])
    return by_kind, float(N[i].sum())


# -- drawing --------------------------------------------------------------------------------

def grid_rows(mdp: MDP, per_state) -> list[list[object]]:
    """The grid as rows of cells: walls '#', terminals their letter, other cells per_state(s)."""
    rows: list[list[object]] = [list(line) for line in mdp.layout]
    for s, (r, c) in enumerate(mdp.cell_of):
        if not mdp.term[s]:
            rows[r][c] = per_state(s)
    return rows


def draw(rows: list[list[object]], width: int) -> str:
    return "\n".join(" ".join(str(x).rjust(width) for x in row) for row in rows)


# -- the lab --------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    mdp = make_world(cfg)
    emit.start(cfg, total_steps=1 + len(cfg.gamma_sweep))
    emit.log(f"world {cfg.world}: {int((~mdp.term).sum())} live states, {mdp.R.shape[1]} actions, "
             f"slip={cfg.slip if cfg.world == 'cliffgrid' else 'gymnasium'}\n" + "\n".join(mdp.layout))

    # value iteration, every sweep's residual on the chart
    V_vi, residuals = value_iteration(mdp, cfg.gamma, cfg.tol, cfg.max_sweeps)
    for k, res in enumerate(residuals, start=1):
        emit.metric(k, **{"vi/bellman_residual": res, "vi/log10_residual": float(np.log10(max(res, 1e-300)))})
    pi_vi = greedy(q_values(mdp, V_vi, cfg.gamma))
    emit.log(f"value iteration: residual {residuals[-1]:.2e} after {len(residuals)} sweeps "
             f"(gamma={cfg.gamma}; error bound gamma/(1-gamma)*residual = "
             f"{cfg.gamma / (1 - cfg.gamma) * residuals[-1]:.1e})")

    # policy iteration
    pi_pi, V_pi, changes = policy_iteration(mdp, cfg.gamma)
    for k, n_changed in enumerate(changes, start=1):
        emit.metric(k, **{"pi/policy_changes": n_changed})
    value_gap = float(np.max(np.abs(V_pi - V_vi)))
    if value_gap > 1e-6:
        raise LabFailure(f"policy iteration and value iteration disagree: max |V_pi - V_vi| = {value_gap:.3g}")
    emit.log(f"policy iteration: stable after {len(changes)} improvements "
             f"(states changed per step: {changes}); max |V_PI - V_VI| = {value_gap:.1e}")
    emit.progress(1)

    arrows = grid_rows(mdp, lambda s: mdp.arrows[pi_vi[s]])
    values = grid_rows(mdp, lambda s: round(float(V_vi[s]), 3))
    columns = [str(c) for c in range(len(mdp.layout[0]))]
    emit.table("greedy_policy", columns, arrows)
    emit.table("values", columns, values)
    emit.log(f"greedy policy (gamma={cfg.gamma}):\n{draw(arrows, 1)}")
    emit.log(f"V* (gamma={cfg.gamma}):\n{draw(grid_rows(mdp, lambda s: f'{V_vi[s]:.2f}'), 6)}")

    # gamma sweep: the discount sets how far ahead the planner looks
    kinds = sorted({mdp.layout[r][c] for s, (r, c) in enumerate(mdp.cell_of) if mdp.term[s]})
    sweep_rows = []
    main_ends: dict[str, float] = {}
    for i, g in enumerate(cfg.gamma_sweep):
        V_g, res_g = value_iteration(mdp, g, cfg.tol, cfg.max_sweeps)
        pi_g = greedy(q_values(mdp, V_g, g))
        ends, steps = outcome_from_start(mdp, pi_g)
        if i == len(cfg.gamma_sweep) - 1:
            main_ends = ends
        sweep_rows.append([g, round(1.0 / (1.0 - g), 1), len(res_g), round(float(V_g[mdp.start]), 4),
                           *[round(ends.get(k, 0.0), 3) + 0.0 for k in kinds], round(steps, 2)])
        emit.metric(i + 1, **{"gamma_sweep/gamma": g, "gamma_sweep/sweeps": len(res_g),
                              "gamma_sweep/expected_steps": steps, "gamma_sweep/value_start": float(V_g[mdp.start])})
        emit.log(f"gamma={g}: greedy policy\n{draw(grid_rows(mdp, lambda s: mdp.arrows[pi_g[s]]), 1)}")
        emit.progress(2 + i)
    emit.table("gamma_sweep", ["gamma", "horizon_1/(1-gamma)", "vi_sweeps", "V(start)",
                               *[f"P(end {k})" for k in kinds], "expected_steps"], sweep_rows)

    headline: dict[str, object] = {
        "vi_final_residual": residuals[-1],
        "vi_sweeps": len(residuals),
        "pi_iterations": len(changes),
        "max_abs_V_pi_minus_V_vi": value_gap,
        "policies_agree": bool(np.all(pi_vi[~mdp.term] == pi_pi[~mdp.term])),
        "V_start": float(V_vi[mdp.start]),
    }
    if cfg.world == "cliffgrid":
        far = [row[0] for row in sweep_rows if row[4 + kinds.index("b")] > 0.5]
        headline["smallest_gamma_going_to_far_exit"] = min(far) if far else None
        headline["P(far exit) at largest gamma"] = round(main_ends.get("b", 0.0), 4)
    else:
        headline["P(goal) at largest gamma"] = round(main_ends.get("G", 0.0), 4)
    emit.summary(headline)
