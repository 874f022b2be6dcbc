"""The calculator against published figures, plus properties that must hold for any input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmcore_tui.core import calc
from llmcore_tui.core.calc import GB, GiB, MiB

LLAMA2 = calc.PRESETS["llama-2-7b"]
LLAMA3 = calc.PRESETS["llama-3-8b"]
QWEN = calc.PRESETS["qwen2.5-7b"]


# ---- presets: parameter counts from the config land on the published sizes -----------------

@pytest.mark.parametrize("model, published", [(LLAMA2, 6.74e9), (LLAMA3, 8.03e9), (QWEN, 7.62e9)])
def test_preset_param_count_matches_published(model, published):
    assert model.params == pytest.approx(published, rel=0.002)
    assert model.published_params == published


def test_exact_param_counts():
    # Hugging Face reports these totals for the three checkpoints.
    assert LLAMA2.params == 6_738_415_616
    assert LLAMA3.params == 8_030_261_248
    assert QWEN.params == 7_615_616_512


def test_preset_configs_and_attention_kind():
    assert (LLAMA2.layers, LLAMA2.hidden, LLAMA2.heads, LLAMA2.kv_heads, LLAMA2.head_dim) == (32, 4096, 32, 32, 128)
    assert (LLAMA3.kv_heads, LLAMA3.intermediate, LLAMA3.vocab) == (8, 14336, 128256)
    assert (QWEN.layers, QWEN.hidden, QWEN.heads, QWEN.kv_heads, QWEN.head_dim) == (28, 3584, 28, 4, 128)
    assert [m.attention for m in (LLAMA2, LLAMA3, QWEN)] == ["MHA", "GQA", "GQA"]
    mqa = calc.ModelConfig("mqa", layers=2, hidden=64, heads=8, kv_heads=1, intermediate=128, vocab=100)
    assert mqa.attention == "MQA"


def test_param_breakdown_sums_to_total_and_tied_embeddings_drop_the_head():
    parts = calc.param_breakdown(LLAMA2)
    assert parts.total == LLAMA2.params
    assert parts.get("mlp") == 32 * 3 * 4096 * 11008
    tied = calc.ModelConfig("tied", layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=11008,
                            vocab=32000, tie_embeddings=True)
    assert LLAMA2.params - tied.params == 32000 * 4096


def test_get_preset_is_forgiving_about_spelling_and_clear_when_unknown():
    assert calc.get_preset("Llama-3-8B") is LLAMA3
    assert calc.get_preset("llama3_8b") is LLAMA3
    with pytest.raises(KeyError, match="presets: llama-2-7b"):
        calc.get_preset("gpt-5")


@pytest.mark.parametrize("kwargs", [
    dict(layers=0), dict(heads=32, kv_heads=5), dict(hidden=100, heads=32),
])
def test_model_config_rejects_bad_shapes(kwargs):
    base = dict(name="x", layers=2, hidden=64, heads=8, kv_heads=8, intermediate=128, vocab=10)
    with pytest.raises(ValueError):
        calc.ModelConfig(**{**base, **kwargs})


# ---- weights ---------------------------------------------------------------------------------

def test_7b_fp16_weights_are_14_gb():
    assert calc.weight_bytes(7e9, "fp16") == 14 * GB
    assert calc.weight_bytes(7e9, "int4") == 3.5 * GB
    assert calc.weight_bytes(LLAMA2, "bf16") / GB == pytest.approx(13.48, abs=0.01)


def test_dtype_bytes():
    assert [calc.dtype_bytes(d) for d in ("fp32", "bf16", "fp16", "int8", "int4")] == [4, 2, 2, 1, 0.5]
    assert calc.dtype_bytes("float16") == 2
    with pytest.raises(ValueError, match="unknown dtype"):
        calc.dtype_bytes("fp64")


def test_weights_breakdown_by_part_sums_to_weight_bytes():
    b = calc.weights_breakdown(QWEN, "fp32")
    assert b.total == calc.weight_bytes(QWEN, "fp32")
    assert [i.label for i in b.items] == ["embeddings", "attention", "mlp", "norms", "output head"]


# ---- KV cache --------------------------------------------------------------------------------

def test_llama2_kv_cache_4096_tokens_is_exactly_2_gib():
    assert calc.kv_cache_bytes(32, 32, 128, 4096, 1, 2) == 2 * 32 * 32 * 128 * 4096 * 2 == 2 * GiB
    assert calc.kv_cache(LLAMA2, 4096) == 2 * GiB


def test_llama3_kv_cache_4096_tokens_is_half_a_gib():
    assert calc.kv_cache(LLAMA3, 4096, batch=1, dtype="fp16") == 0.5 * GiB


def test_kv_cache_breakdown_splits_k_and_v_and_mentions_mha_saving():
    b = calc.kv_cache_breakdown(LLAMA3, 8192, batch=4)
    assert b.get("K") == b.get("V") == b.total / 2
    assert b.total == 4 * GiB
    assert "MHA would need 4x: 16 GiB" in b.notes[1]
    assert "128 KiB per token" in b.notes[0]


@given(layers=st.integers(1, 96), heads=st.sampled_from([8, 16, 32, 64]), group=st.sampled_from([1, 2, 4, 8]),
       head_dim=st.sampled_from([64, 128]), seq=st.integers(1, 1 << 17), batch=st.integers(1, 64),
       bpv=st.sampled_from([0.5, 1, 2, 4]))
def test_gqa_cache_is_mha_cache_scaled_by_kv_heads_over_heads(layers, heads, group, head_dim, seq, batch, bpv):
    kv_heads = heads // group
    mha = calc.kv_cache_bytes(layers, heads, head_dim, seq, batch, bpv)
    gqa = calc.kv_cache_bytes(layers, kv_heads, head_dim, seq, batch, bpv)
    assert gqa == pytest.approx(mha * kv_heads / heads)
    # and it is linear in context length and batch
    assert calc.kv_cache_bytes(layers, kv_heads, head_dim, 2 * seq, batch, bpv) == 2 * gqa
    assert calc.kv_cache_bytes(layers, kv_heads, head_dim, seq, 3 * batch, bpv) == 3 * gqa


def test_kv_cache_rejects_negative_sizes():
    with pytest.raises(ValueError, match="seq_len"):
        calc.kv_cache_bytes(32, 8, 128, -1)


# ---- training memory: ZeRO ---------------------------------------------------------------------

@pytest.mark.parametrize("stage, paper_gb", [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_figure_7_5b_params_64_gpus(stage, paper_gb):
    # Rajbhandari et al. 2020, Figure 1: Psi = 7.5B, N_d = 64, K = 12.
    assert round(calc.zero_memory_bytes(7.5e9, gpus=64, stage=stage) / GB, 1) == paper_gb


def test_zero_breakdown_parts_and_activations_are_not_sharded():
    b = calc.zero_memory_breakdown(7.5e9, gpus=64, stage=2, activation_bytes=5 * GB)
    assert b.get("weights (fp16)") == 15 * GB  # replicated at stage 2
    assert b.get("gradients (fp16)") == 15 * GB / 64
    assert b.get("optimizer states (fp32)") == 90 * GB / 64
    assert b.get("activations") == 5 * GB
    b3 = calc.zero_memory_breakdown(7.5e9, gpus=64, stage=3, activation_bytes=5 * GB)
    assert b3.get("activations") == 5 * GB


def test_plain_dp_is_16_bytes_per_param_whatever_the_gpu_count():
    assert calc.zero_memory_bytes(1e9, gpus=1) == calc.zero_memory_bytes(1e9, gpus=1024) == 16e9


@pytest.mark.parametrize("kwargs, match", [
    (dict(stage=4), "stage"), (dict(gpus=0), "gpus"), (dict(activation_bytes=-1), "activation"),
])
def test_zero_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        calc.zero_memory_breakdown(1e9, **{"gpus": 8, **kwargs})


@given(params=st.floats(1e6, 1e12), gpus=st.integers(2, 4096))
def test_zero_memory_falls_with_stage_and_never_rises_with_gpus(params, gpus):
    per_stage = [calc.zero_memory_bytes(params, gpus, s) for s in range(4)]
    assert per_stage == sorted(per_stage, reverse=True)
    assert per_stage[0] > per_stage[1]
    for s in range(4):
        assert calc.zero_memory_bytes(params, gpus * 2, s) <= calc.zero_memory_bytes(params, gpus, s)
    # stage 3 shards everything: the whole 16 bytes/param spread over the GPUs
    assert per_stage[3] == pytest.approx(16 * params / gpus)


# ---- LoRA ------------------------------------------------------------------------------------

def test_lora_llama2_r8_on_q_and_v():
    # The classic PEFT print-out: "trainable params: 4,194,304 || all params: 6,742,609,920".
    assert calc.lora_params(LLAMA2, 8, "q_proj,v_proj") == 4_194_304
    assert calc.lora_params(LLAMA2, 8, ["qv"]) == 4_194_304
    assert LLAMA2.params + 4_194_304 == 6_742_609_920


def test_lora_uses_true_matrix_shapes_for_gqa():
    # Llama-3-8B k_proj is 4096 -> 1024: r·(4096 + 1024) per layer.
    assert calc.lora_params(LLAMA3, 16, "k_proj") == 32 * 16 * (4096 + 1024)
    assert calc.lora_params(LLAMA3, 16, "all") == 32 * 16 * (
        (4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)


def test_lora_estimate_saving():
    est = calc.lora_estimate(LLAMA2, 8, "qv", base_dtype="bf16")
    assert est.full.total == 16 * LLAMA2.params
    assert est.lora.total == 2 * LLAMA2.params + 16 * 4_194_304
    assert est.saving_bytes == est.full.total - est.lora.total
    assert est.fraction == pytest.approx(4_194_304 / LLAMA2.params)
    qlora = calc.lora_estimate(LLAMA2, 8, "qv", base_dtype="int4")
    assert qlora.lora.total < est.lora.total
    assert json.loads(json.dumps(est.to_dict()))["trainable"] == 4_194_304


def test_lora_rejects_unknown_targets_and_bad_rank():
    with pytest.raises(ValueError, match="unknown LoRA target"):
        calc.lora_params(LLAMA2, 8, "qkv")
    with pytest.raises(ValueError, match="rank"):
        calc.lora_params(LLAMA2, 0)


@given(rank=st.integers(1, 512))
def test_lora_params_are_linear_in_rank(rank):
    assert calc.lora_params(QWEN, rank, "all") == rank * calc.lora_params(QWEN, 1, "all")


# ---- activations -----------------------------------------------------------------------------

def test_activation_formula_korthikanti():
    s, b, h, a = 2048, 1, 4096, 32
    assert calc.activation_bytes(s, b, h, a) == s * b * h * (34 + 5 * a * s / h)
    assert calc.activation_bytes(s, b, h, a, layers=32, recompute="selective") == 32 * 34 * s * b * h
    assert calc.activation_bytes(s, b, h, a, layers=32, recompute="full") == 32 * 2 * s * b * h
    assert calc.activation_bytes(s, b, h, a, tp=8) == s * b * h * (10 + 24 / 8 + 5 * a * s / (h * 8))
    assert calc.activation_bytes(s, b, h, a, tp=8, sequence_parallel=True) == pytest.approx(
        s * b * h * (34 + 5 * a * s / h) / 8)
    with pytest.raises(ValueError, match="recompute"):
        calc.activation_bytes(s, b, h, a, recompute="some")


def test_activation_breakdown_parts_sum_to_the_formula():
    b = calc.activation_breakdown(LLAMA2, 4096, 2)
    assert b.total == calc.activation_bytes(4096, 2, 4096, 32, 32)
    assert b.get("attention scores") == 32 * 5 * 32 * 4096**2 * 2


@given(s=st.integers(1, 32768), b=st.integers(1, 16))
def test_recomputation_never_costs_memory(s, b):
    none, sel, full = (calc.activation_bytes(s, b, 4096, 32, 32, mode) for mode in calc.RECOMPUTE_MODES)
    assert none >= sel >= full


# ---- FLOPs -----------------------------------------------------------------------------------

def test_flops():
    assert calc.flops_per_token(7e9) == 42e9
    assert calc.flops_per_token(7e9, training=False) == 14e9
    # Chinchilla: 70B params on 1.4T tokens is about 5.9e23 FLOPs
    assert calc.training_flops(70e9, 1.4e12) == pytest.approx(5.88e23)
    fb = calc.flops_breakdown(7e9, 1e12)
    assert fb.total == calc.training_flops(7e9, 1e12)
    assert fb.get("backward") == 2 * fb.get("forward")


# ---- units and formatting --------------------------------------------------------------------

@pytest.mark.parametrize("text, system, default, expected", [
    ("2 GiB", "bytes", "", 2 * GiB), ("2048 MiB", "bytes", "", 2 * GiB), ("2", "bytes", "GiB", 2 * GiB),
    ("2^31", "bytes", "B", 2 * GiB), ("2,147,483,648 bytes", "bytes", "", 2 * GiB), ("14 GB", "bytes", "", 14e9),
    ("7.62B", "count", "", 7.62e9), ("70亿", "count", "", 7e9), ("6e23", "flops", "FLOPs", 6e23),
    ("6×10^23 FLOPs", "flops", "", 6e23), ("5.9 x 10^23", "flops", "flop", 5.9e23), ("25 %", "percent", "", 25),
])
def test_parse_quantity(text, system, default, expected):
    assert calc.parse_quantity(text, system, default) == pytest.approx(expected)


@pytest.mark.parametrize("text, system", [("2 GiB", "count"), ("two", "bytes"), ("2 parsecs", "bytes")])
def test_parse_quantity_errors(text, system):
    with pytest.raises(ValueError):
        calc.parse_quantity(text, system)


def test_unit_system():
    assert [calc.unit_system(u) for u in ("GiB", "B", "TFLOPs", "%", "million", "", "lbs")] == [
        "bytes", "bytes", "flops", "percent", "count", "count", None]


def test_formatting():
    assert calc.format_bytes(2 * GiB) == "2 GiB"
    assert calc.format_bytes(1.5 * MiB) == "1.5 MiB"
    assert calc.format_bytes(14e9, binary=False) == "14 GB"
    assert calc.format_count(7_615_616_512) == "7.616B"
    assert calc.format_flops(5.88e23) == "5.88e23 FLOPs"


def test_report_has_every_section_and_is_json_ready():
    r = calc.report(LLAMA3, seq_len=8192, batch=2, gpus=8, stage=3)
    titles = [s.title for s in r.sections]
    assert len(titles) == 6 and titles[0].startswith("Parameters")
    data = json.loads(json.dumps(r.to_dict()))
    assert data["params"] == LLAMA3.params
    assert all(sec["total"] == pytest.approx(sum(i["value"] for i in sec["items"])) for sec in data["sections"])


def test_quiz_functions_are_registered():
    assert {"kv_cache_bytes", "zero_memory_bytes", "lora_params", "training_flops"} <= set(calc.QUIZ_FUNCTIONS)
