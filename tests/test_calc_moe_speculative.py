"""Mixture of experts and speculative decoding in the calculator (issue 15).

Mixtral 8x7B against its paper (47B stored, 13B active); the expert-parallel all-to-all against
its closed form; speculative decoding against a direct simulation of i.i.d. acceptances.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from llmcore_tui.core import calc, quiz

MIXTRAL = calc.PRESETS["mixtral-8x7b"]
LLAMA3 = calc.PRESETS["llama-3-8b"]


# ---- MoE parameters -----------------------------------------------------------------------------

def test_mixtral_preset_is_the_published_config():
    m = MIXTRAL
    assert (m.layers, m.hidden, m.intermediate, m.vocab, m.heads, m.kv_heads) == (32, 4096, 14336, 32000, 32, 8)
    assert (m.experts, m.experts_per_token, m.shared_experts, m.tie_embeddings) == (8, 2, 0, False)
    assert m.is_moe and m.attention == "GQA" and not LLAMA3.is_moe


def test_mixtral_total_and_active_match_the_paper():
    counts = calc.moe_param_counts(MIXTRAL)
    # Jiang et al. 2024: 47B parameters, 13B used per token; Mistral's release: 46.7B and 12.9B
    assert counts.total == pytest.approx(46.7e9, rel=0.002)
    assert counts.active == pytest.approx(12.9e9, rel=0.002)
    assert counts.total == 46_702_792_704  # what the Hugging Face checkpoint reports
    assert calc.param_count(MIXTRAL) == counts.total == MIXTRAL.params


def test_active_is_total_less_the_experts_a_token_skips():
    m = MIXTRAL
    counts = calc.moe_param_counts(m)
    one_expert = 3 * m.hidden * m.intermediate  # gate, up, down
    assert counts.total - counts.active == m.layers * (m.experts - m.experts_per_token) * one_expert
    assert counts.parts.get("router") == counts.active_parts.get("router") == m.layers * m.hidden * m.experts
    assert counts.active_parts.get("attention") == counts.parts.get("attention")


def test_shared_experts_are_stored_and_always_active():
    plain = calc.ModelConfig("moe", layers=2, hidden=8, heads=2, kv_heads=2, intermediate=16, vocab=10,
                             experts=4, experts_per_token=1)
    shared = calc.ModelConfig("moe-shared", layers=2, hidden=8, heads=2, kv_heads=2, intermediate=16, vocab=10,
                              experts=4, experts_per_token=1, shared_experts=2)
    one_expert_all_layers = 2 * 3 * 8 * 16
    a, b = calc.moe_param_counts(plain), calc.moe_param_counts(shared)
    assert b.total - a.total == 2 * one_expert_all_layers
    assert b.active - a.active == 2 * one_expert_all_layers


def test_a_dense_model_uses_every_parameter():
    counts = calc.moe_param_counts(LLAMA3)
    assert counts.total == counts.active == LLAMA3.params and counts.active_fraction == 1


def test_an_moe_with_one_expert_is_the_dense_model_plus_its_router():
    dense = calc.PRESETS["llama-3-8b"]
    moe = calc.ModelConfig("one-expert", layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336,
                           vocab=128256, experts=1, experts_per_token=1)
    assert moe.params == dense.params + 32 * 4096 * 1


@pytest.mark.parametrize("kwargs, message", [
    ({"experts": 8, "experts_per_token": 0}, "experts_per_token (top-k) must be from 1 to experts (8)"),
    ({"experts": 8, "experts_per_token": 9}, "must be from 1 to experts"),
    ({"experts_per_token": 2}, "need experts > 0"),
    ({"shared_experts": 1}, "need experts > 0"),
    ({"experts": -1}, "experts must be a non-negative integer"),
])
def test_bad_moe_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        calc.ModelConfig("bad", layers=1, hidden=8, heads=2, kv_heads=2, intermediate=8, vocab=10, **kwargs)


def test_memory_follows_the_total_and_flops_the_active_count():
    counts = calc.moe_param_counts(MIXTRAL)
    assert calc.weights_breakdown(MIXTRAL, "bf16").total == 2 * counts.total
    assert calc.zero_memory_breakdown(MIXTRAL, 8, 3).total == pytest.approx(16 * counts.total / 8)
    assert calc.flops_per_token(MIXTRAL) == 6 * counts.active
    assert calc.flops_per_token(MIXTRAL, training=False) == 2 * counts.active
    assert calc.training_flops(MIXTRAL, 1e12) == pytest.approx(6 * counts.active * 1e12)
    assert any("active" in note for note in calc.flops_breakdown(MIXTRAL).notes)
    # attention is unchanged by the experts: the same KV cache as Llama-3-8B (same shape)
    assert calc.kv_cache(MIXTRAL, 4096) == calc.kv_cache(LLAMA3, 4096) == 0.5 * calc.GiB


def test_lora_on_the_mlp_adapts_every_expert():
    per_matrix = 8 * (4096 + 14336)  # gate, up and down each take r·(4096 + 14336)
    assert calc.lora_params(MIXTRAL, 8, "mlp") == 32 * 8 * 3 * per_matrix
    assert calc.lora_params(MIXTRAL, 8, "qv") == calc.lora_params(LLAMA3, 8, "qv")


# ---- expert-parallel all-to-all -----------------------------------------------------------------

def test_all_to_all_with_one_device_sends_nothing():
    assert calc.expert_parallel_all_to_all_bytes(4096, 4096, 2, 1) == 0


@pytest.mark.parametrize("tokens, hidden, top_k, ep, dtype", [
    (4096, 4096, 2, 8, "bf16"), (1000, 512, 1, 2, "fp32"), (8192, 7168, 8, 64, "fp16"), (3, 8, 3, 3, "int8"),
])
def test_all_to_all_closed_form(tokens, hidden, top_k, ep, dtype):
    per = calc.dtype_bytes(dtype)
    expected = 2 * tokens * top_k * hidden * per * (ep - 1) / ep
    assert calc.expert_parallel_all_to_all_bytes(tokens, hidden, top_k, ep, dtype) == pytest.approx(expected)
    parts = calc.expert_parallel_all_to_all_breakdown(tokens, hidden, top_k, ep, dtype)
    assert parts.total == pytest.approx(expected)
    assert parts.items[0].value == parts.items[1].value  # dispatch and combine move the same bytes


def test_all_to_all_worked_example_and_limit():
    # 4096 tokens, Mixtral's h = 4096, top-2, bf16, over 8 devices: 7/8 of 2·4096·2·4096·2 B = 112 MiB
    assert calc.expert_parallel_all_to_all_bytes(4096, 4096, 2, 8) == 112 * calc.MiB
    # more devices: the share leaving approaches everything, 2·T·k·h·B
    ceiling = 2 * 4096 * 2 * 4096 * 2
    shares = [calc.expert_parallel_all_to_all_bytes(4096, 4096, 2, ep) / ceiling for ep in (2, 4, 8, 1024)]
    assert shares == sorted(shares) and shares[0] == 0.5 and shares[-1] == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("args", [(-1, 8, 2, 2), (8, 0, 2, 2), (8, 8, 0, 2), (8, 8, 2, 0), (8, 8, 2, 2.5)])
def test_all_to_all_bad_input(args):
    with pytest.raises(ValueError):
        calc.expert_parallel_all_to_all_bytes(*args)


# ---- speculative decoding -----------------------------------------------------------------------

def simulate_tokens_per_step(alpha: float, k: int, steps: int, seed: int) -> np.ndarray:
    """Tokens each target forward yields when each of k draft tokens is accepted with chance alpha:
    the accepted prefix (up to the first rejection) plus the target's own token."""
    accepted = np.random.default_rng(seed).random((steps, k)) < alpha
    prefix = np.cumprod(accepted, axis=1).sum(axis=1)  # draft tokens before the first rejection
    return prefix + 1


