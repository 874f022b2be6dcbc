"""The attention lab: tiled online-softmax attention, GQA/MQA KV caches, decoding with a cache."""

from __future__ import annotations

import io

import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import attention as att
from labs._runtime import EXIT_USAGE, main, run_in_process


CLAIMS = [
    Claim("tiled vs naive attention, max |diff|", "tiled_max_abs_err", "<", 1e-5, null=None),
    Claim("naive / tiled peak memory at the longest sequence",
          lambda r: r.h["naive_peak_bytes_at_max_len"] / r.h["tiled_peak_bytes_at_max_len"], ">", 4, null=1),
    Claim("naive attention's memory growth exponent (T^2: 2)", "naive_memory_growth_exponent", ">", 1.6, null=1),
    Claim("tiled attention's memory growth exponent (naive: ~2)", "tiled_memory_growth_exponent", "<", 1.4, null=2),
    Claim("KV cache bytes, allocated vs formula, max relative error", "kv_bytes_formula_max_rel_err", "<", 0.01,
          null=None),
    Claim("KV cache bytes measured, MHA / MQA (h / h_kv = 8)",
          lambda r: r.h["kv_bytes_mha"] / r.h["kv_bytes_mqa"], ">", 6, null=1),
    Claim("logits with vs without the cache, max |diff|", "cache_vs_no_cache_max_logit_diff", "<", 1e-4, null=None),
    Claim("decode time, without / with the cache", "cache_speedup", ">", 1.5, null=1),
    Claim("decode FLOPs, without / with the cache", lambda r: r.h["flops_without_cache"] / r.h["flops_with_cache"],
          ">", 20, null=1),
    Claim("cumulative-FLOPs growth exponent, without - with the cache (N^2 vs N)",
          lambda r: r.h["flops_exponent_without_cache"] - r.h["flops_exponent_with_cache"], ">", 0.5),
]


@pytest.mark.lab
def test_toy_run_tiled_equals_naive_and_cache_shrinks(tmp_path):
    events = run_in_process("attention", toy=True, out_dir=tmp_path)
    check_claims(CLAIMS, LabResult.of(events))
    tables = {e["name"]: e for e in events if e["event"] == "table"}
    assert {"tiled_vs_naive", "kv_heads", "decode_cost"} <= tables.keys()
    assert [row[1] for row in tables["kv_heads"]["rows"]] == [8, 2, 1]


@pytest.mark.parametrize("bad", ["kv_heads=0", "seq_lens=", "kv_heads=", "block_q=0", "cache_compare_tokens=8",
                                 "kv_heads=3"])
def test_bad_settings_are_usage_errors_naming_the_field(bad, tmp_path, capsys):
    assert main(["attention", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE
    assert bad.split("=")[0] in capsys.readouterr().err


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
    assert att.measured_cache_bytes(model, prompt, 6, "cpu") == (att.kv_cache_bytes(2, 2, 8, 11, batch=2), 11)


class FullHeadCache(att.KVCache):
    """A wasteful cache: allocates every query head, hands the blocks views of the first kv_heads."""

    def __init__(self, n_layers, batch, kv_heads, max_len, head_dim, device, n_heads):
        super().__init__(n_layers, batch, n_heads, max_len, head_dim, device)
        self.k = [t[:, :kv_heads] for t in self.k]
        self.v = [t[:, :kv_heads] for t in self.v]


def test_measured_cache_bytes_see_a_cache_that_stores_full_heads():
    cfg = att.Config(d_model=32, n_heads=4, n_layers=2, vocab=50)
    torch.manual_seed(0)
    model = att.Decoder(cfg, 1, 64).eval()  # MQA
    prompt = torch.randint(50, (1, 5))
    formula = att.kv_cache_bytes(2, 1, 8, 9)
    assert att.measured_cache_bytes(model, prompt, 4, "cpu") == (formula, 9)
    model.new_cache = lambda b, n, device: FullHeadCache(2, b, 1, n, 8, device, n_heads=4)
    seq_full, _, _, cache = att.generate(model, prompt, 4, True, "cpu")
    assert all(t.shape[1] == 1 for t in cache.k)  # its shapes still look like MQA...
    assert att.measured_cache_bytes(model, prompt, 4, "cpu") == (4 * formula, 9)  # ...its allocation does not
