"""Model configurations: :class:`ModelConfig`, the real :data:`PRESETS`, and parameter counts.

A model is a decoder-only transformer with RMSNorm, rotary positions and a gated SwiGLU MLP
(Llama, Qwen2), or its mixture-of-experts form (Mixtral), where each block's MLP is replaced by
``experts`` copies and a router sends every token to ``experts_per_token`` of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from llmcore_tui.core.calc.breakdown import Breakdown, Item


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer (Llama/Qwen2 family): RMSNorm, rotary positions, SwiGLU MLP.

    ``head_dim`` defaults to ``hidden // heads``. ``kv_heads == heads`` is multi-head attention
    (MHA), ``kv_heads == 1`` multi-query (MQA), anything between grouped-query (GQA).
    ``qkv_bias`` adds biases to the q/k/v projections (Qwen2). ``tie_embeddings`` shares the
    input embedding with the output head.

    Mixture of experts: ``experts`` routed expert MLPs per block (0 = a dense MLP), each of
    size ``intermediate``; a router sends each token to ``experts_per_token`` of them (top-k);
    ``shared_experts`` more MLPs of the same size see every token (DeepSeekMoE).
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    head_dim: int = 0
    qkv_bias: bool = False
    tie_embeddings: bool = False
    published_params: float | None = None
    source: str = ""
    experts: int = 0
    experts_per_token: int = 0
    shared_experts: int = 0

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if not self.head_dim:
            if self.hidden % self.heads:
                raise ValueError(f"hidden ({self.hidden}) is not a multiple of heads ({self.heads}); give head_dim")
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        elif self.head_dim < 0:
            raise ValueError(f"head_dim must be positive, got {self.head_dim}")
        self._check_experts()

    def _check_experts(self) -> None:
        for name in ("experts", "experts_per_token", "shared_experts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not self.experts:
            if self.experts_per_token or self.shared_experts:
                raise ValueError("experts_per_token and shared_experts need experts > 0 (a mixture-of-experts model)")
        elif not 1 <= self.experts_per_token <= self.experts:
            raise ValueError(f"experts_per_token (top-k) must be from 1 to experts ({self.experts}), "
                             f"got {self.experts_per_token}")

    @property
    def attention(self) -> str:
        """``"MHA"``, ``"MQA"`` or ``"GQA"``."""
        if self.kv_heads == self.heads:
            return "MHA"
        return "MQA" if self.kv_heads == 1 else "GQA"

    @property
    def is_moe(self) -> bool:
        """Whether the MLP is a mixture of experts (``experts > 0``)."""
        return self.experts > 0

    @property
    def mlp_copies(self) -> int:
        """MLPs of size ``intermediate`` in one block: 1 if dense, else routed plus shared experts."""
        return self.experts + self.shared_experts if self.is_moe else 1

    @property
    def mlp_params(self) -> int:
        """Parameters of one MLP (one expert): gate, up and down, ``3·h·f``."""
        return 3 * self.hidden * self.intermediate

    @cached_property
    def params(self) -> int:
        """Total parameter count (see :func:`param_breakdown`)."""
        return int(param_breakdown(self).total)

    def matrix_shapes(self) -> dict[str, tuple[int, int]]:
        """``(d_in, d_out)`` of each linear layer in one block (of one expert, for the MLP), by
        Hugging Face module name."""
        q, kv, h, f = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden, self.intermediate
        return {
            "q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h),
        }


PRESETS: dict[str, ModelConfig] = {
    m.name: m
    for m in (
        ModelConfig("llama-2-7b", layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=11008,
                    vocab=32000, published_params=6.74e9, source="meta-llama/Llama-2-7b-hf config.json"),
        ModelConfig("llama-3-8b", layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336,
                    vocab=128256, published_params=8.03e9, source="meta-llama/Meta-Llama-3-8B config.json"),
        ModelConfig("qwen2.5-7b", layers=28, hidden=3584, heads=28, kv_heads=4, intermediate=18944,
                    vocab=152064, qkv_bias=True, published_params=7.62e9, source="Qwen/Qwen2.5-7B config.json"),
        ModelConfig("mixtral-8x7b", layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336,
                    vocab=32000, experts=8, experts_per_token=2, published_params=46.7e9,
                    source="mistralai/Mixtral-8x7B-v0.1 config.json; Jiang et al. 2024: 47B total, 13B active"),
    )
}


def get_preset(name: str) -> ModelConfig:
    """The preset called ``name`` (case and ``_``/``-``/space insensitive: ``Llama-3-8B``, ``llama3_8b``)."""
    def norm(s: str) -> str:
        return re.sub(r"[\s_\-]", "", s.lower())

    for key, model in PRESETS.items():
        if norm(key) == norm(name):
            return model
    raise KeyError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")


def param_breakdown(model: ModelConfig) -> Breakdown:
    """Parameters by part, from the config.

    - embeddings: vocab·h; output head: vocab·h unless tied
    - attention per layer: h·(a·d) + 2·h·(kv·d) + (a·d)·h   (q, k, v, o; d = head_dim)
      plus a·d + 2·kv·d biases with ``qkv_bias``
    - MLP per layer: 3·h·f   (gate, up, down; f = intermediate)
    - mixture of experts, per layer: E·3·h·f routed experts, S·3·h·f shared experts and an
      h·E router (a linear layer without bias scoring each expert)
    - norms: 2·h per layer plus a final h (RMSNorm has a scale, no bias)
    """
    m = model
    shapes = m.matrix_shapes()
    attn = sum(shapes[k][0] * shapes[k][1] for k in ("q_proj", "k_proj", "v_proj", "o_proj"))
    bias = (m.heads + 2 * m.kv_heads) * m.head_dim if m.qkv_bias else 0
    items = [
        Item("embeddings", m.vocab * m.hidden, f"vocab·h = {m.vocab}·{m.hidden}"),
        Item("attention", m.layers * (attn + bias),
             f"L·(h·a·d + 2·h·kv·d + a·d·h{' + biases' if bias else ''}) = {m.layers}·{attn + bias}"),
        *mlp_items(m, m.experts),
        Item("norms", (2 * m.layers + 1) * m.hidden, f"(2·L + 1)·h = {2 * m.layers + 1}·{m.hidden}"),
    ]
    if not m.tie_embeddings:
        items.append(Item("output head", m.vocab * m.hidden, f"vocab·h = {m.vocab}·{m.hidden}"))
    return Breakdown(f"Parameters of {m.name}", "params", tuple(items))


def mlp_items(model: ModelConfig, routed: int) -> list[Item]:
    """The MLP lines of :func:`param_breakdown`: one dense MLP per layer, or ``routed`` of the
    routed experts (all of them for the total, top-k for what one token uses), the shared
    experts and the router."""
    m, f = model, model.intermediate
    if not m.is_moe:
        return [Item("mlp", m.layers * m.mlp_params, f"L·3·h·f = {m.layers}·3·{m.hidden}·{f}")]
    items = [Item("routed experts", m.layers * routed * m.mlp_params,
                  f"L·{'E' if routed == m.experts else 'k'}·3·h·f = {m.layers}·{routed}·3·{m.hidden}·{f}")]
    if m.shared_experts:
        items.append(Item("shared experts", m.layers * m.shared_experts * m.mlp_params,
                          f"L·S·3·h·f = {m.layers}·{m.shared_experts}·3·{m.hidden}·{f}"))
    items.append(Item("router", m.layers * m.hidden * m.experts, f"L·h·E = {m.layers}·{m.hidden}·{m.experts}"))
    return items


def param_count(model: ModelConfig) -> int:
    """Total parameters of ``model`` (the sum of :func:`param_breakdown`; every expert counts)."""
    return model.params


def params_of(model_or_params: ModelConfig | float) -> float:
    """A parameter count: a model's total, or a number given directly (ValueError if negative)."""
    if isinstance(model_or_params, ModelConfig):
        return model_or_params.params
    if model_or_params < 0:
        raise ValueError(f"parameter count must be non-negative, got {model_or_params}")
    return model_or_params