@pytest.mark.parametrize("alpha, k", [(0.8, 4), (0.5, 1), (0.9, 8), (0.3, 3), (0.95, 16)])
def test_speculative_matches_a_simulation(alpha, k):
    tokens = simulate_tokens_per_step(alpha, k, steps=200_000, seed=1234)
    stderr = tokens.std() / np.sqrt(tokens.size)
    assert abs(calc.speculative_tokens_per_step(alpha, k) - tokens.mean()) < 4 * stderr


def test_speculative_closed_form_and_edges():
    assert calc.speculative_tokens_per_step(0.8, 4) == pytest.approx((1 - 0.8**5) / 0.2)  # 3.3616
    assert calc.speculative_tokens_per_step(0.8, 4) == pytest.approx(sum(0.8**i for i in range(5)))
    assert calc.speculative_tokens_per_step(1, 4) == 5 and calc.speculative_tokens_per_step(1.0, 1) == 2
    assert calc.speculative_tokens_per_step(0, 7) == 1
    assert calc.speculative_tokens_per_step(0.999999, 3) == pytest.approx(4, rel=1e-5)  # continuous at 1
    gains = [calc.speculative_tokens_per_step(0.7, k) for k in range(1, 12)]
    assert gains == sorted(gains) and gains[-1] < 1 / (1 - 0.7)  # rising, bounded by 1/(1 − α)


