"""Megatron-style parallelism on real torch.distributed processes: TP, PP, DP and ZeRO.

The lab starts ``tp * pp * dp`` processes itself (torch.multiprocessing; ``fork`` on CPU so that
no child re-imports torch, ``spawn`` for CUDA), joins them through a ``file://`` rendezvous in a
temporary folder (no ports to clash) and uses gloo on CPU, NCCL on GPU. Rank r sits at mesh
coordinates (dp_i, pp_i, tp_i) with ``r = (dp_i * pp + pp_i) * tp + tp_i`` (tensor parallel
innermost, as in Megatron-LM). Each demonstration runs on its own axis's sub-groups (every
TP group, every pipeline, every DP group); a stage of the pipeline is not itself TP-sharded.

Tensor parallelism (Megatron-LM, Shoeybi et al. 2019). For an MLP ``Y = gelu(X A) B`` split A by
columns and B by rows over p ranks: rank i computes ``gelu(X A_i) B_i`` with no communication
between the two matmuls, and ``Y = sum_i gelu(X A_i) B_i`` is one all-reduce (the "g" op). The
input goes through the "f" op: identity forward, all-reduce of dL/dX backward. Attention splits
the heads: Q, K, V projections by columns (whole heads per rank), the output projection by rows,
one all-reduce forward and one backward. A block (attention + MLP, residuals) therefore costs
4 all-reduces of ``b * s * h`` numbers per forward+backward.

Ring all-reduce (written here with point-to-point sends, so the bytes are counted at each send):
split N numbers into p chunks; p-1 reduce-scatter steps then p-1 all-gather steps, each sending
one chunk to the next rank:   bytes sent per rank = 2 (p-1)/p * N * bytes_per_number.

Pipeline parallelism. p stages, m micro-batches, forward time t_f and backward t_b per
micro-batch per stage. GPipe runs all m forwards then all m backwards; 1F1B (PipeDream-Flush)
runs p-s-1 warm-up forwards on stage s, then alternates one forward and one backward. Both take
(m + p - 1)(t_f + t_b) while each stage computes for m (t_f + t_b), so the bubble is

    bubble = (p - 1) / (m + p - 1)

Bubble definition used here: for each stage, the fraction of the pipeline's makespan (first
forward start on any stage to last backward end on any stage) in which that stage is not
computing, averaged over stages, from each rank's recorded timeline of forward/backward
intervals. Of pp_repeats timed runs the median is reported, with the smallest and the spread
beside it: other processes on the same cores distort single runs both ways (a stage that is
descheduled leaves its neighbour waiting, while work that overlaps on busy cores slows down
and makes the stages look busier). A stage's compute (about 20 ms forward per micro-batch) is
sized to dwarf a send (well under 1 ms on loopback). GPipe holds all m micro-batches'
activations at its peak; 1F1B holds at most p - s on stage s. Sends and receives are posted
together with ``dist.batch_isend_irecv``: blocking send/recv would deadlock in 1F1B's steady
state (stage s sends an activation forward while s+1 sends a gradient back, each waiting for the
other to receive).

Data parallelism: each of p ranks takes 1/p of the batch; averaging the gradients with a ring
all-reduce gives exactly the full-batch gradient (2 (p-1)/p * Psi numbers sent per rank, Psi =
parameter count).

ZeRO (Rajbhandari et al. 2020), fp32 Adam (m and v: 8 bytes per parameter):
  ZeRO-1 shards optimizer states:      optimizer bytes per rank = 8 Psi / p
  ZeRO-3 shards parameters too:        parameter bytes per rank = 4 Psi / p, optimizer 8 Psi / p
torch's ZeroRedundancyOptimizer is ZeRO-1 (gradients all-reduced, each rank updates its shard,
then broadcasts it: 3 (p-1)/p * Psi in ring-equivalent traffic); FSDP2 ``fully_shard`` is ZeRO-3
(all-gather parameters in forward and again in backward, reduce-scatter gradients:
3 (p-1)/p * Psi, against plain DP's 2 (p-1)/p * Psi). For torch's own collectives the lab wraps
the ``torch.distributed`` functions they call and counts the bytes handed to each; "sent" is the
ring-equivalent share of one rank (all-gather and reduce-scatter of N: (p-1)/p * N; a broadcast
of N: (p-1)/p * N, the average per rank of a chain broadcast).

Timings vary from run to run (the cores are shared); everything else is deterministic.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import inspect
import json
import math
import os
import queue as queue_module
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.optim import ZeroRedundancyOptimizer

from labs._runtime import Emitter, LabFailure, torch_threads


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    tp: int = 2  # tensor-parallel size
    pp: int = 2  # pipeline stages
    dp: int = 2  # data-parallel size
    # tensor-parallel transformer block
    hidden: int = 64
    heads: int = 4
    seq_len: int = 16
    batch: int = 4
    # pipeline: each stage is pp_layers x (Linear(pp_width, pp_width) + tanh)
    pp_width: int = 768
    pp_layers: int = 6
    micro_batch: int = 128  # rows per micro-batch
    micro_batches: tuple[int, ...] = (1, 2, 4, 8, 16)
    pp_repeats: int = 5  # timed runs per (schedule, m); the median idle fraction is reported
    # data parallel and ZeRO: an MLP of dp_layers Linear(dp_width, dp_width) layers
    dp_width: int = 64
    dp_layers: int = 4
    dp_batch: int = 32
    lr: float = 1e-2
    timeout_s: float = 600.0  # the whole run; children are killed after it

    def validate(self) -> None:
        if min(self.tp, self.pp, self.dp) < 1:
            raise ValueError("tp, pp and dp must be at least 1")
        if self.heads % self.tp or self.hidden % self.heads:
            raise ValueError("heads must divide by tp, and hidden by heads")
        if (4 * self.hidden) % self.tp:
            raise ValueError("the MLP width 4*hidden must divide by tp")
        if self.dp_batch % self.dp:
            raise ValueError("dp_batch must divide by dp")
        if not self.micro_batches or min(self.micro_batches) < 1:
            raise ValueError("micro_batches must be positive")
        if self.pp_repeats < 1 or self.timeout_s <= 0:
            raise ValueError("pp_repeats must be >= 1 and timeout_s > 0")


TOY = {"micro_batches": (1, 2, 4), "pp_repeats": 5, "timeout_s": 150.0}


# -- formulas ------------------------------------------------------------------------------

def ring_allreduce_bytes(numel: int, p: int, bytes_per: int = 4) -> float:
    """Bytes one rank sends in a ring all-reduce of ``numel`` numbers: 2 (p-1)/p * N * bytes."""
    return 2 * (p - 1) / p * numel * bytes_per


def bubble_fraction(p: int, m: int) -> float:
    """Idle fraction of a GPipe or 1F1B pipeline: (p-1) / (m+p-1)."""
    return (p - 1) / (m + p - 1)


def padded(numel: int, p: int) -> int:
    return -(-numel // p) * p


# -- counting communication ----------------------------------------------------------------

class Traffic:
    """Bytes this rank hands to send calls (its own p2p) or ring-equivalent shares (torch collectives)."""

    def __init__(self) -> None:
        self.sent: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()

    def take(self, label: str) -> tuple[int, int]:
        return self.sent.pop(label, 0), self.calls.pop(label, 0)


def post(traffic: Traffic, label: str, group: Any, sends: list, recvs: list) -> tuple[list, list]:
    """Post sends [(tensor, group_peer)] and receives [(buffer, group_peer)] as one batch.

    Returns (send works, receive works); the caller waits for receives before using them.
    """
    ops = [dist.P2POp(dist.isend, t, group=group, group_peer=peer) for t, peer in sends]
    ops += [dist.P2POp(dist.irecv, b, group=group, group_peer=peer) for b, peer in recvs]
    if not ops:
        return [], []
    for t, _ in sends:
        traffic.sent[label] += t.numel() * t.element_size()
        traffic.calls[label] += 1
    works = dist.batch_isend_irecv(ops)
    if len(works) != len(ops):  # a backend that coalesces: one work for the lot
        for w in works:
            w.wait()
        return [], []
    return works[: len(sends)], works[len(sends):]


def ring_all_reduce(flat: torch.Tensor, group: Any, traffic: Traffic, label: str) -> torch.Tensor:
    """Sum of ``flat`` over the group, by reduce-scatter then all-gather around a ring."""
    p = dist.get_world_size(group)
    if p == 1:
        return flat.clone()
    i = dist.get_rank(group)
    n = flat.numel()
    buf = torch.zeros(padded(n, p), dtype=flat.dtype, device=flat.device)
    buf[:n] = flat
    chunks = list(buf.chunk(p))
    nxt, prv = (i + 1) % p, (i - 1) % p
    tmp = torch.empty_like(chunks[0])
    for s in range(p - 1):  # reduce-scatter: after this, rank i holds the full sum of chunk i+1
        send_c, recv_c = (i - s) % p, (i - s - 1) % p
        sw, rw = post(traffic, label, group, [(chunks[send_c], nxt)], [(tmp, prv)])
        for w in sw + rw:
            w.wait()
        chunks[recv_c] += tmp
    for s in range(p - 1):  # all-gather the summed chunks
        send_c, recv_c = (i + 1 - s) % p, (i - s) % p
        sw, rw = post(traffic, label, group, [(chunks[send_c], nxt)], [(tmp, prv)])
        for w in sw + rw:
            w.wait()
        chunks[recv_c].copy_(tmp)
    return buf[:n].clone()


_WRAPPED = {  # torch.distributed function -> (tensor argument, rule for one rank's ring-equivalent bytes)
    "all_reduce": ("tensor", lambda n, p: 2 * (p - 1) / p * n),
    "broadcast": ("tensor", lambda n, p: (p - 1) / p * n),
    "all_gather_single": ("output_tensor", lambda n, p: (p - 1) / p * n),
    "all_gather_into_tensor": ("output_tensor", lambda n, p: (p - 1) / p * n),
    "reduce_scatter_single": ("input", lambda n, p: (p - 1) / p * n),
    "reduce_scatter_tensor": ("input", lambda n, p: (p - 1) / p * n),
}


@contextlib.contextmanager
def counted_collectives(traffic: Traffic, label: str):
    """Wrap torch.distributed's collectives so that each call adds its bytes to ``traffic``."""
    originals = {name: getattr(dist, name) for name in _WRAPPED if hasattr(dist, name)}

    def wrap(name: str, fn: Callable) -> Callable:
        arg, rule = _WRAPPED[name]
        signature = inspect.signature(fn)

        def counted(*args, **kwargs):
            bound = signature.bind(*args, **kwargs).arguments
            tensor = bound[arg]
            p = dist.get_world_size(bound.get("group"))
            traffic.sent[label] += rule(tensor.numel() * tensor.element_size(), p)
            traffic.calls[label] += 1
            return fn(*args, **kwargs)

        return counted

    for name, fn in originals.items():
        setattr(dist, name, wrap(name, fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(dist, name, fn)


# -- the process mesh ----------------------------------------------------------------------

@dataclass
class Mesh:
    rank: int
    dp_i: int
    pp_i: int
    tp_i: int
    tp_group: Any
    pp_group: Any
    dp_group: Any


def build_mesh(cfg: Config, rank: int) -> Mesh:
    tp, pp, dp = cfg.tp, cfg.pp, cfg.dp
    coord = lambda d, s, t: (d * pp + s) * tp + t  # noqa: E731
    mine: dict[str, Any] = {}
    along = {  # the rank lists of each axis's groups: that coordinate varies, the others are fixed
        "tp": [[coord(d, s, t) for t in range(tp)] for d in range(dp) for s in range(pp)],
        "pp": [[coord(d, s, t) for s in range(pp)] for d in range(dp) for t in range(tp)],
        "dp": [[coord(d, s, t) for d in range(dp)] for s in range(pp) for t in range(tp)],
    }
    for axis, rank_lists in along.items():  # every rank creates every group, in the same order
        for ranks in rank_lists:
            group = dist.new_group(ranks)
            if rank in ranks:
                mine[axis] = group
    t_i, rest = rank % tp, rank // tp
    return Mesh(rank, rest // pp, rest % pp, t_i, mine["tp"], mine["pp"], mine["dp"])


# -- tensor parallelism --------------------------------------------------------------------

class _CopyToTP(torch.autograd.Function):
    """Megatron's f: identity forward, all-reduce of the gradient backward."""

    @staticmethod
    def forward(ctx, x, group, traffic):
        ctx.group, ctx.traffic = group, traffic
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        out = ring_all_reduce(grad.contiguous().flatten(), ctx.group, ctx.traffic, "tp").view_as(grad)
        return out, None, None


class _ReduceFromTP(torch.autograd.Function):
    """Megatron's g: all-reduce forward, identity backward."""

    @staticmethod
    def forward(ctx, x, group, traffic):
        return ring_all_reduce(x.contiguous().flatten(), group, traffic, "tp").view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def block_weights(cfg: Config, device: str) -> dict[str, torch.Tensor]:
    """Full weights of one transformer block (x @ W convention), the same on every rank."""
    g = torch.Generator().manual_seed(cfg.seed)
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


def tp_shard(w: dict[str, torch.Tensor], tp: int, i: int, hidden: int) -> dict[str, torch.Tensor]:
    """Rank i's shard: Q, K, V and W1 by columns (whole heads), W_o and W2 by rows."""
    cols = lambda t: t.chunk(tp, dim=1)[i]  # noqa: E731
    rows = lambda t: t.chunk(tp, dim=0)[i]  # noqa: E731
    return {"wq": cols(w["wq"]), "wk": cols(w["wk"]), "wv": cols(w["wv"]), "wo": rows(w["wo"]),
            "w1": cols(w["w1"]), "w2": rows(w["w2"])}


def run_tp(cfg: Config, mesh: Mesh, device: str, traffic: Traffic) -> dict[str, Any]:
    full = block_weights(cfg, device)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    x0 = torch.randn(cfg.batch, cfg.seq_len, cfg.hidden, generator=gen).to(device)
    target = torch.randn(cfg.batch, cfg.seq_len, cfg.hidden, generator=gen).to(device)

    # one process: the reference
    ref_w = {k: v.clone().requires_grad_() for k, v in full.items()}
    x_ref = x0.clone().requires_grad_()
    out_ref = block_forward(x_ref, ref_w, cfg.heads)
    ((out_ref - target) ** 2).mean().backward()

    # tensor parallel over this rank's TP group
    shard = {k: v.clone().requires_grad_() for k, v in tp_shard(full, cfg.tp, mesh.tp_i, cfg.hidden).items()}
    x = x0.clone().requires_grad_()
    f = lambda t: _CopyToTP.apply(t, mesh.tp_group, traffic)  # noqa: E731
    g = lambda t: _ReduceFromTP.apply(t, mesh.tp_group, traffic)  # noqa: E731
    traffic.take("tp")
    out = block_forward(x, shard, cfg.heads // cfg.tp, f, g)
    ((out - target) ** 2).mean().backward()
    sent, calls = traffic.take("tp")

    ref_shard_grads = tp_shard({k: v.grad for k, v in ref_w.items()}, cfg.tp, mesh.tp_i, cfg.hidden)
    err_out = (out - out_ref).abs().max().item()
    err_grad = max([(x.grad - x_ref.grad).abs().max().item()]
                   + [(shard[k].grad - ref_shard_grads[k]).abs().max().item() for k in shard])
    n = cfg.batch * cfg.seq_len * cfg.hidden
    return {"max_abs_err_out": err_out, "max_abs_err_grad": err_grad, "allreduces": calls // max(1, 2 * (cfg.tp - 1)),
            "bytes_sent": sent, "bytes_analytic": 4 * ring_allreduce_bytes(n, cfg.tp, x0.element_size()),
            "params_per_rank": sum(v.numel() for v in shard.values()),
            "params_full": sum(v.numel() for v in full.values())}


# -- pipeline parallelism ------------------------------------------------------------------

def stage_weights(cfg: Config, stage: int, device: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed * 1000 + 17 + stage)
    w = cfg.pp_width
    return [(torch.randn(w, w, generator=g) / math.sqrt(w)).to(device) for _ in range(cfg.pp_layers)]


def stage_forward(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    for w in weights:
        x = torch.tanh(x @ w)
    return x


def pipeline_data(cfg: Config, m: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed + 2)
    x = torch.randn(m, cfg.micro_batch, cfg.pp_width, generator=g)
    y = torch.randn(m, cfg.micro_batch, cfg.pp_width, generator=g)
    return x.to(device), y.to(device)


def run_schedule(schedule: str, cfg: Config, mesh: Mesh, m: int, weights: list[torch.Tensor],
                 data: tuple[torch.Tensor, torch.Tensor], traffic: Traffic, device: str) -> dict[str, Any]:
    """One training step of this stage under GPipe or 1F1B; returns its timeline and counts."""
    p, s, group = cfg.pp, mesh.pp_i, mesh.pp_group
    first, last = s == 0, s == p - 1
    xs, ys = data
    shape = (cfg.micro_batch, cfg.pp_width)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    timeline: list[tuple[str, int, float, float]] = []
    stash: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    pending_sends: list = []
    peak = {"count": 0, "bytes": 0}
    loss_total = torch.zeros((), device=device)

    def exchange(sends: list, recvs: list) -> None:
        sw, rw = post(traffic, "pp", group, sends, recvs)
        pending_sends.extend(sw)
        for w in rw:
            w.wait()

    def recv_forward() -> torch.Tensor | None:
        if first:
            return None
        buf = torch.empty(shape, device=device)
        exchange([], [(buf, s - 1)])
        return buf

    def recv_backward() -> torch.Tensor | None:
        if last:
            return None
        buf = torch.empty(shape, device=device)
        exchange([], [(buf, s + 1)])
        return buf

    def send_forward(y: torch.Tensor) -> None:
        if not last:
            exchange([(y.detach(), s + 1)], [])

    def send_backward(gx: torch.Tensor | None) -> None:
        if not first:
            exchange([(gx, s - 1)], [])

    def send_forward_recv_backward(y: torch.Tensor) -> torch.Tensor | None:
        if last:
            return None
        buf = torch.empty(shape, device=device)
        exchange([(y.detach(), s + 1)], [(buf, s + 1)])
        return buf

    def send_backward_recv_forward(gx: torch.Tensor | None) -> torch.Tensor | None:
        if first:
            return None
        buf = torch.empty(shape, device=device)
        exchange([(gx, s - 1)], [(buf, s - 1)])
        return buf

    def forward(i: int, x: torch.Tensor | None) -> torch.Tensor:
        nonlocal loss_total
        t0 = time.perf_counter()
        # stage 0 computes its input's gradient too (and drops it): every stage then does equal work
        inp = (xs[i] if first else x).detach().requires_grad_(True)
        out = stage_forward(inp, weights)
        if last:  # the loss of the whole batch is the mean over micro-batches
            out = ((out - ys[i]) ** 2).mean() / m
            loss_total = loss_total + out.detach()
        sync()
        timeline.append(("F", i, t0, time.perf_counter()))
        stash[i] = (inp, out)
        live = sum(t.numel() * t.element_size() for pair in stash.values() for t in pair)
        peak["count"] = max(peak["count"], len(stash))
        peak["bytes"] = max(peak["bytes"], live)
        return out

    def backward(i: int, grad: torch.Tensor | None) -> torch.Tensor | None:
        t0 = time.perf_counter()
        inp, out = stash.pop(i)
        out.backward(grad)
        sync()
        timeline.append(("B", i, t0, time.perf_counter()))
        return None if first else inp.grad

    for w in weights:
        w.grad = None
    if schedule == "gpipe":
        for i in range(m):
            send_forward(forward(i, recv_forward()))
        for i in reversed(range(m)):
            send_backward(backward(i, recv_backward()))
    elif schedule == "1f1b":
        warmup = min(p - s - 1, m)
        steady = m - warmup
        for i in range(warmup):
            send_forward(forward(i, recv_forward()))
        x = recv_forward() if steady else None
        for j in range(steady):
            grad = send_forward_recv_backward(forward(warmup + j, x))
            gx = backward(j, grad)
            if j == steady - 1:
                send_backward(gx)
            else:
                x = send_backward_recv_forward(gx)
        for j in range(steady, m):
            send_backward(backward(j, recv_backward()))
    else:
        raise LabFailure(f"unknown schedule {schedule}")
    for w in pending_sends:
        w.wait()
    return {"timeline": timeline, "peak_live": peak["count"], "peak_bytes": peak["bytes"],
            "loss": loss_total.item(), "grads": [w.grad.clone() for w in weights]}


def run_pp(cfg: Config, mesh: Mesh, device: str, traffic: Traffic, say: Callable) -> dict[str, Any]:
    """Pipeline 0 (dp_i = tp_i = 0) runs and times both schedules while the other ranks wait, so
    that timed stages do not share cores with other pipelines (the others would be replicas)."""
    p, s = cfg.pp, mesh.pp_i
    out: dict[str, Any] = {"runs": [], "max_abs_err_grad": 0.0, "max_abs_err_loss": 0.0}
    if mesh.dp_i or mesh.tp_i:
        dist.barrier()
        return out
    weights = [w.requires_grad_() for w in stage_weights(cfg, s, device)]
    all_weights = [stage_weights(cfg, k, device) for k in range(p)]
    for m in cfg.micro_batches:
        data = pipeline_data(cfg, m, device)
        # the reference: the whole model on one process, the same loss
        ref = [[w.clone().requires_grad_() for w in ws] for ws in all_weights]
        loss_ref = 0.0
        for i in range(m):
            h = data[0][i]
            for ws in ref:
                h = stage_forward(h, ws)
            loss = ((h - data[1][i]) ** 2).mean() / m
            loss.backward()
            loss_ref += loss.item()
        for schedule in ("gpipe", "1f1b"):
            for r in range(cfg.pp_repeats):
                dist.barrier(group=mesh.pp_group)
                traffic.take("pp")
                res = run_schedule(schedule, cfg, mesh, m, weights, data, traffic, device)
                sent, _ = traffic.take("pp")
                err = max((a - b.grad).abs().max().item() for a, b in zip(res["grads"], ref[s]))
                out["max_abs_err_grad"] = max(out["max_abs_err_grad"], err)
                if s == p - 1:
                    out["max_abs_err_loss"] = max(out["max_abs_err_loss"], abs(res["loss"] - loss_ref))
                out["runs"].append({"schedule": schedule, "m": m, "repeat": r, "timeline": res["timeline"],
                                    "peak_live": res["peak_live"], "peak_bytes": res["peak_bytes"], "bytes_sent": sent})
            if s == 0:
                say(f"pipeline: {schedule} m={m} done")
    dist.barrier()
    return out


def summarise_pipeline(cfg: Config, per_stage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Idle fraction per (schedule, m) from the timelines of pipeline 0's stages."""
    p = cfg.pp
    runs = collections.defaultdict(list)
    for stage, res in enumerate(per_stage):
        for run in res["runs"]:
            runs[(run["schedule"], run["m"], run["repeat"])].append((stage, run))
    rows = []
    for schedule in ("gpipe", "1f1b"):
        for m in cfg.micro_batches:
            idles, peaks, peak_bytes, sent = [], None, None, None
            for r in range(cfg.pp_repeats):
                stages = sorted(runs[(schedule, m, r)], key=lambda t: t[0])
                start = min(t[2] for _, run in stages for t in run["timeline"])
                end = max(t[3] for _, run in stages for t in run["timeline"])
                busy = [sum(t[3] - t[2] for t in run["timeline"]) for _, run in stages]
                idles.append(sum(1 - b / (end - start) for b in busy) / p)
                peaks = [run["peak_live"] for _, run in stages]
                peak_bytes = [run["peak_bytes"] for _, run in stages]
                sent = [run["bytes_sent"] for _, run in stages]
            act_bytes = cfg.micro_batch * cfg.pp_width * 4
            analytic = [act_bytes * m * ((k < p - 1) + (k > 0)) for k in range(p)]
            rows.append({"schedule": schedule, "m": m, "idle": statistics.median(idles), "idle_min": min(idles),
                         "idle_spread": max(idles) - min(idles), "bubble": bubble_fraction(p, m),
                         "peak_live": peaks, "peak_bytes": peak_bytes, "bytes_sent": sent, "bytes_analytic": analytic})
    return rows


# -- data parallelism and ZeRO -------------------------------------------------------------

def mlp(cfg: Config, device: str) -> torch.nn.Sequential:
    torch.manual_seed(cfg.seed + 3)
    layers: list[torch.nn.Module] = []
    for _ in range(cfg.dp_layers):
        layers += [torch.nn.Linear(cfg.dp_width, cfg.dp_width, bias=False), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers).to(device)


def dp_batch(cfg: Config, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed + 4)
    return (torch.randn(cfg.dp_batch, cfg.dp_width, generator=g).to(device),
            torch.randn(cfg.dp_batch, cfg.dp_width, generator=g).to(device))


def reference_step(cfg: Config, device: str) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """One process, the full batch: gradients, and parameters after one Adam step."""
    model = mlp(cfg, device)
    x, y = dp_batch(cfg, device)
    F.mse_loss(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    opt.step()
    state = sum(t.numel() * t.element_size() for st in opt.state.values() for k, t in st.items() if k != "step")
    return grads, [p.detach().clone() for p in model.parameters()], state


def local_batch(cfg: Config, mesh: Mesh, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = dp_batch(cfg, device)
    return x.chunk(cfg.dp)[mesh.dp_i], y.chunk(cfg.dp)[mesh.dp_i]


def max_err(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((u - v).abs().max().item() for u, v in zip(a, b))


def average_gradients(params: list, cfg: Config, mesh: Mesh, traffic: Traffic, label: str) -> int:
    """Replace each gradient by its mean over the DP group (one ring all-reduce of all of them);
    the mean of the ranks' mean losses is the full batch's mean loss. Returns the numbers reduced."""
    flat = torch.cat([p.grad.flatten() for p in params])
    summed = ring_all_reduce(flat, mesh.dp_group, traffic, label)
    offset = 0
    for p in params:
        p.grad.copy_(summed[offset: offset + p.numel()].view_as(p) / cfg.dp)
        offset += p.numel()
    return flat.numel()


def run_dp(cfg: Config, mesh: Mesh, device: str, traffic: Traffic, ref: tuple) -> dict[str, Any]:
    ref_grads, ref_params, _ = ref
    model = mlp(cfg, device)
    x, y = local_batch(cfg, mesh, device)
    F.mse_loss(model(x), y).backward()
    params = list(model.parameters())
    traffic.take("dp")
    psi = average_gradients(params, cfg, mesh, traffic, "dp")
    sent, _ = traffic.take("dp")
    grads = [p.grad.clone() for p in params]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    opt.step()
    return {"max_abs_err_grad": max_err(grads, ref_grads), "max_abs_err_params": max_err(list(model.parameters()), ref_params),
            "bytes_sent": sent, "bytes_analytic": ring_allreduce_bytes(padded(psi, cfg.dp), cfg.dp), "params": psi}


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of this rank's Adam moments (m and v; the scalar step counters left out)."""
    total = 0
    for st in opt.state.values():
        for k, t in st.items():
            if k != "step" and torch.is_tensor(t):
                local = t.to_local() if hasattr(t, "to_local") else t
                total += local.numel() * local.element_size()
    return total


def run_zero1(cfg: Config, mesh: Mesh, device: str, traffic: Traffic, ref: tuple) -> dict[str, Any]:
    _, ref_params, full_state = ref
    model = mlp(cfg, device)
    x, y = local_batch(cfg, mesh, device)
    F.mse_loss(model(x), y).backward()
    params = list(model.parameters())
    psi = sum(p.numel() for p in params)
    opt = ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.Adam, lr=cfg.lr, process_group=mesh.dp_group)
    traffic.take("zero1")
    average_gradients(params, cfg, mesh, traffic, "zero1")  # as DDP would; ZeRO-1 keeps full gradients
    with counted_collectives(traffic, "zero1"):
        opt.step()  # updates this rank's shard, then broadcasts it
    sent, _ = traffic.take("zero1")
    p_ = cfg.dp
    return {"max_abs_err_params": max_err(params, ref_params), "opt_bytes": optimizer_state_bytes(opt.optim),
            "opt_bytes_formula": 8 * psi / p_, "opt_bytes_unsharded": full_state,
            "bytes_sent": sent, "bytes_analytic": ring_allreduce_bytes(padded(psi, p_), p_) + 4 * (p_ - 1) / p_ * psi}


def run_fsdp(cfg: Config, mesh: Mesh, device: str, traffic: Traffic, ref: tuple, dp_mesh: Any) -> dict[str, Any]:
    _, ref_params, _ = ref
    model = mlp(cfg, device)
    psi_layers = [m.weight.numel() for m in model if isinstance(m, torch.nn.Linear)]
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=dp_mesh)
    fully_shard(model, mesh=dp_mesh)
    param_bytes = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    x, y = local_batch(cfg, mesh, device)
    traffic.take("fsdp")
    with counted_collectives(traffic, "fsdp"):
        F.mse_loss(model(x), y).backward()
    sent, calls = traffic.take("fsdp")
    opt.step()
    params = [p.full_tensor() for p in model.parameters()]
    p_ = cfg.dp
    psi = sum(psi_layers)
    psi_pad = sum(padded(n // cfg.dp_width, p_) * cfg.dp_width for n in psi_layers)  # dim-0 shards, padded
    return {"max_abs_err_params": max_err(params, ref_params), "opt_bytes": optimizer_state_bytes(opt),
            "opt_bytes_formula": 8 * psi / p_, "param_bytes": param_bytes, "param_bytes_formula": 4 * psi / p_,
            "bytes_sent": sent, "collectives": calls, "bytes_analytic": 3 * 4 * (p_ - 1) / p_ * psi_pad}


# -- the worker process --------------------------------------------------------------------

def _worker(rank: int, cfg_dict: dict, init_file: str, result_dir: str, messages: Any) -> None:
    cfg = Config(**cfg_dict)
    world = cfg.tp * cfg.pp * cfg.dp
    torch.set_num_threads(torch_threads(1))  # one core per process: timings mean what they say
    torch.manual_seed(cfg.seed)
    device = cfg.device
    if device.startswith("cuda"):
        device = f"cuda:{rank % torch.cuda.device_count()}"
        torch.cuda.set_device(device)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    say = lambda text: messages.put(("log", rank, text))  # noqa: E731
    try:
        dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world,
                                timeout=timedelta(seconds=cfg.timeout_s))
        mesh = build_mesh(cfg, rank)
        for g in (mesh.tp_group, mesh.pp_group, mesh.dp_group):
            dist.barrier(group=g)  # first use of each group by all its ranks
        cube = torch.arange(world).view(cfg.dp, cfg.pp, cfg.tp)
        dev_mesh = DeviceMesh(device.split(":")[0], cube, mesh_dim_names=("dp", "pp", "tp"))
        traffic = Traffic()
        result: dict[str, Any] = {"rank": rank, "coords": [mesh.dp_i, mesh.pp_i, mesh.tp_i]}
        result["tp"] = run_tp(cfg, mesh, device, traffic)
        messages.put(("progress", rank, "tp"))
        result["pp"] = run_pp(cfg, mesh, device, traffic, say)
        messages.put(("progress", rank, "pp"))
        ref = reference_step(cfg, device)
        result["dp"] = run_dp(cfg, mesh, device, traffic, ref)
        result["zero1"] = run_zero1(cfg, mesh, device, traffic, ref)
        result["fsdp"] = run_fsdp(cfg, mesh, device, traffic, ref, dev_mesh["dp"])
        messages.put(("progress", rank, "zero"))
        dist.barrier()
        Path(result_dir, f"rank{rank}.json").write_text(json.dumps(result))
    except Exception:
        messages.put(("error", rank, traceback.format_exc()))
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(cfg: Config, emit: Emitter, tmp: Path) -> list[dict[str, Any]]:
    """Start the processes, relay their messages, enforce the timeout, collect their results."""
    world = cfg.tp * cfg.pp * cfg.dp
    method = "spawn" if cfg.device.startswith("cuda") else "fork"
    messages = mp.get_context(method).Queue()
    init_file = tmp / "rendezvous"
    ctx = mp.start_processes(_worker, args=(dataclasses.asdict(cfg), str(init_file), str(tmp), messages),
                             nprocs=world, join=False, start_method=method)
    deadline = time.monotonic() + cfg.timeout_s
    phases = {"tp": 1, "pp": 2, "zero": 3}
    done_phase: collections.Counter[str] = collections.Counter()
    errors: list[str] = []

    def drain() -> None:
        while True:
            try:
                kind, rank, text = messages.get_nowait()
            except queue_module.Empty:
                return
            if kind == "log" and rank == 0:
                emit.log(text)
            elif kind == "progress":
                done_phase[text] += 1
                if done_phase[text] == world:
                    emit.progress(phases[text], len(phases))
            elif kind == "error":
                errors.append(f"rank {rank}: {text}")

    try:
        while True:
            try:
                if ctx.join(timeout=0.2):
                    break
            except Exception as exc:  # a child raised or died: the others are terminated by join
                drain()
                raise LabFailure(f"a worker process failed: {exc}\n" + "\n".join(errors[:1])) from None
            drain()
            if time.monotonic() > deadline:
                raise LabFailure(f"the processes did not finish within timeout_s={cfg.timeout_s}")
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
        drain()
    results = []
    for r in range(world):
        path = tmp / f"rank{r}.json"
        if not path.exists():
            raise LabFailure(f"rank {r} finished without a result")
        results.append(json.loads(path.read_text()))
    return results


# -- the lab -------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    world = cfg.tp * cfg.pp * cfg.dp
    emit.start(cfg, total_steps=3)
    cores = os.cpu_count() or 1
    emit.log(f"{world} processes (tp={cfg.tp} x pp={cfg.pp} x dp={cfg.dp}) on {cores} cores, "
             f"{'nccl' if cfg.device.startswith('cuda') else 'gloo'} backend")
    if cfg.device.startswith("cuda") and torch.cuda.device_count() < world:
        raise LabFailure(f"NCCL needs one GPU per process: {world} processes, {torch.cuda.device_count()} GPUs; "
                         "lower tp/pp/dp or use --device cpu")
    if cfg.pp > cores:
        emit.log(f"warning: pp={cfg.pp} stages share {cores} cores; the measured bubble will be too large")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmcore-parallel-") as tmp:
        results = launch(cfg, emit, Path(tmp))
    wall = time.perf_counter() - t0

    # tensor parallelism
    tp_err_out = max(r["tp"]["max_abs_err_out"] for r in results)
    tp_err_grad = max(r["tp"]["max_abs_err_grad"] for r in results)
    tp0 = results[0]["tp"]
    emit.table("tensor_parallel", ["rank", "params_per_rank", "max_err_out", "max_err_grad", "all_reduces",
                                   "bytes_sent", "bytes_analytic"],
               [[r["rank"], r["tp"]["params_per_rank"], r["tp"]["max_abs_err_out"], r["tp"]["max_abs_err_grad"],
                 r["tp"]["allreduces"], r["tp"]["bytes_sent"], r["tp"]["bytes_analytic"]] for r in results])

    # pipeline (pipeline 0: ranks with dp_i = tp_i = 0, in stage order)
    stage_results = sorted((r for r in results if r["coords"][0] == 0 and r["coords"][2] == 0), key=lambda r: r["coords"][1])
    rows = summarise_pipeline(cfg, [r["pp"] for r in stage_results])
    emit.table("pipeline_bubble", ["schedule", "m", "idle_measured", "bubble_formula", "idle_min", "idle_spread",
                                   "peak_live_per_stage", "bytes_sent_per_stage", "bytes_analytic_per_stage"],
               [[r["schedule"], r["m"], r["idle"], r["bubble"], r["idle_min"], r["idle_spread"], r["peak_live"], r["bytes_sent"],
                 r["bytes_analytic"]] for r in rows])
    for step, r in enumerate(rows):
        emit.metric(step, **{f"pipeline/{r['schedule']}_idle": r["idle"], "pipeline/bubble_formula": r["bubble"],
                             f"pipeline/{r['schedule']}_peak_live": max(r["peak_live"])})
    pp_err = max(r["pp"]["max_abs_err_grad"] for r in results)
    bubble_dev = max(abs(r["idle"] - r["bubble"]) for r in rows)
    pp_bytes_ok = all(r["bytes_sent"] == r["bytes_analytic"] for r in rows)
    timeline_path = out_dir / "pipeline_timelines.json"
    timeline_path.write_text(json.dumps([r["pp"]["runs"] for r in stage_results]))

    # data parallel and ZeRO
    dp_err_grad = max(r["dp"]["max_abs_err_grad"] for r in results)
    dp_err_params = max(r["dp"]["max_abs_err_params"] for r in results)
    emit.table("data_parallel_and_zero", ["rank", "what", "max_err_params", "opt_state_bytes", "opt_bytes_formula",
                                          "param_bytes", "bytes_sent", "bytes_analytic"],
               [[r["rank"], "DP (ring all-reduce)", r["dp"]["max_abs_err_params"], None, None, None,
                 r["dp"]["bytes_sent"], r["dp"]["bytes_analytic"]] for r in results]
               + [[r["rank"], "ZeRO-1 (ZeroRedundancyOptimizer)", r["zero1"]["max_abs_err_params"], r["zero1"]["opt_bytes"],
                   r["zero1"]["opt_bytes_formula"], None, r["zero1"]["bytes_sent"], r["zero1"]["bytes_analytic"]]
                  for r in results]
               + [[r["rank"], "ZeRO-3 (FSDP2 fully_shard)", r["fsdp"]["max_abs_err_params"], r["fsdp"]["opt_bytes"],
                   r["fsdp"]["opt_bytes_formula"], r["fsdp"]["param_bytes"], r["fsdp"]["bytes_sent"],
                   r["fsdp"]["bytes_analytic"]] for r in results])

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-6 * max(1.0, abs(b))

    bytes_ok = {
        "tp": all(close(r["tp"]["bytes_sent"], r["tp"]["bytes_analytic"]) for r in results),
        "pp": pp_bytes_ok,
        "dp": all(close(r["dp"]["bytes_sent"], r["dp"]["bytes_analytic"]) for r in results),
        "zero1": all(close(r["zero1"]["bytes_sent"], r["zero1"]["bytes_analytic"]) for r in results),
        "fsdp": all(close(r["fsdp"]["bytes_sent"], r["fsdp"]["bytes_analytic"]) for r in results),
    }
    zero1_opt = max(r["zero1"]["opt_bytes"] for r in results)
    fsdp_opt = max(r["fsdp"]["opt_bytes"] for r in results)
    zero_opt_ok = all(r["zero1"]["opt_bytes"] == r["zero1"]["opt_bytes_formula"]
                      and r["fsdp"]["opt_bytes"] == r["fsdp"]["opt_bytes_formula"] for r in results)
    for name, ok in bytes_ok.items():
        if not ok:
            emit.log(f"note: {name}: measured bytes differ from the analytic count (see the tables)")
    by = {(r["schedule"], r["m"]): r for r in rows}
    m_max = max(cfg.micro_batches)
    emit.summary({
        "world_size": world,
        "tp_max_abs_err": max(tp_err_out, tp_err_grad),
        "tp_bytes_per_rank": tp0["bytes_sent"],
        "tp_bytes_analytic": tp0["bytes_analytic"],
        "pp_max_abs_err_grad": pp_err,
        "pp_bubble_max_deviation": bubble_dev,
        "pp_gpipe_idle_at_max_m": by[("gpipe", m_max)]["idle"],
        "pp_1f1b_idle_at_max_m": by[("1f1b", m_max)]["idle"],
        "pp_bubble_formula_at_max_m": bubble_fraction(cfg.pp, m_max),
        "pp_gpipe_peak_live": max(by[("gpipe", m_max)]["peak_live"]),
        "pp_1f1b_peak_live": max(by[("1f1b", m_max)]["peak_live"]),
        "dp_max_abs_err": max(dp_err_grad, dp_err_params),
        "dp_bytes_per_rank": results[0]["dp"]["bytes_sent"],
        "dp_bytes_analytic": results[0]["dp"]["bytes_analytic"],
        "zero1_max_abs_err": max(r["zero1"]["max_abs_err_params"] for r in results),
        "zero1_opt_bytes_per_rank": zero1_opt,
        "fsdp_max_abs_err": max(r["fsdp"]["max_abs_err_params"] for r in results),
        "fsdp_opt_bytes_per_rank": fsdp_opt,
        "fsdp_param_bytes_per_rank": max(r["fsdp"]["param_bytes"] for r in results),
        "adam_bytes_unsharded": results[0]["zero1"]["opt_bytes_unsharded"],
        "zero_opt_bytes_match_formula": zero_opt_ok,
        "bytes_match_analytic": all(bytes_ok.values()),
        "wall_s": wall,
    }, artifacts=[timeline_path.name])
