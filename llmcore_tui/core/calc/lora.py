"""LoRA: the trainable parameters low-rank adapters add, and the memory they save.

- one adapted d_in x d_out matrix:  r·(d_in + d_out)   (A is r x d_in, B is d_out x r)
- a model:                          L · Σ over adapted matrices of r·(d_in + d_out)
- memory: full fine-tuning (2 + 2 + K)·N bytes with mixed-precision Adam (K = 12); LoRA keeps
  the frozen base in its dtype and (2 + 2 + K) bytes per adapter parameter
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable

from llmcore_tui.core.calc.breakdown import Breakdown, Item
from llmcore_tui.core.calc.memory import zero_memory_breakdown
from llmcore_tui.core.calc.model import ModelConfig
from llmcore_tui.core.calc.units import ADAM_STATE_BYTES, dtype_bytes, format_count, format_number, tidy


#: Shorthands accepted for LoRA target modules.
LORA_TARGET_GROUPS: dict[str, tuple[str, ...]] = {
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qv": ("q_proj", "v_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


def lora_targets(targets: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise target modules: ``"q_proj,v_proj"``, ``["qv"]``, ``"all"`` -> module names."""
    names = [t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets) if t.strip()]
    out: list[str] = []
    for name in names:
        for module in LORA_TARGET_GROUPS.get(name.lower(), (name,)):
            if module not in LORA_TARGET_GROUPS["all"]:
                raise ValueError(f"unknown LoRA target {module!r}; use module names "
                                 f"({', '.join(LORA_TARGET_GROUPS['all'])}) or a group ({', '.join(LORA_TARGET_GROUPS)})")
            if module not in out:
                out.append(module)
    if not out:
        raise ValueError("no LoRA target modules given")
    return tuple(out)


def lora_matrix_params(rank: int, d_in: int, d_out: int) -> int:
    """Trainable parameters LoRA adds to one d_in x d_out matrix: ``r·(d_in + d_out)`` (A is r x d_in, B is d_out x r)."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    return rank * (d_in + d_out)


def lora_params(model: ModelConfig, rank: int, targets: str | Iterable[str] = "qv") -> int:
    """Trainable LoRA parameters: ``L · Σ_targets copies · r·(d_in + d_out)``.

    ``copies`` is 1, except for an MLP matrix of a mixture-of-experts model: every expert
    (routed and shared) has its own gate, up and down and gets its own adapter.
    Llama-2-7B, r = 8 on q_proj and v_proj: 32·2·8·(4096 + 4096) = 4,194,304.
    """
    shapes = model.matrix_shapes()
    mlp = LORA_TARGET_GROUPS["mlp"]
    return model.layers * sum(lora_matrix_params(rank, *shapes[t]) * (model.mlp_copies if t in mlp else 1)
                              for t in lora_targets(targets))


@dataclass(frozen=True)
class LoraEstimate:
    """LoRA against full fine-tuning: trainable parameters and model-state memory of each."""

    rank: int
    targets: tuple[str, ...]
    trainable: int
    total: int
    full: Breakdown
    lora: Breakdown

    @property
    def fraction(self) -> float:
        """Trainable share of the base model's parameters."""
        return self.trainable / self.total

    @property
    def saving_bytes(self) -> float:
        """Model-state bytes saved by LoRA."""
        return tidy(self.full.total - self.lora.total)

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "targets": list(self.targets), "trainable": self.trainable,
                "total": self.total, "fraction": self.fraction, "saving_bytes": self.saving_bytes,
                "full": self.full.to_dict(), "lora": self.lora.to_dict()}


def lora_estimate(model: ModelConfig, rank: int, targets: str | Iterable[str] = "qv",
                  base_dtype: str = "bf16", optimizer_bytes: float = ADAM_STATE_BYTES) -> LoraEstimate:
    """LoRA trainable parameters and the model-state memory it saves (activations excluded).

    Full fine-tuning with mixed-precision Adam: (2 + 2 + K)·N bytes. LoRA: the frozen base
    weights N·bytes(base_dtype) (int4 = QLoRA), plus (2 + 2 + K) bytes per adapter parameter;
    the frozen weights need neither gradients nor optimizer state.
    """
    targets_ = lora_targets(targets)
    n, t = model.params, lora_params(model, rank, targets_)
    base = dtype_bytes(base_dtype)
    full = replace(zero_memory_breakdown(n), title=f"Full fine-tuning of {model.name} (mixed-precision Adam)")
    lora = Breakdown(f"LoRA r={rank} on {model.name}", "bytes", (
        Item(f"frozen base weights ({base_dtype})", tidy(n * base), f"{format_count(n)} · {base} B"),
        Item("adapter weights (fp16)", 2 * t, f"2 B · {format_count(t)}"),
        Item("adapter gradients (fp16)", 2 * t, f"2 B · {format_count(t)}"),
        Item("adapter optimizer states (fp32)", tidy(optimizer_bytes * t), f"{format_number(optimizer_bytes)} B · {format_count(t)}"),
    ), ("activations not included; they are about the same for both",))
    return LoraEstimate(rank, targets_, t, n, full, lora)
