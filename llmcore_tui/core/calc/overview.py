"""A whole report: every estimate for one model and setting, section by section (UI and brief)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmcore_tui.core.calc.breakdown import Breakdown
from llmcore_tui.core.calc.flops import flops_breakdown
from llmcore_tui.core.calc.memory import (
    activation_breakdown,
    activation_bytes,
    kv_cache_breakdown,
    weights_breakdown,
    zero_memory_breakdown,
)
from llmcore_tui.core.calc.model import ModelConfig, param_breakdown


@dataclass(frozen=True)
class Report:
    """Every estimate for one model and setting, section by section."""

    model: ModelConfig
    sections: tuple[Breakdown, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.name, "params": self.model.params,
                "sections": [s.to_dict() for s in self.sections]}


def report(model: ModelConfig, seq_len: int = 4096, batch: int = 1, dtype: str = "bf16", gpus: int = 8,
           stage: int = 0, recompute: str = "none") -> Report:
    """Parameters, weights, KV cache, activations and training memory (ZeRO) for ``model``."""
    act = activation_bytes(seq_len, batch, model.hidden, model.heads, model.layers, recompute)
    return Report(model, (
        param_breakdown(model),
        weights_breakdown(model, dtype),
        kv_cache_breakdown(model, seq_len, batch, dtype),
        activation_breakdown(model, seq_len, batch, recompute),
        zero_memory_breakdown(model, gpus, stage, activation_bytes=act),
        flops_breakdown(model),
    ))
