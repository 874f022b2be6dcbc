"""One composed 3-D training step: a pipeline of TP-sharded transformer blocks, replicated for DP.

Stage s of the pipeline is transformer block s, split over the stage's TP group (Megatron's f
and g inside every pass); the pipeline runs 1F1B over its replica's micro-batches, sending
activations and input gradients between stages with the same tp_i (after g, every TP rank
holds the whole activation, and after f's backward the whole input gradient); then each
rank's gradient shard is averaged over its DP group, the ranks that hold the same shard in
the other replicas. Loss and every gradient shard must equal one process's full-batch step.

Bytes per rank for one step (n = micro-batch rows * seq_len * hidden numbers, m micro-batches
per replica, Psi_s = this rank's shard of its stage's parameters):
  TP: m * 4 ring all-reduces of n over tp;  PP: m * n * 4 bytes to each pipeline neighbour;
  DP: one ring all-reduce of Psi_s over dp.
"""

from __future__ import annotations

from typing import Any

import torch

from labs.parallel.config import Config, padded, ring_allreduce_bytes
from labs.parallel.mesh import Mesh, Traffic, ring_all_reduce
from labs.parallel.pp import Stage, run_schedule
from labs.parallel.tp import block_forward, block_weights, tp_ops, tp_shard

STAGE_SALT = 500  # block s of the 3-D model is block_weights(..., STAGE_SALT + s)


def three_d_data(cfg: Config, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed * 1000 + 5)
    shape = (cfg.batch, cfg.seq_len, cfg.hidden)
    return torch.randn(*shape, generator=g).to(device), torch.randn(*shape, generator=g).to(device)


def reference(cfg: Config, device: str) -> tuple[float, list[dict[str, torch.Tensor]]]:
    """One process: the pp blocks in a row on the whole batch; its loss and full gradients."""
    x, y = three_d_data(cfg, device)
    blocks = [{k: v.requires_grad_() for k, v in block_weights(cfg, device, STAGE_SALT + s).items()}
              for s in range(cfg.pp)]
    h = x
    for w in blocks:
        h = block_forward(h, w, cfg.heads)
    loss = ((h - y) ** 2).mean()
    loss.backward()
    return loss.item(), [{k: v.grad for k, v in w.items()} for w in blocks]


def run_three_d(cfg: Config, mesh: Mesh, device: str, traffic: Traffic) -> dict[str, Any]:
    m = cfg.three_d_micro_batches
    s = mesh.pp_i
    shard = {k: v.requires_grad_() for k, v in
             tp_shard(block_weights(cfg, device, STAGE_SALT + s), cfg.tp, mesh.tp_i).items()}
    f, g = tp_ops(mesh, traffic, "3d_tp")
    x, y = three_d_data(cfg, device)
    rows = cfg.batch // cfg.dp // m
    mine = lambda t: t.chunk(cfg.dp)[mesh.dp_i].reshape(m, rows, cfg.seq_len, cfg.hidden)  # noqa: E731
    stage = Stage(s, cfg.pp, mesh.pp_group, lambda h: block_forward(h, shard, cfg.heads // cfg.tp, f, g),
                  list(shard.values()), mine(x), mine(y), (rows, cfg.seq_len, cfg.hidden), "3d_pp")
    for label in ("3d_tp", "3d_pp", "3d_dp"):
        traffic.take(label)

    res = run_schedule("1f1b", stage, m, traffic, device)  # gradients of this replica's mean loss
    grads = torch.cat([gr.flatten() for gr in res["grads"]])
    grads = ring_all_reduce(grads, mesh.dp_group, traffic, "3d_dp") / cfg.dp
    loss = ring_all_reduce(torch.tensor([res["loss"]], device=device), mesh.dp_group, traffic, "3d_loss") / cfg.dp

    loss_ref, grads_ref = reference(cfg, device)
    ref = tp_shard(grads_ref[s], cfg.tp, mesh.tp_i)
    flat_ref = torch.cat([ref[k].flatten() for k in shard])
    last = s == cfg.pp - 1
    n = rows * cfg.seq_len * cfg.hidden
    psi = grads.numel()
    counted = {label: traffic.take(label)[0] for label in ("3d_tp", "3d_pp", "3d_dp")}
    analytic = {"3d_tp": m * 4 * ring_allreduce_bytes(n, cfg.tp),
                "3d_pp": m * n * 4 * ((s < cfg.pp - 1) + (s > 0)),
                "3d_dp": ring_allreduce_bytes(padded(psi, cfg.dp), cfg.dp)}
    traffic.take("3d_pp_clock")
    traffic.take("3d_loss")
    return {"loss": loss.item() if last else None, "loss_ref": loss_ref,
            "max_abs_err_loss": abs(loss.item() - loss_ref) if last else 0.0,
            "max_abs_err_grad": (grads - flat_ref).abs().max().item(),
            "params_per_rank": psi, "bytes_sent": counted, "bytes_analytic": analytic}
