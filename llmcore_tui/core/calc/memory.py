"""Memory: weights, KV cache, training memory per GPU under ZeRO, and activations.

Formulas (N = parameters, L = layers, h = hidden size, a = attention heads, s = tokens, b = batch):

- weights        = N · bytes_per_param  (fp32 4, bf16/fp16 2, int8 1, int4 0.5); an MoE model
  stores every expert, so N is its total
- KV cache       = 2 · L · kv_heads · head_dim · s · b · bytes_per_value
- training (ZeRO, mixed-precision Adam, N_d data-parallel GPUs, K = 12):
  stage 0 (plain DP) (2 + 2 + K)·N;  stage 1  (2 + 2)·N + K·N/N_d;
  stage 2  2·N + (2 + K)·N/N_d;      stage 3  (2 + 2 + K)·N/N_d
- activations    = L · s·b·h · (34 + 5·a·s/h) bytes (Korthikanti et al. 2022, fp16, no recompute)
"""

from __future__ import annotations

from llmcore_tui.core.calc.breakdown import Breakdown, Item
from llmcore_tui.core.calc.model import ModelConfig, param_breakdown, params_of
from llmcore_tui.core.calc.units import ADAM_STATE_BYTES, dtype_bytes, format_bytes, format_count, format_number, tidy


# ---------------------------------------------------------------------------------------------
# Weights


def weight_bytes(params: float, dtype: str = "bf16") -> float:
    """Memory of the weights alone: ``params · bytes_per_param(dtype)``. 7e9 in fp16 = 14 GB."""
    return tidy(params_of(params) * dtype_bytes(dtype))


def weights_breakdown(model: ModelConfig | float, dtype: str = "bf16") -> Breakdown:
    """Weight memory by part (for a preset) or as one line (for a bare parameter count)."""
    per = dtype_bytes(dtype)
    if isinstance(model, ModelConfig):
        parts = param_breakdown(model)
        items = tuple(Item(i.label, tidy(i.value * per), f"{format_count(i.value)} params · {per} B")
                      for i in parts.items)
        title = f"Weights of {model.name} in {dtype}"
    else:
        items = (Item("weights", weight_bytes(model, dtype), f"{format_count(model)} params · {per} B"),)
        title = f"Weights in {dtype}"
    return Breakdown(title, "bytes", items)


# ---------------------------------------------------------------------------------------------
# KV cache


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, seq_len: int, batch: int = 1,
                   bytes_per_value: float = 2) -> float:
    """KV cache size: ``2 · layers · kv_heads · head_dim · seq_len · batch · bytes_per_value``.

    The 2 is one K and one V tensor per layer. MHA caches every head (kv_heads = heads); GQA
    and MQA cache only their kv_heads, a saving of heads/kv_heads. Llama-2-7B in fp16 at 4096
    tokens, batch 1: 2·32·32·128·4096·2 B = 2 GiB.
    """
    for name, v in (("layers", layers), ("kv_heads", kv_heads), ("head_dim", head_dim),
                    ("seq_len", seq_len), ("batch", batch), ("bytes_per_value", bytes_per_value)):
        if v < 0:
            raise ValueError(f"{name} must be non-negative, got {v}")
    return tidy(float(2 * layers * kv_heads * head_dim * seq_len * batch) * bytes_per_value)


def kv_cache(model: ModelConfig, seq_len: int, batch: int = 1, dtype: str = "fp16") -> float:
    """KV cache bytes of a model config at ``seq_len`` tokens and ``batch`` sequences."""
    return kv_cache_bytes(model.layers, model.kv_heads, model.head_dim, seq_len, batch, dtype_bytes(dtype))


def kv_cache_breakdown(model: ModelConfig, seq_len: int, batch: int = 1, dtype: str = "fp16") -> Breakdown:
    """The KV cache split into K and V, with the per-token size and the MHA comparison in notes."""
    per = dtype_bytes(dtype)
    half = kv_cache_bytes(model.layers, model.kv_heads, model.head_dim, seq_len, batch, per) / 2
    formula = f"L·kv·d·s·b·B = {model.layers}·{model.kv_heads}·{model.head_dim}·{seq_len}·{batch}·{per}"
    per_token = kv_cache_bytes(model.layers, model.kv_heads, model.head_dim, 1, 1, per)
    notes = [f"{format_bytes(per_token)} per token"]
    if model.kv_heads == model.heads:
        notes.append("MHA: every head has its own K and V")
    else:
        notes.append(f"{model.attention}: {model.kv_heads} of {model.heads} heads cached; MHA would need "
                     f"{model.heads // model.kv_heads}x: {format_bytes(half * 2 * model.heads / model.kv_heads)}")
    return Breakdown(f"KV cache of {model.name}, {seq_len} tokens x {batch}, {dtype}", "bytes",
                     (Item("K", tidy(half), formula), Item("V", tidy(half), formula)), tuple(notes))


# ---------------------------------------------------------------------------------------------
# Training memory: data parallelism and ZeRO


