"""Pipeline parallelism: GPipe and 1F1B on real processes, timed with a clock that load cannot bend.

p stages, m micro-batches; GPipe runs all m forwards then all m backwards; 1F1B runs p-s-1
warm-up forwards on stage s, then alternates one forward and one backward. Both take
(m + p - 1)(t_f + t_b) while each stage computes for m (t_f + t_b): bubble = (p-1)/(m+p-1).

How the idle fraction is measured (a Lamport clock of compute time). Every stage keeps a clock
that advances only by the CPU time its forward and backward passes consume
(``time.process_time``, all of the process's threads; wall time of the synchronised op on
CUDA). Every message between stages carries the sender's clock, read right after the pass that
produced the message, and a receiver sets its clock to max(own clock, the stamp) before it may
use the message. A stage's clock therefore jumps exactly where it had to wait for a neighbour,
along the dependencies that really ran; the run's makespan is the largest final clock, and a
stage's idle fraction is 1 - (its compute time) / makespan, averaged over stages. The median of
``pp_repeats`` runs is reported. Sends count as free, as in the formula: a 0.4 MB send on loopback
is well under a millisecond against about 20 ms of compute per pass.

Why this is robust: on shared cores a process is descheduled for milliseconds at a time. On a
wall clock that lands on whichever stage it hits (a descheduled stage leaves its neighbour
waiting, and two stages that overlap on a busy core both look slower), so wall-clock idle
fractions swing by +-0.1 under load. CPU time does not advance while a process is descheduled,
so the clock measures the schedule (the order of passes and the messages between them) and the
passes' real cost. The wall-clock idle fraction is reported beside it, for comparison.

GPipe holds all m micro-batches' activations at its peak; 1F1B holds at most p - s on stage s.
"""

from __future__ import annotations

import collections
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from labs._runtime import LabFailure
from labs.parallel.config import Config, bubble_fraction
from labs.parallel.mesh import Mesh, Traffic, post


@dataclass
class Stage:
    """One stage of a pipeline as a schedule sees it."""

    index: int  # s, 0-based
    count: int  # p
    group: Any  # the pipeline's process group; stage k is its group rank k
    forward: Callable[[torch.Tensor], torch.Tensor]  # this stage's computation on one micro-batch
    params: list[torch.Tensor]  # whose gradients the step accumulates
    inputs: torch.Tensor  # [m, ...] micro-batches, read by the first stage
    targets: torch.Tensor  # [m, ...] regression targets, read by the last stage
    shape: tuple[int, ...]  # the activation passed between stages
    label: str  # traffic label of the activations (the clock stamps count under label + "_clock")