def test_speculative_speedup_pays_for_the_draft():
    assert calc.speculative_speedup(0.8, 4, 0) == calc.speculative_tokens_per_step(0.8, 4)
    assert calc.speculative_speedup(0.8, 4, 0.05) == pytest.approx(3.3616 / 1.2)
    assert calc.speculative_speedup(0.0, 4, 0.1) < 1  # nothing accepted: the draft is pure cost


@pytest.mark.parametrize("alpha, k", [(-0.1, 4), (1.01, 4), (float("nan"), 4), (0.5, 0), (0.5, -2), (0.5, 2.5)])
def test_speculative_bad_input(alpha, k):
    with pytest.raises(ValueError):
        calc.speculative_tokens_per_step(alpha, k)


def test_speculative_bad_draft_cost():
    with pytest.raises(ValueError, match="draft cost"):
        calc.speculative_speedup(0.8, 4, -1)


# ---- quizzes may ask about them -----------------------------------------------------------------

QUIZ = """---
module: parallel
day: 11
title.en: Parallelism
title.zh: 并行
---

## parallel-q-speculative-tokens
kind: parametric
function: speculative_tokens_per_step
unit:
param.alpha: 0.6 | 0.8
param.k: 2..5

### question.en
Acceptance {{alpha}}, look-ahead {{k}}: tokens per target forward?
### question.zh
接受率 {{alpha}}，前瞻 {{k}}：每次目标前向产生多少 token？
### explanation.en
(1 − α^(k+1))/(1 − α) = {{answer}}.
### explanation.zh
(1 − α^(k+1))/(1 − α) = {{answer}}。

## parallel-q-moe-a2a
kind: parametric
function: expert_parallel_all_to_all_bytes
unit: MiB
param.tokens: 4096
param.hidden: 4096
param.top_k: 2
param.ep: 2 | 8

### question.en
All-to-all bytes for {{tokens}} tokens, h = {{hidden}}, top-{{top_k}}, EP = {{ep}}?
### question.zh
{{tokens}} 个 token、h = {{hidden}}、top-{{top_k}}、EP = {{ep}} 时的 all-to-all 字节数？
### explanation.en
2·T·k·h·2 B·(EP − 1)/EP = {{answer}}.
### explanation.zh
2·T·k·h·2 B·(EP − 1)/EP = {{answer}}。
"""


def test_parametric_questions_can_use_the_new_functions():
    bank = quiz.parse_quiz(QUIZ, "t.md", {"parallel": 11})
    assert not bank.problems, bank.problems
    shown = quiz.present_with(bank.by_id["parallel-q-speculative-tokens"], {"alpha": 0.8, "k": 4})
    assert quiz.grade(shown, "3.36").correct and not quiz.grade(shown, "4").correct
    a2a = quiz.present_with(bank.by_id["parallel-q-moe-a2a"], {"tokens": 4096, "hidden": 4096, "top_k": 2, "ep": 8})
    assert quiz.grade(a2a, "112 MiB").correct
    drawn = quiz.draw(bank.by_id["parallel-q-moe-a2a"], random.Random(0))
    assert drawn.expected_value in (64 * calc.MiB, 112 * calc.MiB)
