"""Compute: FLOPs per token and for a whole training run.

- per token ≈ 6·N to train (2·N forward + 4·N backward), ≈ 2·N for inference
- a training run on D tokens: C ≈ 6·N·D

N counts the parameters a token passes through: all of them for a dense model, the active
ones for a mixture of experts (see :mod:`llmcore_tui.core.calc.moe`).
"""

from __future__ import annotations

from llmcore_tui.core.calc.breakdown import Breakdown, Item
from llmcore_tui.core.calc.model import ModelConfig, params_of
from llmcore_tui.core.calc.moe import moe_param_counts
from llmcore_tui.core.calc.units import format_count, format_flops, tidy


def compute_params(params: ModelConfig | float) -> float:
    """The N of the FLOP formulas: a model's active parameters (its total if dense), or a count."""
    if isinstance(params, ModelConfig) and params.is_moe:
        return moe_param_counts(params).active
    return params_of(params)


def flops_per_token(params: ModelConfig | float, training: bool = True) -> float:
    """FLOPs per token: ≈ 6·N to train (2·N forward + 4·N backward), ≈ 2·N for inference
    (N: active parameters of an MoE model).

    Ignores the attention-score term (2·L·s·h per token forward), small while s << 6h.
    """
    return tidy((6 if training else 2) * float(compute_params(params)))


def training_flops(params: ModelConfig | float, tokens: float) -> float:
    """Total training compute ``C ≈ 6·N·D`` for N parameters and D training tokens."""
    if tokens < 0:
        raise ValueError(f"tokens must be non-negative, got {tokens}")
    return tidy(6.0 * compute_params(params) * tokens)


def flops_breakdown(params: ModelConfig | float, tokens: float = 0) -> Breakdown:
    """Forward and backward FLOPs per token, and for ``tokens`` tokens of training if given."""
    n = compute_params(params)
    d = tokens or 1
    what = f"{format_count(tokens)} tokens" if tokens else "one token"
    notes = [f"inference: 2·N = {format_flops(2 * n)} per token"]
    if isinstance(params, ModelConfig) and params.is_moe:
        notes.append(f"MoE: N = {format_count(n)} active of {format_count(params.params)} parameters")
    return Breakdown(f"Training FLOPs for {what}", "FLOPs", (
        Item("forward", tidy(2.0 * n * d), f"2·N·D = 2·{format_count(n)}·{format_count(d)}"),
        Item("backward", tidy(4.0 * n * d), f"4·N·D = 4·{format_count(n)}·{format_count(d)}"),
    ), tuple(notes))
