"""Mixture of experts: parameters stored against parameters used, and expert-parallel traffic.

An MoE block replaces the dense MLP with E experts (each a SwiGLU MLP of 3·h·f parameters) and
a router (h·E) that sends every token to its top-k experts; S shared experts see every token.

- total   = embeddings + attention + norms + head + L·(E·3·h·f + S·3·h·f + h·E)
- active  = the same with k in place of E: all but the experts a token was not routed to.
  Mixtral 8x7B (L = 32, h = 4096, f = 14336, E = 8, k = 2): 46.7B total, 12.9B active.
- Memory follows the total (every expert is stored); FLOPs per token follow the active count.
- Expert parallelism over EP devices (E/EP experts on each): in each MoE layer's forward pass a
  device sends every routed copy of its T tokens to the device holding that expert (dispatch)
  and gets the expert's output back (combine); with routing spread uniformly a share
  (EP − 1)/EP of the copies leaves the device, each time:
  bytes sent = 2 · T · k · h · bytes_per_value · (EP − 1)/EP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmcore_tui.core.calc.breakdown import Breakdown, Item
from llmcore_tui.core.calc.model import ModelConfig, mlp_items, param_breakdown
from llmcore_tui.core.calc.units import dtype_bytes, format_number, tidy


@dataclass(frozen=True)
class MoeParams:
    """Every parameter of a model (``parts``) and those one token's forward pass uses (``active_parts``)."""

    parts: Breakdown
    active_parts: Breakdown

    @property
    def total(self) -> int:
        """Parameters stored: every expert counts."""
        return int(self.parts.total)

    @property
    def active(self) -> int:
        """Parameters a token touches: attention, norms, router, embeddings, its top-k and the shared experts."""
        return int(self.active_parts.total)

    @property
    def active_fraction(self) -> float:
        return self.active / self.total

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "active": self.active, "active_fraction": self.active_fraction,
                "parts": self.parts.to_dict(), "active_parts": self.active_parts.to_dict()}


def moe_param_counts(model: ModelConfig) -> MoeParams:
    """Total and active parameters of ``model`` (see the module docstring for the sums).

    The routed-experts line of :func:`~llmcore_tui.core.calc.model.param_breakdown` (L·E·3·h·f)
    becomes L·k·3·h·f; every other part is used by every token. A dense model uses all its
    parameters: active equals total.
    """
    parts = param_breakdown(model)
    if not model.is_moe:
        return MoeParams(parts, Breakdown(f"Active parameters of {model.name} (dense: all)", "params", parts.items))
    routed_top_k = mlp_items(model, model.experts_per_token)[0]
    items = tuple(routed_top_k if item.label == routed_top_k.label else item for item in parts.items)
    return MoeParams(parts, Breakdown(
        f"Active parameters of {model.name} per token (top-{model.experts_per_token} of {model.experts} experts)",
        "params", items))


def _check_a2a(tokens: float, hidden: int, top_k: int, ep: int) -> None:
    if isinstance(tokens, bool) or not isinstance(tokens, (int, float)) or not tokens >= 0:
        raise ValueError(f"tokens must be a non-negative number, got {tokens!r}")
    for name, value in (("hidden", hidden), ("top_k", top_k), ("ep", ep)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def expert_parallel_all_to_all_bytes(tokens: float, hidden: int, top_k: int, ep: int, dtype: str = "bf16") -> float:
    """Bytes one device sends in one MoE layer's forward pass: dispatch plus combine.

    ``2 · tokens · top_k · hidden · bytes_per_value(dtype) · (ep − 1)/ep``

    ``tokens`` are the tokens on this device; each is routed to ``top_k`` experts spread over
    ``ep`` devices. Assumptions: routing is uniform over the devices (so a share (ep − 1)/ep of
    the routed copies leaves the device), no token is dropped for capacity, and the hidden vector
    travels in ``dtype`` with no compression. Dispatch sends the tokens out, combine brings the
    expert outputs back: the same bytes twice. ``ep = 1`` sends nothing. The backward pass sends
    the same again (gradients retrace both all-to-alls).
    """
    _check_a2a(tokens, hidden, top_k, ep)
    return tidy(2.0 * tokens * top_k * hidden * dtype_bytes(dtype) * (ep - 1) / ep)


def expert_parallel_all_to_all_breakdown(tokens: float, hidden: int, top_k: int, ep: int,
                                         dtype: str = "bf16") -> Breakdown:
    """:func:`expert_parallel_all_to_all_bytes` split into dispatch and combine."""
    half = expert_parallel_all_to_all_bytes(tokens, hidden, top_k, ep, dtype) / 2
    per = dtype_bytes(dtype)
    numbers = f"{format_number(tokens)}·{top_k}·{hidden}·{format_number(per)}·{ep - 1}/{ep}"
    formula = f"T·k·h·B·(EP−1)/EP = {numbers}"
    return Breakdown(
        f"Expert-parallel all-to-all per MoE layer (forward), {format_number(tokens)} tokens, top-{top_k}, EP={ep}",
        "bytes", (Item("dispatch (tokens to experts)", tidy(half), formula),
                  Item("combine (outputs back)", tidy(half), formula)),
        ("uniform routing over devices, no capacity drop; the backward pass sends the same again",))
