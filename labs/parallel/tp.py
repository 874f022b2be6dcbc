"""Tensor parallelism (Megatron-LM): one transformer block split over a TP group.

MLP ``Y = gelu(X A) B``: A split by columns, B by rows; rank i computes ``gelu(X A_i) B_i`` and
one all-reduce (g) sums the partial outputs. The input passes through f (identity forward,
all-reduce of dL/dX backward). Attention: Q, K, V by columns (whole heads), W_o by rows.
Per block, forward + backward: 4 all-reduces of b*s*h numbers.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from labs.parallel.config import Config, ring_allreduce_bytes
from labs.parallel.mesh import Mesh, Traffic, ring_all_reduce


class _CopyToTP(torch.autograd.Function):
    """Megatron's f: identity forward, all-reduce of the gradient backward."""

    @staticmethod
    def forward(ctx, x, group, traffic, label):
        ctx.group, ctx.traffic, ctx.label = group, traffic, label
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        out = ring_all_reduce(grad.contiguous().flatten(), ctx.group, ctx.traffic, ctx.label).view_as(grad)
        return out, None, None, None


class _ReduceFromTP(torch.autograd.Function):
    """Megatron's g: all-reduce forward, identity backward."""

    @staticmethod
    def forward(ctx, x, group, traffic, label):
        return ring_all_reduce(x.contiguous().flatten(), group, traffic, label).view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None


def tp_ops(mesh: Mesh, traffic: Traffic, label: str) -> tuple[Callable, Callable]:
    """This rank's f and g over its TP group, counting bytes under ``label``."""
    f = lambda t: _CopyToTP.apply(t, mesh.tp_group, traffic, label)  # noqa: E731
    g = lambda t: _ReduceFromTP.apply(t, mesh.tp_group, traffic, label)  # noqa: E731
    return f, g


def block_weights(cfg: Config, device: str, which: int = 0) -> dict[str, torch.Tensor]:
    """Full weights of transformer block ``which`` (x @ W convention), the same on every rank."""
    g = torch.Generator().manual_seed(cfg.seed * 1000 + which)
    h = cfg.hidden
    shapes = {"wq": (h, h), "wk": (h, h), "wv": (h, h), "wo": (h, h), "w1": (h, 4 * h), "w2": (4 * h, h)}
    return {k: (torch.randn(*s, generator=g) / math.sqrt(s[0])).to(device) for k, s in shapes.items()}


def attention(x: torch.Tensor, wq, wk, wv, wo, n_heads: int) -> torch.Tensor:
    b, s, _ = x.shape
    q, k, v = (torch.matmul(x, w).view(b, s, n_heads, -1).transpose(1, 2) for w in (wq, wk, wv))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return o.transpose(1, 2).reshape(b, s, -1) @ wo


def block_forward(x: torch.Tensor, w: dict[str, torch.Tensor], n_heads: int,
                  f: Callable = lambda t: t, g: Callable = lambda t: t) -> torch.Tensor:
    """x + attention, then + MLP; f and g are identity on one process, Megatron's ops under TP."""
    y = x + g(attention(f(x), w["wq"], w["wk"], w["wv"], w["wo"], n_heads))
    return y + g(F.gelu(f(y) @ w["w1"]) @ w["w2"])


def tp_shard(w: dict[str, torch.Tensor], tp: int, i: int) -> dict[str, torch.Tensor]:
    """Rank i's shard: Q, K, V and W1 by columns (whole heads), W_o and W2 by rows."""
    cols = lambda t: t.chunk(tp, dim=1)[i]  # noqa: E731
    rows = lambda t: t.chunk(tp, dim=0)[i]  # noqa: E731
    return {"wq": cols(w["wq"]), "wk": cols(w["wk"]), "wv": cols(w["wv"]), "wo": rows(w["wo"]),
            "w1": cols(w["w1"]), "w2": rows(w["w2"])}


def run_tp(cfg: Config, mesh: Mesh, device: str, traffic: Traffic) -> dict[str, Any]:
    """One block forward + backward on every TP group, against the same block on one process."""
    full = block_weights(cfg, device)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 1)
    x0 = torch.randn(cfg.batch, cfg.seq_len, cfg.hidden, generator=gen).to(device)
    target = torch.randn(cfg.batch, cfg.seq_len, cfg.hidden, generator=gen).to(device)

    # one process: the reference
    ref_w = {k: v.clone().requires_grad_() for k, v in full.items()}
    x_ref = x0.clone().requires_grad_()
    out_ref = block_forward(x_ref, ref_w, cfg.heads)
    ((out_ref - target) ** 2).mean().backward()

    # tensor parallel over this rank's TP group
    shard = {k: v.clone().requires_grad_() for k, v in tp_shard(full, cfg.tp, mesh.tp_i).items()}
    x = x0.clone().requires_grad_()
    f, g = tp_ops(mesh, traffic, "tp")
    traffic.take("tp")
    out = block_forward(x, shard, cfg.heads // cfg.tp, f, g)
    ((out - target) ** 2).mean().backward()
    sent, calls = traffic.take("tp")

    ref_shard_grads = tp_shard({k: v.grad for k, v in ref_w.items()}, cfg.tp, mesh.tp_i)
    err_out = (out - out_ref).abs().max().item()
    err_grad = max([(x.grad - x_ref.grad).abs().max().item()]
                   + [(shard[k].grad - ref_shard_grads[k]).abs().max().item() for k in shard])
    n = cfg.batch * cfg.seq_len * cfg.hidden
    return {"max_abs_err_out": err_out, "max_abs_err_grad": err_grad, "allreduces": calls // max(1, 2 * (cfg.tp - 1)),
            "bytes_sent": sent, "bytes_analytic": 4 * ring_allreduce_bytes(n, cfg.tp, x0.element_size()),
            "params_per_rank": sum(v.numel() for v in shard.values()),
            "params_full": sum(v.numel() for v in full.values())}
