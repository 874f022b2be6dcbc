"""Part 1 of the gae lab: the bias and variance of GAE(lambda) against known truth.

A random walk on a chain of ``chain_states`` states (start in the middle, step left or right
with probability 1/2, reward -1 on falling off the left end and +1 off the right end, plus
zero-mean noise on every reward) has values V we solve for exactly, and
Q(s, a) = E[r | s, a] + gamma V(s') since each move is deterministic. The critic is
imperfect, Vhat = V + e with a fixed perturbation e. Writing out GAE's sum of TD errors
(``labs/gae.py``),

    E[A_t^lambda | s_t, a_t] = Q(s_t, a_t) - Vhat(s_t) + (1 - lambda) gamma u(s_{t+1}),
    u = (I - gamma lambda P_pi)^-1 e,

so we measure each estimate against Q - Vhat, the true advantage taken from the critic's
baseline (it differs from Q - V by -e(s_t), a function of the state alone, which drops out
of the policy gradient because E[grad log pi(a|s)] = 0). The bias shrinks to 0 as lambda -> 1
while the variance grows: more and more random future rewards enter the sum. With a perfect
critic (e = 0) every lambda is unbiased and only the variance changes. Bias and variance are
measured by sampling many episodes and grouping the estimates by (s, a); the bias is also
computed exactly from the formula above, as a check.

``gae_bias_variance`` runs the estimator ``labs.gae.compute_gae`` (the one PPO uses) on
``chain_episodes`` sampled episodes for every lambda in ``lambdas``, with the imperfect and
with a perfect critic, and emits the table, the metrics and its part of the headline.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from labs._runtime import Emitter, LabFailure


def walk_matrix(n: int) -> np.ndarray:
    """P_pi among the n live states of the uniform random walk (falling off either end leaves the chain)."""
    return 0.5 * (np.eye(n, k=1) + np.eye(n, k=-1))


def chain_truth(n: int, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """True V (n states) and Q (n states x 2 actions: 0 left, 1 right) of the uniform random walk."""
    r_left, r_right = np.where(np.arange(n) == 0, -1.0, 0.0), np.where(np.arange(n) == n - 1, 1.0, 0.0)
    V = np.linalg.solve(np.eye(n) - gamma * walk_matrix(n), 0.5 * (r_left + r_right))  # V = r_pi + gamma P V
    V_ext = np.concatenate([[0.0], V, [0.0]])  # terminals on both ends have value 0
    return V, np.stack([r_left + gamma * V_ext[:-2], r_right + gamma * V_ext[2:]], axis=1)


def sample_chain(n: int, episodes: int, noise: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Whole episodes side by side, shape (T, episodes), padded after each episode ends.

    Padding steps have reward 0 and done 1, so they add nothing to any advantage; ``mask``
    marks the real steps.
    """
    s, alive = np.full(episodes, n // 2), np.ones(episodes, dtype=bool)
    out: dict[str, list] = {k: [] for k in ("states", "actions", "rewards", "dones", "mask")}
    while alive.any():
        a = rng.integers(0, 2, size=episodes)
        s2 = s + 2 * a - 1
        r = (np.where(s2 < 0, -1.0, np.where(s2 >= n, 1.0, 0.0)) + noise * rng.standard_normal(episodes)) * alive
        done = (s2 < 0) | (s2 >= n) | ~alive
        for k, v in (("states", s), ("actions", a), ("rewards", r), ("dones", done.astype(float)), ("mask", alive)):
            out[k].append(v.copy())
        alive &= ~done
        s = np.clip(s2, 0, n - 1)
    return {k: np.array(v) for k, v in out.items()}


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


def gae_bias_variance(cfg: Any, emit: Emitter, compute_gae: Callable[..., Any]) -> dict[str, Any]:
    """Part 1 of the lab (see the module docstring); ``cfg`` is a ``labs.gae.Config`` and
    ``compute_gae`` the lab's estimator (passed in: ``labs.gae`` imports this module)."""

    n, gamma = cfg.chain_states, cfg.chain_gamma
    rng = np.random.default_rng([cfg.seed, 1])
    V, Q = chain_truth(n, gamma)
    e = cfg.critic_error * rng.standard_normal(n)
    data = sample_chain(n, cfg.chain_episodes, cfg.reward_noise, rng)
    mask = data["mask"]
    s, a = data["states"][mask], data["actions"][mask]
    group = s * 2 + a
    next_state = np.arange(n)[:, None] + np.array([-1, 1])[None, :]  # (n, 2); -1 or n is terminal
    emit.log(f"chain: {n} states, gamma={gamma}, true V = {np.round(V, 3).tolist()}, "
             f"critic error e = {np.round(e, 3).tolist()}; {int(mask.sum())} sampled steps")

    rows, results, checks = [], {}, {}
    for lam in cfg.lambdas:
        row: list[Any] = [lam]
        for critic, err in (("imperfect", e), ("perfect", np.zeros(n))):
            Vhat = V + err
            values = np.where(mask, Vhat[data["states"]], 0.0)
            adv, _ = compute_gae(data["rewards"], values, data["dones"], np.zeros(cfg.chain_episodes), gamma, lam)
            if critic == "imperfect" and lam in (0.0, 1.0):
                checks[lam] = reference_check(data, values, adv, gamma, lam)
            u = np.linalg.solve(np.eye(n) - gamma * lam * walk_matrix(n), err)
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
