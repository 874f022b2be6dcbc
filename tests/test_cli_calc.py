"""`llmcore-tui calc ...`: every command, in table and JSON form, and its usage errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmcore_tui.cli.calc import app
from llmcore_tui.core.calc import GB, GiB

runner = CliRunner()


def run(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def run_json(*args: str):
    return json.loads(run(*args, "--json").output)


def test_presets_table_and_json():
    out = run("presets").output
    assert "llama-2-7b" in out and "6.738B" in out and "GQA" in out
    data = run_json("presets")
    assert {d["name"]: d["params"] for d in data} == {
        "llama-2-7b": 6_738_415_616, "llama-3-8b": 8_030_261_248, "qwen2.5-7b": 7_615_616_512,
        "mixtral-8x7b": 46_702_792_704}


def test_kv_preset_is_2_gib_and_explicit_numbers_match():
    assert "total  2 GiB" in run("kv", "--preset", "llama-2-7b").output
    data = run_json("kv", "-p", "llama-3-8b", "--seq-len", "4096")
    assert data["total"] == 0.5 * GiB
    assert [i["label"] for i in data["items"]] == ["K", "V"]
    explicit = run_json("kv", "--layers", "32", "--kv-heads", "8", "--head-dim", "128", "--seq-len", "4096")
    assert explicit["total"] == data["total"]


def test_kv_explicit_numbers_override_the_preset():
    data = run_json("kv", "-p", "llama-2-7b", "--kv-heads", "8")
    assert data["total"] == 0.5 * GiB and data["model"] == "llama-2-7b (modified)"


def test_kv_without_heads_does_not_claim_an_attention_kind():
    out = run("kv", "--layers", "2", "--kv-heads", "2", "--head-dim", "4").output
    assert "MHA" not in out and "per token" in out


def test_weights_table_of_dtypes_and_itemised_dtype():
    out = run("weights", "--params", "7B").output
    assert "14 GB" in out and "3.5 GB" in out
    assert run_json("weights", "--params", "7e9")["bytes"]["fp16"] == 14 * GB
    data = run_json("weights", "-p", "qwen2.5-7b", "--dtype", "int8")
    assert data["total"] == 7_615_616_512


def test_train_all_stages_match_the_zero_paper():
    data = run_json("train", "--params", "7.5B", "--gpus", "64")
    assert [round(d["total"] / GB, 1) for d in data] == [120, 31.4, 16.6, 1.9]
    out = run("train", "--params", "7.5B", "--gpus", "64").output
    assert "120 GB" in out and "0 (DP)" in out


def test_train_one_stage_with_activations():
    data = run_json("train", "--params", "1B", "--gpus", "4", "--stage", "3", "--activations", "2 GB")
    assert data["total"] == 16e9 / 4 + 2e9
    assert "not sharded" in run("train", "--params", "1B", "--stage", "1", "--activations", "1 GiB").output


def test_lora_table_and_json():
    out = run("lora", "-p", "llama-2-7b").output
    assert "4,194,304" in out and "LoRA saves" in out
    data = run_json("lora", "-p", "llama-3-8b", "--rank", "16", "--targets", "k_proj")
    assert data["trainable"] == 32 * 16 * (4096 + 1024)
    custom = run_json("lora", "--layers", "2", "--hidden", "64", "--heads", "4", "--intermediate", "128",
                      "--vocab", "100", "--targets", "q_proj")
    assert custom["trainable"] == 2 * 8 * (64 + 64)


def test_activations_and_flops():
    data = run_json("activations", "-p", "llama-2-7b", "--seq-len", "2048", "--recompute", "selective")
    assert data["total"] == 32 * 34 * 2048 * 4096
    f = run_json("flops", "--params", "70B", "--tokens", "1.4T")
    assert f["train_total"] == pytest.approx(5.88e23)
    assert f["inference_per_token"] == 140e9
    assert "6·N·D" in run("flops", "-p", "llama-3-8b", "--tokens", "15T").output


def test_moe_mixtral_stored_against_active():
    out = run("moe", "mixtral-8x7b").output
    assert "46.7B" in out and "12.88B" in out and "top-2" in out and "routed experts" in out
    data = run_json("moe", "mixtral-8x7b")
    assert (data["total"], data["active"]) == (46_702_792_704, 12_879_925_248)
    assert data["experts"] == 8 and data["experts_per_token"] == 2


def test_moe_overrides_turn_a_dense_preset_into_experts():
    dense = run_json("moe", "llama-3-8b")
    assert dense["total"] == dense["active"] == 8_030_261_248
    top1 = run_json("moe", "mixtral-8x7b", "--top-k", "1")
    assert top1["model"] == "mixtral-8x7b (modified)" and top1["total"] == 46_702_792_704
    assert 12_879_925_248 - top1["active"] == 32 * 3 * 4096 * 14336  # one expert fewer per layer
    made = run_json("moe", "llama-3-8b", "--experts", "4", "--top-k", "1", "--shared-experts", "1")
    assert made["active"] == dense["active"] + 32 * 3 * 4096 * 14336 + 32 * 4096 * 4  # shared expert + router


def test_moe_a2a_explicit_and_from_a_preset():
    data = run_json("moe-a2a", "--tokens", "4096", "--hidden", "4096", "--top-k", "2", "--ep", "8")
    assert data["total"] == 2 * 4096 * 2 * 4096 * 2 * 7 / 8 == 112 * 2**20
    from_preset = run_json("moe-a2a", "--tokens", "4k", "-p", "mixtral-8x7b", "--ep", "8")
    assert (from_preset["hidden"], from_preset["top_k"]) == (4096, 2)
    assert from_preset["total"] == 2 * 4000 * 2 * 4096 * 2 * 7 / 8
    assert run_json("moe-a2a", "--tokens", "4096", "-p", "mixtral-8x7b", "--ep", "1")["total"] == 0
    out = run("moe-a2a", "--tokens", "4096", "--hidden", "4096", "--top-k", "2", "--ep", "8", "--dtype", "fp32").output
    assert "224 MiB" in out and "dispatch" in out and "combine" in out


def test_speculative_table_and_json():
    out = run("speculative", "--alpha", "0.8", "--k", "4").output
    assert "3.362 tokens per target forward" in out
    data = run_json("speculative", "--alpha", "0.8", "-k", "4", "--draft-cost", "0.05")
    assert data["tokens_per_step"] == pytest.approx(3.3616)
    assert data["speedup"] == pytest.approx(3.3616 / 1.2)
    assert [r["k"] for r in data["by_k"]] == [1, 2, 3, 4]
    assert run_json("speculative", "--alpha", "1", "--k", "3")["tokens_per_step"] == 4


@pytest.mark.parametrize("args, message", [
    (["kv"], "give --preset NAME or all of --layers, --kv-heads, --head-dim"),
    (["kv", "-p", "gpt-9"], "unknown preset"),
    (["kv", "-p", "llama-2-7b", "--dtype", "fp64"], "unknown dtype"),
    (["kv", "--layers", "2", "--kv-heads", "3", "--head-dim", "4", "--heads", "4"], "multiple of kv_heads"),
    (["weights"], "give --preset NAME or --params"),
    (["weights", "-p", "llama-2-7b", "--params", "7B"], "not both"),
    (["weights", "--params", "7 GiB"], "not a count unit"),
    (["weights", "--params", "-5"], "must be positive"),
    (["train", "--params", "1B", "--stage", "4"], "--stage"),
    (["train", "--params", "1B", "--activations", "lots"], "not a number"),
    (["lora", "-p", "llama-2-7b", "--targets", "qkv"], "unknown LoRA target"),
    (["lora", "--layers", "2"], "--hidden"),
    (["activations", "-p", "llama-2-7b", "--recompute", "some"], "none, selective, full"),
    (["flops", "--params", "7B", "--tokens", "many"], "not a number"),
    (["moe", "gpt-9"], "unknown preset"),
    (["moe", "llama-3-8b", "--experts", "8"], "experts_per_token (top-k) must be from 1 to experts (8)"),
    (["moe", "mixtral-8x7b", "--top-k", "9"], "must be from 1 to experts (8), got 9"),
    (["moe-a2a", "--tokens", "4096", "--ep", "8"], "give --preset NAME (an MoE model) or both --hidden and --top-k"),
    (["moe-a2a", "--tokens", "4096", "-p", "llama-3-8b", "--ep", "8"], "llama-3-8b is dense"),
    (["moe-a2a", "--tokens", "lots", "--hidden", "8", "--top-k", "1", "--ep", "2"], "not a number"),
    (["moe-a2a", "--tokens", "8", "--hidden", "8", "--top-k", "1", "--ep", "0"], "--ep"),
    (["speculative", "--alpha", "1.5", "--k", "4"], "alpha must be a number from 0 to 1"),
    (["speculative", "--alpha", "0.5", "--k", "0"], "look-ahead k must be"),
    (["speculative", "--alpha", "0.5", "--k", "2", "--draft-cost", "-1"], "draft cost must be a non-negative"),
    (["speculative", "--k", "2"], "--alpha"),
])
def test_bad_input_is_a_usage_error_with_a_clear_message(args, message):
    result = run(*args, code=2)
    flat = " ".join(result.output.replace("│", " ").split())
    assert message in flat
    assert "Traceback" not in result.output
