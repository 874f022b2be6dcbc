"""Attention at inference: MHA vs GQA vs MQA, Flash-style tiling, and the KV cache.

1. Grouped-query attention. h query heads share h_kv key/value heads (h_kv = h: multi-head,
   1 < h_kv < h: grouped-query, h_kv = 1: multi-query); head j reads key/value head
   j // (h / h_kv). Decoding keeps every past key and value, so the KV cache holds

       bytes = 2 (K and V) * layers * h_kv * head_dim * tokens * batch * bytes_per_number

   and shrinks by h / h_kv. The lab builds a small decoder for each variant, decodes with a
   cache for exactly the prompt and the new tokens, under the memory tracker of part 2, and
   measures the cache as the bytes released when it is dropped afterwards: what it really
   allocated, not what its shapes claim (a cache that kept all h heads would measure h / h_kv
   times the formula). Reported next to the formula, with tokens per second.

2. Tiled attention with an online softmax (the Flash Attention algorithm, Dao et al. 2022).
   O = softmax(Q K^T / sqrt(d)) V, computed one block of queries at a time against one block
   of keys at a time, keeping for each query row a running max m, a running normaliser l and an
   unnormalised output acc. For a new block of scores S_j:

       m' = max(m, rowmax(S_j));  P = exp(S_j - m')
       l' = exp(m - m') l + rowsum(P);  acc' = exp(m - m') acc + P V_j;    and at the end O = acc / l

   The result is exactly softmax attention (up to rounding) but the T x T score matrix never
   exists: the largest score tensor is block_q x block_k. The lab checks it against naive
   attention (within 1e-5) and measures peak memory against sequence length by tracking every
   tensor the computation allocates (a TorchDispatchMode that adds each new storage's bytes and
   subtracts them when the last tensor using it is freed): naive grows as T^2, tiled at most as T.

3. Decoding with and without a KV cache. Without a cache, token t re-runs the model over all t
   tokens so far (cost ~ t; N tokens ~ N^2). With a cache, only the new token is projected and
   attends to the cached keys (cost ~ 1 plus a cheap ~t attention read; N tokens ~ N). Both give
   the same tokens and logits. The lab counts each step's FLOPs (torch's FlopCounterMode; the
   decoder's attention is plain matmuls so that all of it is counted) and times each step, and
   fits the growth exponent of the cumulative FLOPs and of the cumulative time.

A CPU is compute- not bandwidth-starved at these sizes, so MQA's speed gain is smaller here than
on a GPU, where decoding is limited by reading the cache; the memory saving is exact anywhere.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from labs._memory import MemoryTracker
from labs._runtime import Emitter, LabFailure, Range
from labs._tinylm import cpu_threads
from labs.protocol import Chart


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    # the decoder used for KV-cache bytes and decode speed
    d_model: int = 512
    n_heads: int = 8
    kv_heads: tuple[int, ...] = (8, 2, 1)  # MHA, GQA, MQA
    n_layers: int = 4
    vocab: int = 512
    prompt_len: int = 512
    decode_tokens: int = 128
    # tiled attention
    attn_heads: int = 4
    head_dim: int = 64
    seq_lens: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
    block_q: int = 128
    block_k: int = 128
    # with vs without a cache (short prompt, so that the cost is dominated by generated tokens)
    cache_compare_tokens: int = 384

    def validate(self) -> None:  # single-field bounds are in LIMITS below
        if any(self.n_heads % h for h in self.kv_heads):
            raise ValueError("kv_heads: every value must divide n_heads")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must divide by n_heads")


LIMITS = {"d_model": Range(1), "n_heads": Range(1), "kv_heads": Range(1), "n_layers": Range(1), "vocab": Range(2),
          "prompt_len": Range(1), "decode_tokens": Range(1), "attn_heads": Range(1), "head_dim": Range(1),
          "seq_lens": Range(1), "block_q": Range(1), "block_k": Range(1), "cache_compare_tokens": Range(16)}

TOY = {"d_model": 256, "n_layers": 2, "vocab": 256, "prompt_len": 256, "decode_tokens": 64,
       "seq_lens": (256, 512, 1024), "block_q": 64, "block_k": 64, "cache_compare_tokens": 160}

CHARTS = [
    Chart("Peak memory, naive vs tiled attention", y=("memory/naive_peak_bytes", "memory/tiled_peak_bytes"),
          log_x=True, log_y=True, x_label="sequence length", y_label="peak bytes",
          look_for="Naive grows as T^2 (slope 2 here), tiled about linearly: the score matrix is never built."),
    Chart("KV cache vs KV heads", table="kv_heads", x="kv_heads", y=("kv_bytes_measured",),
          reference=("kv_bytes_formula",), x_label="KV heads", y_label="bytes",
          look_for="The measured cache sits on the formula 2 L h_kv d T b: fewer KV heads, a smaller cache."),
    Chart("Decoding with and without the KV cache", table="decode_cost", x="token_index",
          y=("step_ms_with_cache", "step_ms_without_cache"), x_label="token", y_label="ms per step",
          look_for="Without the cache each step recomputes the prefix and slows down; with it, flat."),
]


# -- attention, two ways -------------------------------------------------------------------

def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V with the full score matrix; q is (..., T, d), k and v (..., S, d)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:  # query i (of the last T positions) sees keys up to S - T + i
        t, s = q.shape[-2], k.shape[-2]
        mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_q: int = 64, block_k: int = 64,
                    causal: bool = False) -> torch.Tensor:
    """The same result block by block with an online softmax; no (T, S) tensor is ever built."""
    t, s, d = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(d)
    out = torch.empty_like(q)
    for i0 in range(0, t, block_q):
        qi = q[..., i0:i0 + block_q, :] * scale
        rows = qi.shape[-2]
        m = torch.full((*qi.shape[:-1], 1), float("-inf"), dtype=q.dtype, device=q.device)
        l = torch.zeros_like(m)
        acc = torch.zeros_like(qi)
        last_key = s - t + i0 + rows - 1 if causal else s - 1  # the furthest key any row here may see
        for j0 in range(0, last_key + 1, block_k):
            kj, vj = k[..., j0:j0 + block_k, :], v[..., j0:j0 + block_k, :]
            scores = qi @ kj.transpose(-2, -1)
            if causal and j0 + kj.shape[-2] - 1 > s - t + i0:  # this block crosses the diagonal
                qpos = torch.arange(i0, i0 + rows, device=q.device)[:, None] + (s - t)
                kpos = torch.arange(j0, j0 + kj.shape[-2], device=q.device)[None, :]
                scores = scores.masked_fill(kpos > qpos, float("-inf"))
            m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))
            p = torch.exp(scores - m_new)
            correction = torch.exp(m - m_new)
            l = l * correction + p.sum(dim=-1, keepdim=True)
            acc = acc * correction + p @ vj
            m = m_new
        out[..., i0:i0 + rows, :] = acc / l
    return out


# -- a small decoder with grouped-query attention and a KV cache ---------------------------

class KVCache:
    """Preallocated keys and values: per layer (batch, kv_heads, max_len, head_dim)."""

    def __init__(self, n_layers: int, batch: int, kv_heads: int, max_len: int, head_dim: int, device: str):
        self.k = [torch.zeros(batch, kv_heads, max_len, head_dim, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(batch, kv_heads, max_len, head_dim, device=device) for _ in range(n_layers)]
        self.length = 0


class Block(torch.nn.Module):
    def __init__(self, d: int, n_heads: int, kv_heads: int):
        super().__init__()
        self.h, self.h_kv, self.hd = n_heads, kv_heads, d // n_heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.wq = torch.nn.Linear(d, n_heads * self.hd, bias=False)
        self.wkv = torch.nn.Linear(d, 2 * kv_heads * self.hd, bias=False)  # K and V: h_kv heads each
        self.wo = torch.nn.Linear(d, d, bias=False)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, layer: int, cache: KVCache | None) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q = self.wq(h).view(b, t, self.h, self.hd).transpose(1, 2)
        k, v = self.wkv(h).view(b, t, 2, self.h_kv, self.hd).permute(2, 0, 3, 1, 4)
        if cache is not None:
            start = cache.length
            cache.k[layer][:, :, start:start + t] = k
            cache.v[layer][:, :, start:start + t] = v
            k, v = cache.k[layer][:, :, :start + t], cache.v[layer][:, :, :start + t]
        group = self.h // self.h_kv  # query head j reads key/value head j // group
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        # offset causal mask for new queries after cached keys; plain matmuls so that FlopCounterMode sees them
        att = naive_attention(q, k, v, causal=True)
        x = x + self.wo(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class Decoder(torch.nn.Module):
    def __init__(self, cfg: Config, kv_heads: int, max_len: int):
        super().__init__()
        self.cfg, self.kv_heads = cfg, kv_heads
        self.tok = torch.nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos = torch.nn.Embedding(max_len, cfg.d_model)
        self.blocks = torch.nn.ModuleList(Block(cfg.d_model, cfg.n_heads, kv_heads) for _ in range(cfg.n_layers))
        self.head = torch.nn.Linear(cfg.d_model, cfg.vocab, bias=False)

    def new_cache(self, batch: int, max_len: int, device: str) -> KVCache:
        return KVCache(self.cfg.n_layers, batch, self.kv_heads, max_len, self.cfg.d_model // self.cfg.n_heads, device)

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        start = cache.length if cache is not None else 0
        x = self.tok(ids) + self.pos(torch.arange(start, start + ids.shape[1], device=ids.device))
        for i, block in enumerate(self.blocks):
            x = block(x, i, cache)
        if cache is not None:
            cache.length += ids.shape[1]
        return self.head(x)


def kv_cache_bytes(n_layers: int, kv_heads: int, head_dim: int, tokens: int, batch: int = 1, bytes_per: int = 4) -> int:
    """2 (K and V) * layers * kv_heads * head_dim * tokens * batch * bytes per number."""
    return 2 * n_layers * kv_heads * head_dim * tokens * batch * bytes_per


@torch.no_grad()
def generate(model: Decoder, prompt: torch.Tensor, n_new: int, use_cache: bool, device: str,
             count_flops: bool = False):
    """Greedy decoding; returns tokens, the logits of each new token, each step's cost (seconds, or
    the FLOPs torch's FlopCounterMode counts when ``count_flops``) and the cache."""
    cache = model.new_cache(prompt.shape[0], prompt.shape[1] + n_new, device) if use_cache else None
    seq, logits_seen, times = prompt, [], []
    logits = model(prompt, cache)[:, -1]  # prefill
    for _ in range(n_new):
        nxt = logits.argmax(dim=-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
        logits_seen.append(logits)
        t0 = time.perf_counter()
        with FlopCounterMode(display=False) if count_flops else contextlib.nullcontext() as counter:
            logits = (model(nxt, cache) if use_cache else model(seq))[:, -1]
        times.append(counter.get_total_flops() if count_flops else time.perf_counter() - t0)
    return seq, torch.stack(logits_seen), times, cache


def measured_cache_bytes(model: Decoder, prompt: torch.Tensor, n_new: int, device: str) -> tuple[int, int]:
    """Decode under the MemoryTracker, then drop the cache: the bytes that go with it are what the
    cache really allocated. Returns (bytes, tokens held in the cache)."""
    with MemoryTracker() as tracker:
        _, _, _, cache = generate(model, prompt, n_new, True, device)
        tokens, held = cache.length, tracker.live
        del cache  # the cache's tensors are referenced nowhere else: their storages are freed now
        released = held - tracker.live
    if released <= 0:
        raise LabFailure("the memory tracker saw no allocation for the KV cache")
    return released, tokens


def growth_exponent(step_times: list[float]) -> float:
    """Slope of log(cumulative time) between N/4 and N tokens: ~1 linear, ~2 quadratic."""
    n = len(step_times)
    a, b = sum(step_times[: n // 4]), sum(step_times)
    return math.log(b / a) / math.log(n / (n // 4))


# -- the lab -------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    total = len(cfg.seq_lens) + len(cfg.kv_heads) + 1
    emit.start(cfg, total_steps=total)
    with cpu_threads(1):  # one thread unless --threads says otherwise: steadier timings on a shared CPU
        _run(cfg, emit, out_dir, total)


def _run(cfg: Config, emit: Emitter, out_dir: Path, total: int) -> None:
    device, done = cfg.device, 0

    # 1. tiled vs naive attention: equality and peak memory
    gen = torch.Generator().manual_seed(cfg.seed)
    rows, worst = [], 0.0
    for t in cfg.seq_lens:
        q, k, v = (torch.randn(1, cfg.attn_heads, t, cfg.head_dim, generator=gen).to(device) for _ in range(3))
        measured = {}
        for name, fn in (("naive", lambda c: naive_attention(q, k, v, causal=c)),
                         ("tiled", lambda c: tiled_attention(q, k, v, cfg.block_q, cfg.block_k, causal=c))):
            with MemoryTracker() as tracker:
                t0 = time.perf_counter()
                out = fn(True)
                seconds = time.perf_counter() - t0
            measured[name] = (out, tracker.peak, tracker.largest, seconds)
        err_causal = (measured["naive"][0] - measured["tiled"][0]).abs().max().item()
        err_full = (naive_attention(q, k, v) - tiled_attention(q, k, v, cfg.block_q, cfg.block_k)).abs().max().item()
        err_sdpa = (F.scaled_dot_product_attention(q, k, v, is_causal=True) - measured["tiled"][0]).abs().max().item()
        worst = max(worst, err_causal, err_full, err_sdpa)
        score_bytes = cfg.attn_heads * t * t * 4
        rows.append([t, max(err_causal, err_full), err_sdpa, score_bytes, measured["naive"][1], measured["tiled"][1],
                     measured["naive"][2], measured["tiled"][2], measured["naive"][3], measured["tiled"][3]])
        emit.metric(t, **{"attention/max_abs_err": max(err_causal, err_full), "memory/naive_peak_bytes": measured["naive"][1],
                          "memory/tiled_peak_bytes": measured["tiled"][1]})
        done += 1
        emit.progress(done)
    emit.table("tiled_vs_naive", ["seq_len", "max_abs_err", "err_vs_torch_sdpa", "score_matrix_bytes", "naive_peak_bytes",
                                  "tiled_peak_bytes", "naive_largest_tensor", "tiled_largest_tensor", "naive_s", "tiled_s"], rows)
    if worst > 1e-5:
        raise LabFailure(f"tiled attention differs from naive attention by {worst:.3g} (> 1e-5)")
    growth = lambda col: math.log(rows[-1][col] / rows[0][col]) / math.log(rows[-1][0] / rows[0][0])  # noqa: E731
    naive_growth, tiled_growth = (growth(4), growth(5)) if len(rows) > 1 else (float("nan"), float("nan"))

    # 2. MHA vs GQA vs MQA: cache bytes and decode speed
    head_dim = cfg.d_model // cfg.n_heads
    max_len = cfg.prompt_len + max(cfg.decode_tokens, cfg.cache_compare_tokens) + 8
    prompt = torch.randint(cfg.vocab, (1, cfg.prompt_len), generator=gen).to(device)
    variant_rows, speeds = [], {}
    for h_kv in cfg.kv_heads:
        torch.manual_seed(cfg.seed)
        model = Decoder(cfg, h_kv, max_len).to(device).eval()
        generate(model, prompt[:, :16], 4, True, device)  # warm-up
        _, _, times, _ = generate(model, prompt, cfg.decode_tokens, True, device)  # timed, untracked
        measured_bytes, tokens = measured_cache_bytes(model, prompt, cfg.decode_tokens, device)
        formula = kv_cache_bytes(cfg.n_layers, h_kv, head_dim, tokens)
        name = "MHA" if h_kv == cfg.n_heads else "MQA" if h_kv == 1 else f"GQA-{h_kv}"
        tps = len(times) / sum(times)
        speeds[name] = tps
        params = sum(p.numel() for p in model.parameters())
        variant_rows.append([name, h_kv, params, tokens, measured_bytes, formula,
                             cfg.n_heads / h_kv, tps])
        emit.metric(h_kv, **{"decode/tokens_per_s": tps, "kv/bytes": measured_bytes})
        done += 1
        emit.progress(done)
    emit.table("kv_heads", ["variant", "kv_heads", "params", "cached_tokens", "kv_bytes_measured", "kv_bytes_formula",
                            "cache_shrink_vs_MHA", "decode_tokens_per_s"], variant_rows)

    # 3. decoding with and without the cache
    torch.manual_seed(cfg.seed)
    model = Decoder(cfg, cfg.kv_heads[0], 8 + cfg.cache_compare_tokens + 8).to(device).eval()
    short = prompt[:, :8]
    seq_c, logits_c, times_c, _ = generate(model, short, cfg.cache_compare_tokens, True, device)
    seq_n, logits_n, times_n, _ = generate(model, short, cfg.cache_compare_tokens, False, device)
    if not torch.equal(seq_c, seq_n):
        raise LabFailure("decoding with and without the KV cache produced different tokens")
    cache_err = (logits_c - logits_n).abs().max().item()
    if cache_err > 1e-4:
        raise LabFailure(f"cached logits differ from uncached ones by {cache_err:.3g}")
    # the same decoding again, counting each step's FLOPs instead of timing it (a count: no noise)
    flops_c, flops_n = (generate(model, short, cfg.cache_compare_tokens, use_cache, device, count_flops=True)[2]
                        for use_cache in (True, False))
    n = len(times_c)
    marks = sorted({n // 8, n // 4, n // 2, n - 1})
    emit.table("decode_cost", ["token_index", "step_ms_with_cache", "step_ms_without_cache", "step_flops_with_cache",
                               "step_flops_without_cache", "cumulative_s_with_cache", "cumulative_s_without_cache"],
               [[i + 1, 1000 * times_c[i], 1000 * times_n[i], flops_c[i], flops_n[i], sum(times_c[: i + 1]),
                 sum(times_n[: i + 1])] for i in marks])
    exp_c, exp_n = growth_exponent(times_c), growth_exponent(times_n)
    fexp_c, fexp_n = growth_exponent(flops_c), growth_exponent(flops_n)
    emit.log(f"decoding {n} tokens: {n / sum(times_c):.0f} tokens/s with the cache, {n / sum(times_n):.0f} without; "
             f"cumulative FLOPs grow as N^{fexp_c:.2f} with, N^{fexp_n:.2f} without "
             f"(time: N^{exp_c:.2f} and N^{exp_n:.2f})")
    done += 1
    emit.progress(done)

    by_heads = {r[1]: r for r in variant_rows}
    mha, mqa = by_heads.get(cfg.n_heads), by_heads.get(1)
    emit.summary({
        "tiled_max_abs_err": worst,
        "naive_peak_bytes_at_max_len": rows[-1][4],
        "tiled_peak_bytes_at_max_len": rows[-1][5],
        "naive_memory_growth_exponent": naive_growth,
        "tiled_memory_growth_exponent": tiled_growth,
        "kv_bytes_mha": mha[4] if mha else None,
        "kv_bytes_mqa": mqa[4] if mqa else None,
        "kv_bytes_formula_max_rel_err": max(abs(r[4] / r[5] - 1) for r in variant_rows),
        **{f"decode_tokens_per_s_{k.lower().replace('-', '')}": v for k, v in speeds.items()},
        "tokens_per_s_with_cache": n / sum(times_c),
        "tokens_per_s_without_cache": n / sum(times_n),
        "cache_speedup": sum(times_n) / sum(times_c),
        "flops_with_cache": sum(flops_c),
        "flops_without_cache": sum(flops_n),
        "flops_exponent_with_cache": fexp_c,
        "flops_exponent_without_cache": fexp_n,
        "time_exponent_with_cache": exp_c,
        "time_exponent_without_cache": exp_n,
        "cache_vs_no_cache_max_logit_diff": cache_err,
    })