def run_schedule(schedule: str, stage: Stage, m: int, traffic: Traffic, device: str) -> dict[str, Any]:
    """One training step of this stage under GPipe or 1F1B: loss (last stage), gradients, timelines."""
    s, p = stage.index, stage.count
    first, last = s == 0, s == p - 1
    cuda = device.startswith("cuda")
    clock = 0.0  # compute seconds, pushed forward by the stamps of received messages
    wall: list[tuple[str, int, float, float]] = []
    clocked: list[tuple[str, int, float, float]] = []
    stash: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    pending_sends: list = []
    peak = {"count": 0, "bytes": 0}
    loss_total = torch.zeros((), device=device)

    def exchange(sends: list, recvs: list) -> list[tuple[torch.Tensor, float]]:
        """Post data and clock stamps together; wait for the receives; returns [(data, stamp)]."""
        stamp = torch.tensor([clock], dtype=torch.float64, device=device)
        stamps_in = [torch.zeros(1, dtype=torch.float64, device=device) for _ in recvs]
        sw, rw = post(traffic, stage.label, stage.group, sends, recvs)
        cw, crw = post(traffic, stage.label + "_clock", stage.group, [(stamp, peer) for _, peer in sends],
                       [(b, peer) for b, (_, peer) in zip(stamps_in, recvs)], tag=1)
        pending_sends.extend(sw + cw)
        for w in rw + crw:
            w.wait()
        return [(buf, st.item()) for (buf, _), st in zip(recvs, stamps_in)]

    def buffer() -> torch.Tensor:
        return torch.empty(stage.shape, device=device)

    none = (None, 0.0)

    def recv_forward():
        return none if first else exchange([], [(buffer(), s - 1)])[0]

    def recv_backward():
        return none if last else exchange([], [(buffer(), s + 1)])[0]

    def send_forward(y: torch.Tensor) -> None:
        if not last:
            exchange([(y.detach(), s + 1)], [])

    def send_backward(gx: torch.Tensor | None) -> None:
        if not first:
            exchange([(gx, s - 1)], [])

    def send_forward_recv_backward(y: torch.Tensor):
        return none if last else exchange([(y.detach(), s + 1)], [(buffer(), s + 1)])[0]

    def send_backward_recv_forward(gx: torch.Tensor | None):
        return none if first else exchange([(gx, s - 1)], [(buffer(), s - 1)])[0]

    def timed(kind: str, i: int, stamp: float, fn: Callable[[], Any]) -> Any:
        nonlocal clock
        clock = max(clock, stamp)  # wait for the message this pass consumes
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        if cuda:
            torch.cuda.synchronize()
        c1, w1 = time.process_time(), time.perf_counter()
        cost = (w1 - w0) if cuda else (c1 - c0)
        wall.append((kind, i, w0, w1))
        clocked.append((kind, i, clock, clock + cost))
        clock += cost
        return result

    def forward(i: int, received: tuple) -> torch.Tensor:
        x, stamp = received

        def compute() -> tuple[torch.Tensor, torch.Tensor]:
            nonlocal loss_total
            # stage 0 computes its input's gradient too (and drops it): every stage does equal work
            inp = (stage.inputs[i] if first else x).detach().requires_grad_(True)
            out = stage.forward(inp)
            if last:  # the loss of the whole batch is the mean over micro-batches
                out = ((out - stage.targets[i]) ** 2).mean() / m
                loss_total = loss_total + out.detach()
            return inp, out

        inp, out = timed("F", i, stamp, compute)
        stash[i] = (inp, out)
        live = sum(t.numel() * t.element_size() for pair in stash.values() for t in pair)
        peak["count"] = max(peak["count"], len(stash))
        peak["bytes"] = max(peak["bytes"], live)
        return out

    def backward(i: int, received: tuple) -> torch.Tensor | None:
        grad, stamp = received
        inp, out = stash.pop(i)
        timed("B", i, stamp, lambda: out.backward(grad))
        return None if first else inp.grad

    for w in stage.params:
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
        received = recv_forward() if steady else none
        for j in range(steady):
            grad = send_forward_recv_backward(forward(warmup + j, received))
            gx = backward(j, grad)
            if j == steady - 1:
                send_backward(gx)
            else:
                received = send_backward_recv_forward(gx)
        for j in range(steady, m):
            send_backward(backward(j, recv_backward()))
    else:
        raise LabFailure(f"unknown schedule {schedule}")
    for w in pending_sends:
        w.wait()
    return {"wall": wall, "clock": clocked, "peak_live": peak["count"], "peak_bytes": peak["bytes"],
            "loss": loss_total.item(), "grads": [w.grad.clone() for w in stage.params]}


# -- the pipeline demonstration: stages of tanh layers -------------------------------------

def stage_weights(cfg: Config, stage: int, device: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed * 1000 + 17 + stage)
    w = cfg.pp_width
    return [(torch.randn(w, w, generator=g) / math.sqrt(w)).to(device) for _ in range(cfg.pp_layers)]


