"""Speculative decoding: how many tokens one forward pass of the large model yields.

A small draft model proposes k tokens; the target model checks all k in one forward pass,
keeps the accepted prefix (up to the first rejection) and adds one token of its own: the
corrected token at a rejection, or a bonus token when all k pass. With each draft token
accepted independently with probability α (Leviathan et al. 2023, "Fast Inference from
Transformers via Speculative Decoding"), at least i + 1 tokens come out with probability α^i
(i = 0..k), so

    E[tokens per target forward] = Σ_{i=0}^{k} α^i = (1 − α^(k+1)) / (1 − α)

α = 0 gives 1 (no gain), α = 1 gives k + 1. If a draft forward costs c target forwards, the
expected wall-time speed-up over plain decoding is (1 − α^(k+1)) / ((1 − α)·(k·c + 1)).
"""

from __future__ import annotations


def _check(alpha: float, k: int) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"acceptance rate alpha must be a number from 0 to 1, got {alpha!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"look-ahead k must be a whole number of draft tokens, at least 1, got {k!r}")


def speculative_tokens_per_step(alpha: float, k: int) -> float:
    """Expected tokens per target forward: ``(1 − α^(k+1)) / (1 − α)``; ``k + 1`` at α = 1.

    ``alpha`` is the chance each draft token is accepted (independently), ``k`` the number of
    draft tokens per step. ValueError outside 0 ≤ α ≤ 1 or for k < 1.
    """
    _check(alpha, k)
    if alpha == 1:
        return float(k + 1)  # the closed form is 0/0 here; the sum is k + 1 ones
    return (1 - alpha ** (k + 1)) / (1 - alpha)


def speculative_speedup(alpha: float, k: int, draft_cost: float) -> float:
    """Expected wall-time speed-up over plain decoding: tokens per step / (k·c + 1).

    Each step runs the draft k times (each costing ``draft_cost`` = c target forwards) and the
    target once. ValueError for c < 0.
    """
    if isinstance(draft_cost, bool) or not isinstance(draft_cost, (int, float)) or not draft_cost >= 0:
        raise ValueError(f"draft cost must be a non-negative number (a draft forward / a target forward), "
                         f"got {draft_cost!r}")
    return speculative_tokens_per_step(alpha, k) / (k * draft_cost + 1)
