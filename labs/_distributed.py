"""Data parallelism for the SFT and DPO labs under torchrun:

    torchrun --nproc-per-node 2 -m labs sft --set model=PATH

torchrun starts one process per rank and tells each its place in the environment (RANK,
WORLD_SIZE, LOCAL_RANK, and MASTER_ADDR/MASTER_PORT for the rendezvous). Every rank draws the
same global batch from the same seed and keeps its own slice of it; DistributedDataParallel
averages the gradients over the ranks during ``backward``, so every rank takes the same
optimizer step. For that average to be the gradient of the global batch's loss, each rank's
loss must be its share of the global loss: for a mean over tokens, the rank's sum divided by
the global token count, times the number of ranks (which the average divides out again).
Only rank 0 reports events and writes files. gloo carries the gradients on CPU, NCCL on CUDA.

Without torchrun (no RANK in the environment) nothing changes: one rank, no process group.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from labs._runtime import LabUsageError, launcher_place


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (one rank when not under torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: int) -> slice:
        """This rank's rows of a global batch of ``batch`` rows (a multiple of ``size``)."""
        if self.size == 1:
            return slice(None)
        per_rank = batch // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def describe(self, batch: int, unit: str) -> str:
        return (f"data parallel over {self.size} ranks: {batch // self.size} of the {batch} {unit} of each batch "
                "per rank, gradients averaged")

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model whose ``backward`` averages gradients over the ranks (the model itself on one rank)."""
        if self.size == 1:
            return model
        import inspect

        from torch.nn.parallel import DistributedDataParallel as DDP

        device_ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        # no buffers to keep in step (rotary tables are computed, not learnt), so no collective per
        # forward; newer torch renamed the switch
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters \
            else "broadcast_buffers"
        return DDP(model, device_ids=device_ids, **{no_sync: False})

    def backward(self, share: torch.Tensor) -> None:
        """Backward of this rank's share of a loss that sums over the ranks (its slice's sum over the
        global count): DDP averages the ranks' gradients, so the share is scaled by the rank count."""
        (share * self.size if self.size > 1 else share).backward()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of ``value`` over the ranks (a detached copy)."""
        total = value.detach().clone()
        if self.size > 1:
            torch.distributed.all_reduce(total)
        return total

    def mean(self, value: torch.Tensor | float) -> float:
        """The mean of a scalar over the ranks."""
        value = torch.as_tensor(value, dtype=torch.float64)
        return float(self.sum(value)) / self.size


def launched_world() -> World | None:
    """This process's place when a launcher (torchrun) started it, None when none did."""
    place = launcher_place()
    return None if place is None else World(*place)


def check_divides(batch: int, name: str) -> None:
    """A global batch must split evenly over the ranks (equal shards keep the mean of means exact)."""
    ranks = (launched_world() or World()).size
    if batch % ranks:
        raise LabUsageError(f"{name}={batch} does not split over {ranks} ranks: use a multiple of {ranks}")


@contextlib.contextmanager
def session(device: str) -> Iterator[World]:
    """Join the process group when torchrun started us (and leave it at the end); else one rank."""
    world = launched_world()
    if world is None:
        yield World()
        return
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(world.local_rank)  # "cuda" now means this rank's GPU
    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    try:
        yield world
    finally:
        dist.destroy_process_group()


class _Silent:
    """What ranks other than 0 report through: nothing, except the headline the runner checks."""

    def __init__(self, emit: Any):
        self._emit = emit

    def summary(self, headline: dict[str, Any], artifacts: Any = ()) -> None:
        self._emit.headline = dict(headline)

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def main_rank_reports(emit: Any, world: World) -> Any:
    """``emit`` on rank 0; on other ranks an emitter that drops every event."""
    return emit if world.is_main else _Silent(emit)
