"""The memory and compute calculator: back-of-the-envelope numbers for a transformer LLM.

Pure Python, standard library only (the TUI imports it at start-up). Every public function
states its formula; the ``*_breakdown`` functions return an itemised :class:`Breakdown` so the
UI, the CLI and the exported brief can show the parts and how each was computed.

Conventions:

- Memory is in **bytes**. ``GiB = 2**30`` (binary) and ``GB = 10**9`` (decimal) are both
  exported; papers mix them (the ZeRO paper uses decimal GB), so say which you mean.
- Parameter counts are plain counts (``7.62e9``), FLOPs are floating-point operations.
- A "model" is a :class:`ModelConfig` (a decoder-only transformer with RMSNorm and a gated
  SwiGLU MLP, as in Llama and Qwen2); :data:`PRESETS` holds real configurations.

Formulas (N = parameters, L = layers, h = hidden size, a = attention heads):

- weights        = N · bytes_per_param  (fp32 4, bf16/fp16 2, int8 1, int4 0.5)
- KV cache       = 2 · L · kv_heads · head_dim · seq_len · batch · bytes_per_value
- training (ZeRO, mixed-precision Adam, N_d data-parallel GPUs, K = 12):
  stage 0 (plain DP) (2 + 2 + K)·N;  stage 1  (2 + 2)·N + K·N/N_d;
  stage 2  2·N + (2 + K)·N/N_d;      stage 3  (2 + 2 + K)·N/N_d
- LoRA           = Σ over adapted matrices of r · (d_in + d_out)
- activations    = L · s·b·h · (34 + 5·a·s/h) bytes (Korthikanti et al. 2022, fp16, no recompute)
- FLOPs          ≈ 6·N per token to train, 2·N per token for inference; 6·N·D to train on D tokens
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Iterable

# ---------------------------------------------------------------------------------------------
# Units

KiB = 2**10
MiB = 2**20
GiB = 2**30
TiB = 2**40
KB = 10**3
MB = 10**6
GB = 10**9
TB = 10**12

#: Bytes per stored value for each supported dtype. int4 packs two values in a byte.
DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "int4": 0.5}

#: Mixed-precision Adam keeps an fp32 master copy, momentum and variance: 4 + 4 + 4 bytes/param.
ADAM_STATE_BYTES = 12


def dtype_bytes(dtype: str) -> float:
    """Bytes per value of ``dtype`` (``fp32`` 4, ``bf16``/``fp16`` 2, ``int8`` 1, ``int4`` 0.5)."""
    key = dtype.strip().lower()
    key = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}.get(key, key)
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[key]


#: Unit systems understood by :func:`parse_quantity`: unit name -> factor to the base unit.
#: Unit names are matched case-insensitively, except in ``count`` where they are short
#: multipliers (k, M, B = billion, T) and the Chinese 千 / 万 / 亿.
UNIT_SYSTEMS: dict[str, dict[str, float]] = {
    "bytes": {
        "b": 1, "byte": 1, "bytes": 1, "字节": 1,
        "kb": KB, "mb": MB, "gb": GB, "tb": TB,
        "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
    },
    "count": {
        "": 1, "k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6,
        "b": 1e9, "bn": 1e9, "billion": 1e9, "t": 1e12, "trillion": 1e12,
        "千": 1e3, "万": 1e4, "亿": 1e8,
    },
    "flops": {
        "flop": 1, "flops": 1,
        "kflop": 1e3, "kflops": 1e3, "mflop": 1e6, "mflops": 1e6,
        "gflop": 1e9, "gflops": 1e9, "tflop": 1e12, "tflops": 1e12,
        "pflop": 1e15, "pflops": 1e15, "eflop": 1e18, "eflops": 1e18,
        "zflop": 1e21, "zflops": 1e21,
    },
    "percent": {"%": 1, "percent": 1},
}


def unit_system(unit: str) -> str | None:
    """The name of the unit system ``unit`` belongs to (``"bytes"``, ``"count"``, ...), or None.

    A bare number (``unit == ""``) belongs to ``count``. ``B`` is read as bytes here; inside a
    count answer :func:`parse_quantity` reads it as billion.
    """
    key = unit.strip().lower()
    for name in ("bytes", "flops", "percent", "count"):
        if key in UNIT_SYSTEMS[name]:
            return name
    return None


_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?"
_QUANTITY = re.compile(
    rf"^\s*(?P<num>{_NUMBER})"
    r"(?:\s*(?:\^\s*(?P<pow>[-+]?\d+)|\s*(?:[x×*·]|\\times|\\cdot)\s*10\s*\^\s*\{?(?P<exp>[-+]?\d+)\}?))?"
    r"\s*(?P<unit>[^\d\s].*?)?\s*$"
)


def split_quantity(text: str) -> tuple[float, str]:
    """Split ``"2 GiB"`` into ``(2.0, "GiB")``. Accepts ``1,024``, ``6e23``, ``6×10^23``, ``2^31``.

    Raises ValueError when ``text`` does not start with a number.
    """
    m = _QUANTITY.match(text)
    if not m:
        raise ValueError(f"not a number: {text!r}")
    value = float(m["num"].replace(",", ""))
    if m["pow"] is not None:
        value = value ** int(m["pow"])
    elif m["exp"] is not None:
        value = value * 10.0 ** int(m["exp"])
    return value, (m["unit"] or "").strip()


def parse_quantity(text: str, system: str, default_unit: str = "") -> float:
    """``text`` as a number of base units of ``system`` (bytes, count, flops or percent).

    A bare number is read in ``default_unit`` (so with ``default_unit="GiB"``, ``"2"`` means
    2 GiB). ``parse_quantity("2048 MiB", "bytes") == 2 * GiB``. Raises ValueError for a
    unit outside the system.
    """
    units = UNIT_SYSTEMS[system]
    value, unit = split_quantity(text)
    key = (unit or default_unit).strip()
    factor = units.get(key.lower(), units.get(key))
    if factor is None:
        known = ", ".join(sorted((u for u in units if u), key=lambda u: (len(u), u)))
        raise ValueError(f"unit {unit!r} is not a {system} unit (use one of: {known})")
    return value * factor


def tidy(x: float) -> float:
    """An integral float as an int (exact for the sizes here), so JSON shows 2147483648."""
    return int(x) if isinstance(x, float) and x.is_integer() and abs(x) < 2**63 else x


def format_number(x: float, digits: int = 4) -> str:
    """``x`` with up to ``digits`` significant digits and no trailing zeros (``1.5``, ``2048``)."""
    if x == 0:
        return "0"
    if abs(x) >= 10**digits and float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x)}"
    text = f"{x:.{digits}g}"
    if "e" in text:
        mant, exp = text.split("e")
        return f"{mant}e{int(exp)}"
    return text


def format_bytes(n: float, binary: bool = True, digits: int = 4) -> str:
    """``n`` bytes in the largest fitting unit: ``2 GiB`` (binary) or ``2.147 GB`` (decimal)."""
    base, names = (1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB")) if binary else (
        1000, ("B", "KB", "MB", "GB", "TB", "PB"))
    i = 0
    while abs(n) >= base and i < len(names) - 1:
        n /= base
        i += 1
    return f"{format_number(n, digits)} {names[i]}"


def format_count(n: float, digits: int = 4) -> str:
    """A parameter or token count with K/M/B/T: ``7.616B``."""
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{format_number(n / factor, digits)}{suffix}"
    return format_number(n, digits)


def format_sci(x: float, digits: int = 4) -> str:
    """``x`` in scientific notation without trailing zeros: ``5.88e23``, ``7e9``."""
    mant, exp = f"{x:.{digits - 1}e}".split("e")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def format_flops(n: float, digits: int = 4) -> str:
    """FLOPs, in scientific notation from 10^4 on: ``8.4e22 FLOPs``."""
    return f"{format_number(n, digits) if abs(n) < 1e4 else format_sci(n, digits)} FLOPs"


# ---------------------------------------------------------------------------------------------
# Itemised results


@dataclass(frozen=True)
class Item:
    """One line of a breakdown: what it is, its value, and the formula with the numbers put in."""

    label: str
    value: float
    formula: str = ""


@dataclass(frozen=True)
class Breakdown:
    """An itemised estimate. ``unit`` is ``"bytes"``, ``"params"`` or ``"FLOPs"``."""

    title: str
    unit: str
    items: tuple[Item, ...]
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        """The sum of the items."""
        return tidy(sum(item.value for item in self.items))

    def get(self, label: str) -> float:
        """The value of the item called ``label`` (KeyError if there is none)."""
        for item in self.items:
            if item.label == label:
                return item.value
        raise KeyError(label)

    def format(self, value: float) -> str:
        """``value`` in this breakdown's unit, for display."""
        if self.unit == "bytes":
            return format_bytes(value)
        if self.unit == "params":
            return format_count(value)
        return format_flops(value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: title, unit, items (label, value, formula), total and notes."""
        return {
            "title": self.title,
            "unit": self.unit,
            "items": [{"label": i.label, "value": tidy(i.value), "formula": i.formula} for i in self.items],
            "total": self.total,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------
# Model configurations


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer (Llama/Qwen2 family): RMSNorm, rotary positions, SwiGLU MLP.

    ``head_dim`` defaults to ``hidden // heads``. ``kv_heads == heads`` is multi-head attention
    (MHA), ``kv_heads == 1`` multi-query (MQA), anything between grouped-query (GQA).
    ``qkv_bias`` adds biases to the q/k/v projections (Qwen2). ``tie_embeddings`` shares the
    input embedding with the output head.
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

    @property
    def attention(self) -> str:
        """``"MHA"``, ``"MQA"`` or ``"GQA"``."""
        if self.kv_heads == self.heads:
            return "MHA"
        return "MQA" if self.kv_heads == 1 else "GQA"

    @cached_property
    def params(self) -> int:
        """Total parameter count (see :func:`param_breakdown`)."""
        return int(param_breakdown(self).total)

    def matrix_shapes(self) -> dict[str, tuple[int, int]]:
        """``(d_in, d_out)`` of each linear layer in one block, by Hugging Face module name."""
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
    - norms: 2·h per layer plus a final h (RMSNorm has a scale, no bias)
    """
    m = model
    shapes = m.matrix_shapes()
    attn = sum(shapes[k][0] * shapes[k][1] for k in ("q_proj", "k_proj", "v_proj", "o_proj"))
    bias = (m.heads + 2 * m.kv_heads) * m.head_dim if m.qkv_bias else 0
    mlp = sum(shapes[k][0] * shapes[k][1] for k in ("gate_proj", "up_proj", "down_proj"))
    items = [
        Item("embeddings", m.vocab * m.hidden, f"vocab·h = {m.vocab}·{m.hidden}"),
        Item("attention", m.layers * (attn + bias),
             f"L·(h·a·d + 2·h·kv·d + a·d·h{' + biases' if bias else ''}) = {m.layers}·{attn + bias}"),
        Item("mlp", m.layers * mlp, f"L·3·h·f = {m.layers}·3·{m.hidden}·{m.intermediate}"),
        Item("norms", (2 * m.layers + 1) * m.hidden, f"(2·L + 1)·h = {2 * m.layers + 1}·{m.hidden}"),
    ]
    if not m.tie_embeddings:
        items.append(Item("output head", m.vocab * m.hidden, f"vocab·h = {m.vocab}·{m.hidden}"))
    return Breakdown(f"Parameters of {m.name}", "params", tuple(items))


def param_count(model: ModelConfig) -> int:
    """Total parameters of ``model`` (the sum of :func:`param_breakdown`)."""
    return model.params


def _params_of(model_or_params: ModelConfig | float) -> float:
    if isinstance(model_or_params, ModelConfig):
        return model_or_params.params
    if model_or_params < 0:
        raise ValueError(f"parameter count must be non-negative, got {model_or_params}")
    return model_or_params


# ---------------------------------------------------------------------------------------------
# Weights


def weight_bytes(params: float, dtype: str = "bf16") -> float:
    """Memory of the weights alone: ``params · bytes_per_param(dtype)``. 7e9 in fp16 = 14 GB."""
    return tidy(_params_of(params) * dtype_bytes(dtype))


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
    n = _params_of(params)
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
# LoRA

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
    """Trainable LoRA parameters: ``L · Σ_targets r·(d_in + d_out)``.

    Llama-2-7B, r = 8 on q_proj and v_proj: 32·2·8·(4096 + 4096) = 4,194,304.
    """
    shapes = model.matrix_shapes()
    return model.layers * sum(lora_matrix_params(rank, *shapes[t]) for t in lora_targets(targets))


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
    return Breakdown(f"Activations of {model.name}, {s} tokens x {b}, recompute={recompute}", "bytes", tuple(items),
                     (f"Korthikanti et al. 2022: s·b·h·(34 + 5·a·s/h) per layer in fp16 (h={h}, a={a})",))


# ---------------------------------------------------------------------------------------------
# FLOPs


def flops_per_token(params: ModelConfig | float, training: bool = True) -> float:
    """FLOPs per token: ≈ 6·N to train (2·N forward + 4·N backward), ≈ 2·N for inference.

    Ignores the attention-score term (2·L·s·h per token forward), small while s << 6h.
    """
    return tidy((6 if training else 2) * float(_params_of(params)))


def training_flops(params: ModelConfig | float, tokens: float) -> float:
    """Total training compute ``C ≈ 6·N·D`` for N parameters and D training tokens."""
    if tokens < 0:
        raise ValueError(f"tokens must be non-negative, got {tokens}")
    return tidy(6.0 * _params_of(params) * tokens)


def flops_breakdown(params: ModelConfig | float, tokens: float = 0) -> Breakdown:
    """Forward and backward FLOPs per token, and for ``tokens`` tokens of training if given."""
    n = _params_of(params)
    d = tokens or 1
    what = f"{format_count(tokens)} tokens" if tokens else "one token"
    return Breakdown(f"Training FLOPs for {what}", "FLOPs", (
        Item("forward", tidy(2.0 * n * d), f"2·N·D = 2·{format_count(n)}·{format_count(d)}"),
        Item("backward", tidy(4.0 * n * d), f"4·N·D = 4·{format_count(n)}·{format_count(d)}"),
    ), (f"inference: 2·N = {format_flops(2 * n)} per token",))


# ---------------------------------------------------------------------------------------------
# A whole report


@dataclass(frozen=True)
class Report:
    """Every estimate for one model and setting, section by section (for the UI and the brief)."""

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


#: Numeric calculator functions that quizzes may name (parametric questions). Arguments called
#: ``model`` take a preset name.
QUIZ_FUNCTIONS: dict[str, Any] = {
    f.__name__: f
    for f in (weight_bytes, kv_cache_bytes, kv_cache, zero_memory_bytes, lora_matrix_params, lora_params,
              activation_bytes, flops_per_token, training_flops, param_count, dtype_bytes)
}

__all__ = [
    "ADAM_STATE_BYTES", "DTYPE_BYTES", "GB", "GiB", "KB", "KiB", "LORA_TARGET_GROUPS", "MB", "MiB", "PRESETS",
    "QUIZ_FUNCTIONS", "RECOMPUTE_MODES", "TB", "TiB", "UNIT_SYSTEMS", "Breakdown", "Item", "LoraEstimate",
    "ModelConfig", "Report", "activation_breakdown", "activation_bytes", "dtype_bytes", "flops_breakdown",
    "flops_per_token", "format_bytes", "format_count", "format_flops", "format_number", "format_sci", "get_preset",
    "kv_cache", "kv_cache_breakdown", "kv_cache_bytes", "lora_estimate", "lora_matrix_params", "lora_params",
    "lora_targets", "param_breakdown", "param_count", "parse_quantity", "report", "split_quantity",
    "tidy", "training_flops", "unit_system", "weight_bytes", "weights_breakdown", "zero_memory_breakdown",
    "zero_memory_bytes",
]