def stage_forward(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    for w in weights:
        x = torch.tanh(x @ w)
    return x


def pipeline_data(cfg: Config, m: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed * 1000 + 2)
    x = torch.randn(m, cfg.micro_batch, cfg.pp_width, generator=g)
    y = torch.randn(m, cfg.micro_batch, cfg.pp_width, generator=g)
    return x.to(device), y.to(device)


def run_pp(cfg: Config, mesh: Mesh, device: str, traffic: Traffic, say: Callable) -> dict[str, Any]:
    """Pipeline 0 (dp_i = tp_i = 0) runs both schedules while the other ranks wait, so that its
    stages do not share cores with the other pipelines (which would be replicas anyway)."""
    p, s = cfg.pp, mesh.pp_i
    out: dict[str, Any] = {"runs": [], "max_abs_err_grad": 0.0, "max_abs_err_loss": 0.0}
    if mesh.dp_i or mesh.tp_i:
        dist.barrier()
        return out
    weights = [w.requires_grad_() for w in stage_weights(cfg, s, device)]
    all_weights = [stage_weights(cfg, k, device) for k in range(p)]
    for m in cfg.micro_batches:
        xs, ys = pipeline_data(cfg, m, device)
        # the reference: the whole model on one process, the same loss
        ref = [[w.clone().requires_grad_() for w in ws] for ws in all_weights]
        loss_ref = 0.0
        for i in range(m):
            loss = ((stage_forward(xs[i], [w for ws in ref for w in ws]) - ys[i]) ** 2).mean() / m
            loss.backward()
            loss_ref += loss.item()
        stage = Stage(s, p, mesh.pp_group, lambda x: stage_forward(x, weights), weights, xs, ys,
                      (cfg.micro_batch, cfg.pp_width), "pp")
        for schedule in ("gpipe", "1f1b"):
            for r in range(cfg.pp_repeats):
                dist.barrier(group=mesh.pp_group)
                traffic.take("pp")
                res = run_schedule(schedule, stage, m, traffic, device)
                sent, _ = traffic.take("pp")
                traffic.take("pp_clock")
                err = max((a - b.grad).abs().max().item() for a, b in zip(res["grads"], ref[s]))
                out["max_abs_err_grad"] = max(out["max_abs_err_grad"], err)
                if s == p - 1:
                    out["max_abs_err_loss"] = max(out["max_abs_err_loss"], abs(res["loss"] - loss_ref))
                out["runs"].append({"schedule": schedule, "m": m, "repeat": r, "wall": res["wall"],
                                    "clock": res["clock"], "peak_live": res["peak_live"],
                                    "peak_bytes": res["peak_bytes"], "bytes_sent": sent})
            if s == 0:
                say(f"pipeline: {schedule} m={m} done")
    dist.barrier()
    return out


def idle_fraction(stage_timelines: list[list], start: float | None = None) -> float:
    """Mean over stages of 1 - busy / makespan, from (kind, i, begin, end) intervals per stage."""
    begin = min(t[2] for tl in stage_timelines for t in tl) if start is None else start
    end = max(t[3] for tl in stage_timelines for t in tl)
    busy = [sum(t[3] - t[2] for t in tl) for tl in stage_timelines]
    return sum(1 - b / (end - begin) for b in busy) / len(stage_timelines)


def summarise_pipeline(cfg: Config, per_stage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Idle fractions per (schedule, m) from pipeline 0's stages: clock (median of repeats) and wall."""
    p = cfg.pp
    runs = collections.defaultdict(list)
    for stage, res in enumerate(per_stage):
        for run in res["runs"]:
            runs[(run["schedule"], run["m"], run["repeat"])].append((stage, run))
    rows = []
    for schedule in ("gpipe", "1f1b"):
        for m in cfg.micro_batches:
            idles, idles_wall = [], []
            for r in range(cfg.pp_repeats):
                stages = [run for _, run in sorted(runs[(schedule, m, r)], key=lambda t: t[0])]
                idles.append(idle_fraction([run["clock"] for run in stages], start=0.0))
                idles_wall.append(idle_fraction([run["wall"] for run in stages]))
            act_bytes = cfg.micro_batch * cfg.pp_width * 4
            rows.append({"schedule": schedule, "m": m, "idle": statistics.median(idles), "idle_min": min(idles),
                         "idle_spread": max(idles) - min(idles), "idle_wall": statistics.median(idles_wall),
                         "bubble": bubble_fraction(p, m),
                         "peak_live": [run["peak_live"] for run in stages],
                         "peak_bytes": [run["peak_bytes"] for run in stages],
                         "bytes_sent": [run["bytes_sent"] for run in stages],
                         "bytes_analytic": [act_bytes * m * ((k < p - 1) + (k > 0)) for k in range(p)]})
    return rows
