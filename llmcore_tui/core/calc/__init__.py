"""The memory and compute calculator: back-of-the-envelope numbers for a transformer LLM.

Pure Python, standard library only (the TUI imports it at start-up). Every public function
states its formula; the ``*_breakdown`` functions return an itemised :class:`Breakdown` so the
UI, the CLI and the exported brief can show the parts and how each was computed.

Conventions:

- Memory is in **bytes**. ``GiB = 2**30`` (binary) and ``GB = 10**9`` (decimal) are both
  exported; papers mix them (the ZeRO paper uses decimal GB), so say which you mean.
- Parameter counts are plain counts (``7.62e9``), FLOPs are floating-point operations.
- A "model" is a :class:`ModelConfig` (a decoder-only transformer with RMSNorm and a gated
  SwiGLU MLP, as in Llama and Qwen2, or its mixture-of-experts form, as in Mixtral);
  :data:`PRESETS` holds real configurations.

Formulas (N = parameters, L = layers, h = hidden size, a = attention heads):

- weights        = N · bytes_per_param  (fp32 4, bf16/fp16 2, int8 1, int4 0.5)
- KV cache       = 2 · L · kv_heads · head_dim · seq_len · batch · bytes_per_value
- training (ZeRO, mixed-precision Adam, N_d data-parallel GPUs, K = 12):
  stage 0 (plain DP) (2 + 2 + K)·N;  stage 1  (2 + 2)·N + K·N/N_d;
  stage 2  2·N + (2 + K)·N/N_d;      stage 3  (2 + 2 + K)·N/N_d
- LoRA           = Σ over adapted matrices of r · (d_in + d_out)
- activations    = L · s·b·h · (34 + 5·a·s/h) bytes (Korthikanti et al. 2022, fp16, no recompute)
- FLOPs          ≈ 6·N per token to train, 2·N per token for inference; 6·N·D to train on D tokens
- MoE            total counts every expert, active only the top-k a token uses (FLOPs follow
  active); expert-parallel all-to-all = 2 · T · k · h · bytes · (EP − 1)/EP per layer
- speculative decoding: (1 − α^(k+1)) / (1 − α) tokens per target forward

Where things live: ``units`` (quantities, dtypes, formatting), ``breakdown`` (itemised results),
``model`` (configs, presets, parameter counts), ``memory`` (weights, KV cache, ZeRO,
activations), ``lora``, ``flops``, ``moe``, ``speculative`` and ``overview`` (a whole report).
"""

from typing import Any

from llmcore_tui.core.calc.breakdown import Breakdown, Item
from llmcore_tui.core.calc.flops import flops_breakdown, flops_per_token, training_flops
from llmcore_tui.core.calc.lora import (
    LORA_TARGET_GROUPS,
    LoraEstimate,
    lora_estimate,
    lora_matrix_params,
    lora_params,
    lora_targets,
)
from llmcore_tui.core.calc.memory import (
    RECOMPUTE_MODES,
    activation_breakdown,
    activation_bytes,
    kv_cache,
    kv_cache_breakdown,
    kv_cache_bytes,
    weight_bytes,
    weights_breakdown,
    zero_memory_breakdown,
    zero_memory_bytes,
)
from llmcore_tui.core.calc.model import PRESETS, ModelConfig, get_preset, param_breakdown, param_count
from llmcore_tui.core.calc.moe import (
    MoeParams,
    expert_parallel_all_to_all_breakdown,
    expert_parallel_all_to_all_bytes,
    moe_param_counts,
)
from llmcore_tui.core.calc.overview import Report, report
from llmcore_tui.core.calc.speculative import speculative_speedup, speculative_tokens_per_step
from llmcore_tui.core.calc.units import (
    ADAM_STATE_BYTES,
    DTYPE_BYTES,
    GB,
    KB,
    MB,
    TB,
    UNIT_SYSTEMS,
    GiB,
    KiB,
    MiB,
    TiB,
    dtype_bytes,
    format_bytes,
    format_count,
    format_flops,
    format_number,
    format_sci,
    parse_quantity,
    split_quantity,
    tidy,
    unit_system,
)

#: Numeric calculator functions that quizzes may name (parametric questions). Arguments called
#: ``model`` take a preset name.
QUIZ_FUNCTIONS: dict[str, Any] = {
    f.__name__: f
    for f in (weight_bytes, kv_cache_bytes, kv_cache, zero_memory_bytes, lora_matrix_params, lora_params,
              activation_bytes, flops_per_token, training_flops, param_count, dtype_bytes,
              expert_parallel_all_to_all_bytes, speculative_tokens_per_step, speculative_speedup)
}

__all__ = [
    "ADAM_STATE_BYTES", "DTYPE_BYTES", "GB", "GiB", "KB", "KiB", "LORA_TARGET_GROUPS", "MB", "MiB", "PRESETS",
    "QUIZ_FUNCTIONS", "RECOMPUTE_MODES", "TB", "TiB", "UNIT_SYSTEMS", "Breakdown", "Item", "LoraEstimate",
    "ModelConfig", "MoeParams", "Report", "activation_breakdown", "activation_bytes", "dtype_bytes",
    "expert_parallel_all_to_all_breakdown", "expert_parallel_all_to_all_bytes", "flops_breakdown",
    "flops_per_token", "format_bytes", "format_count", "format_flops", "format_number", "format_sci", "get_preset",
    "kv_cache", "kv_cache_breakdown", "kv_cache_bytes", "lora_estimate", "lora_matrix_params", "lora_params",
    "lora_targets", "moe_param_counts", "param_breakdown", "param_count", "parse_quantity", "report",
    "speculative_speedup", "speculative_tokens_per_step", "split_quantity", "tidy", "training_flops",
    "unit_system", "weight_bytes", "weights_breakdown", "zero_memory_breakdown", "zero_memory_bytes",
]
