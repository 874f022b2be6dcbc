"""Data parallelism, ZeRO-1 (torch's ZeroRedundancyOptimizer) and ZeRO-3 (FSDP2 ``fully_shard``).

Each rank of a DP group takes 1/p of the batch; averaging the gradients with a ring all-reduce
gives exactly the full-batch gradient. ZeRO-1 shards Adam's moments (8 Psi / p bytes per rank);
FSDP2 shards parameters too (4 Psi / p), all-gathering them in forward and again in backward and
reduce-scattering gradients (3 (p-1)/p Psi numbers sent per rank).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.distributed.fsdp import fully_shard
from torch.distributed.optim import ZeroRedundancyOptimizer

from labs.parallel.config import Config, padded, ring_allreduce_bytes
from labs.parallel.mesh import Mesh, Traffic, counted_collectives, ring_all_reduce


def mlp(cfg: Config, device: str) -> torch.nn.Sequential:
    torch.manual_seed(cfg.seed * 1000 + 3)
    layers: list[torch.nn.Module] = []
    for _ in range(cfg.dp_layers):
        layers += [torch.nn.Linear(cfg.dp_width, cfg.dp_width, bias=False), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers).to(device)


def dp_batch(cfg: Config, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed * 1000 + 4)
    return (torch.randn(cfg.dp_batch, cfg.dp_width, generator=g).to(device),
            torch.randn(cfg.dp_batch, cfg.dp_width, generator=g).to(device))


def reference_step(cfg: Config, device: str) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """One process, the full batch: gradients, parameters after one Adam step, Adam's state bytes."""
    model = mlp(cfg, device)
    x, y = dp_batch(cfg, device)
    F.mse_loss(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    opt.step()
    return grads, [p.detach().clone() for p in model.parameters()], optimizer_state_bytes(opt)


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


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of this rank's Adam moments (m and v; the scalar step counters left out)."""
    total = 0
    for st in opt.state.values():
        for k, t in st.items():
            if k != "step" and torch.is_tensor(t):
                local = t.to_local() if hasattr(t, "to_local") else t
                total += local.numel() * local.element_size()
    return total


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
    torch.optim.Adam(params, lr=cfg.lr).step()
    return {"max_abs_err_grad": max_err(grads, ref_grads), "max_abs_err_params": max_err(params, ref_params),
            "bytes_sent": sent, "bytes_analytic": ring_allreduce_bytes(padded(psi, cfg.dp), cfg.dp), "params": psi}


def run_zero1(cfg: Config, mesh: Mesh, device: str, traffic: Traffic, ref: tuple) -> dict[str, Any]:
    """Gradients all-reduced as DDP would (ZeRO-1 keeps full gradients); each rank updates its
    shard of the parameters with its shard of Adam's state, then broadcasts it."""
    _, ref_params, full_state = ref
    model = mlp(cfg, device)
    x, y = local_batch(cfg, mesh, device)
    F.mse_loss(model(x), y).backward()
    params = list(model.parameters())
    psi = sum(p.numel() for p in params)
    opt = ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.Adam, lr=cfg.lr, process_group=mesh.dp_group)
    traffic.take("zero1")
    average_gradients(params, cfg, mesh, traffic, "zero1")
    with counted_collectives(traffic, "zero1"):
        opt.step()
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
