"""The attention lab: tiled online-softmax attention, GQA/MQA KV caches, decoding with a cache."""

from __future__ import annotations

import pytest
import torch

from labs import attention as att
from labs._runtime import run_in_process


@pytest.mark.lab
def test_toy_run_tiled_equals_naive_and_cache_shrinks(tmp_path):
    events = run_in_process("attention", toy=True, out_dir=tmp_path)
    head = events[-1]["headline"]
    assert head["tiled_max_abs_err"] <= 1e-5
    assert head["tiled_peak_bytes_at_max_len"] < head["naive_peak_bytes_at_max_len"] / 4
    assert head["naive_memory_growth_exponent"] > 1.7  # the T x T score matrix
    assert head["tiled_memory_growth_exponent"] < 1.2
    assert head["kv_bytes_match_formula"] is True
    assert head["kv_bytes_mha"] == 8 * head["kv_bytes_mqa"]
    assert head["cache_vs_no_cache_max_logit_diff"] < 1e-4
    assert head["time_exponent_without_cache"] > head["time_exponent_with_cache"]
    tables = {e["name"] for e in events if e["event"] == "table"}
    assert {"tiled_vs_naive", "kv_heads", "decode_cost"} <= tables


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("t,s,bq,bk", [(1, 1, 4, 4), (37, 37, 8, 16), (64, 64, 64, 64), (5, 50, 4, 7), (33, 70, 16, 9)])
def test_online_softmax_attention_equals_naive(t, s, bq, bk, causal):
    g = torch.Generator().manual_seed(t * 100 + s)
    q = torch.randn(2, 3, t, 16, generator=g) * 3  # large scores: the running max matters
    k = torch.randn(2, 3, s, 16, generator=g) * 3
    v = torch.randn(2, 3, s, 16, generator=g)
    naive = att.naive_attention(q, k, v, causal=causal)
    tiled = att.tiled_attention(q, k, v, bq, bk, causal=causal)
    assert (naive - tiled).abs().max().item() <= 1e-5
    if causal and t == s:
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        assert (ref - tiled).abs().max().item() <= 1e-5


def test_memory_tracker_sees_the_score_matrix():
    q = torch.randn(1, 2, 256, 32)
    with att.MemoryTracker() as naive:
        att.naive_attention(q, q, q)
    with att.MemoryTracker() as tiled:
        att.tiled_attention(q, q, q, 32, 32)
    assert naive.largest == 2 * 256 * 256 * 4  # the (2, 256, 256) float32 scores
    assert tiled.largest == 2 * 256 * 32 * 4  # its largest tensor is the output itself
    assert tiled.peak < naive.peak
    assert naive.live == 0 or naive.live <= 2 * 256 * 32 * 4  # only the output can still be alive


def test_kv_cache_bytes_formula_and_gqa_decoding():
    assert att.kv_cache_bytes(2, 4, 16, 10) == 2 * 2 * 4 * 16 * 10 * 4
    cfg = att.Config(d_model=32, n_heads=4, n_layers=2, vocab=50)
    torch.manual_seed(0)
    model = att.Decoder(cfg, 2, 64).eval()
    prompt = torch.randint(50, (2, 5))
    seq_c, logits_c, _, cache = att.generate(model, prompt, 6, True, "cpu")
    seq_n, logits_n, _, _ = att.generate(model, prompt, 6, False, "cpu")
    assert torch.equal(seq_c, seq_n)
    assert (logits_c - logits_n).abs().max().item() < 1e-5
    assert cache.nbytes() == att.kv_cache_bytes(2, 2, 8, 11, batch=2)