def zero_memory_breakdown(params: ModelConfig | float, gpus: int = 1, stage: int = 0,
                          optimizer_bytes: float = ADAM_STATE_BYTES, weight_bytes_per_param: float = 2,
                          grad_bytes_per_param: float = 2, activation_bytes: float = 0) -> Breakdown:
    """Model-state memory per GPU under data parallelism with ZeRO (Rajbhandari et al., 2020).

    Mixed-precision Adam holds per parameter 2 B fp16 weights, 2 B fp16 gradients and
    K = 12 B of fp32 optimizer state (master weights, momentum, variance). With N_d GPUs:

    - stage 0 (plain DP): (2 + 2 + K)·N on every GPU
    - stage 1 shards the optimizer states:   (2 + 2)·N + K·N/N_d
    - stage 2 also shards the gradients:      2·N + (2 + K)·N/N_d
    - stage 3 also shards the weights:        (2 + 2 + K)·N/N_d

    ZeRO shards model states only: ``activation_bytes`` (per GPU) is added unchanged.
    """
    n = params_of(params)
    if not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be a positive integer, got {gpus!r}")
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage!r}")
    if activation_bytes < 0:
        raise ValueError("activation_bytes must be non-negative")

    def part(label: str, per_param: float, sharded: bool) -> Item:
        shard = f"/{gpus}" if sharded else ""
        return Item(label, tidy(n * per_param / (gpus if sharded else 1)),
                    f"{format_number(per_param)} B · {format_count(n)}{shard}")

    items = [part("weights (fp16)", weight_bytes_per_param, stage >= 3),
             part("gradients (fp16)", grad_bytes_per_param, stage >= 2),
             part("optimizer states (fp32)", optimizer_bytes, stage >= 1)]
    if activation_bytes:
        items.append(Item("activations", tidy(activation_bytes), "not sharded by ZeRO"))
    name = "plain data parallel" if stage == 0 else f"ZeRO stage {stage}"
    return Breakdown(f"Training memory per GPU, {name}, {gpus} GPU{'s' if gpus > 1 else ''}", "bytes", tuple(items))


def zero_memory_bytes(params: float, gpus: int = 1, stage: int = 0, optimizer_bytes: float = ADAM_STATE_BYTES) -> float:
    """Model-state bytes per GPU (see :func:`zero_memory_breakdown`).

    ZeRO paper, 7.5B params on 64 GPUs: 120 GB (DP), 31.4 GB (1), 16.6 GB (2), 1.9 GB (3).
    """
    return zero_memory_breakdown(params, gpus, stage, optimizer_bytes).total


# ---------------------------------------------------------------------------------------------
# Activations

RECOMPUTE_MODES = ("none", "selective", "full")


def activation_bytes(seq_len: int, batch: int, hidden: int, heads: int, layers: int = 1,
                     recompute: str = "none", tp: int = 1, sequence_parallel: bool = False) -> float:
    """Activation memory for the backward pass (Korthikanti et al. 2022, fp16, GPT-style layer).

    Per layer, with s = seq_len, b = batch, h = hidden, a = heads, t = tensor-parallel size:

    - no recomputation:           s·b·h·(34 + 5·a·s/h)
    - with tensor parallelism:    s·b·h·(10 + 24/t + 5·a·s/(h·t))
    - with sequence parallelism:  s·b·h·(34 + 5·a·s/h)/t
    - selective recomputation drops the attention-score term 5·a·s/h; full recomputation
      keeps only each layer's input, 2·s·b·h.

    It counts a 4h MLP and dropout masks, so for SwiGLU/GQA models it is an estimate; the
    embeddings and the output logits are not included.
    """
    if recompute not in RECOMPUTE_MODES:
        raise ValueError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)}, got {recompute!r}")
    for name, v in (("seq_len", seq_len), ("batch", batch), ("hidden", hidden), ("heads", heads),
                    ("layers", layers), ("tp", tp)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")
    s, b, h, a, t = seq_len, batch, hidden, heads, tp
    score = 0.0 if recompute == "selective" else 5 * a * s / h
    if recompute == "full":
        per_layer = 2.0 * s * b * h
    elif sequence_parallel:
        per_layer = s * b * h * (34 + score) / t
    else:
        per_layer = s * b * h * (10 + 24 / t + score / t)
    return tidy(layers * per_layer)


def activation_breakdown(model: ModelConfig, seq_len: int, batch: int = 1, recompute: str = "none",
                         tp: int = 1, sequence_parallel: bool = False) -> Breakdown:
    """Activation memory of ``model`` (see :func:`activation_bytes`), split into the linear
    parts (34·s·b·h per layer) and the attention scores (5·a·s²·b per layer)."""
    full = activation_bytes(seq_len, batch, model.hidden, model.heads, model.layers, recompute, tp, sequence_parallel)
    linear = activation_bytes(seq_len, batch, model.hidden, model.heads, model.layers,
                              "full" if recompute == "full" else "selective", tp, sequence_parallel)
    s, b, h, a = seq_len, batch, model.hidden, model.heads
    if recompute == "full":
        formula = "L·2·s·b·h"
    elif sequence_parallel:
        formula = "L·s·b·h·34/t"
    else:
        formula = "L·s·b·h·(10 + 24/t)" if tp > 1 else "L·s·b·h·34"
    items = [Item("per-layer tensors", linear, formula)]
    if full != linear:
        items.append(Item("attention scores", tidy(full - linear), "L·5·a·s²·b" + ("/t" if tp > 1 else "")))
    notes = [f"Korthikanti et al. 2022: s·b·h·(34 + 5·a·s/h) per layer in fp16 (h={h}, a={a})"]
    if model.is_moe:
        notes.append(f"MoE: counted as one dense MLP; each token's MLP activations are kept for each of "
                     f"its {model.experts_per_token} experts, so this is a lower bound")
    return Breakdown(f"Activations of {model.name}, {s} tokens x {b}, recompute={recompute}", "bytes", tuple(items),
                     tuple(notes))
