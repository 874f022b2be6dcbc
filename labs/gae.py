"""GAE(lambda): generalised advantage estimation (Schulman et al., 2016).

The one-step TD error and the advantage recursion, computed backwards over a rollout:

    delta_t = r_t + gamma * (1 - d_t) * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - d_t) * A_{t+1}
    R_t     = A_t + V(s_t)            (the lambda-return, the critic's target)

``d_t = 1`` means the episode ended with the transition at step t, so step t neither
bootstraps from V(s_{t+1}) nor carries A_{t+1} back. lambda = 0 gives A_t = delta_t (low
variance, biased by the critic); lambda = 1 gives the Monte-Carlo return minus V(s_t)
(unbiased, high variance).

The lab built around this function is completed in the Phase-1 labs work.
"""

from __future__ import annotations

from typing import Any


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
