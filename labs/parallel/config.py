"""The parallel lab's settings, their limits, and the two formulas the card teaches."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from labs._runtime import Range

# The lab runs tp*pp*dp processes on however many cores there are. With --threads above 1 each
# rank's OpenMP threads would spin while they wait for a descheduled sibling (libgomp's default):
# on 2 shared cores that made the toy 4x slower and charged the spinning to the passes' CPU time,
# which the pipeline's clock measures. Passive waiting must be chosen before torch loads OpenMP,
# so here, before the first ``import torch`` (``python -m labs parallel`` imports it here first).
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
OMP_PASSIVE = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"  # else lab.run warns


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    tp: int = 2  # tensor-parallel size
    pp: int = 2  # pipeline stages
    dp: int = 2  # data-parallel size
    # tensor-parallel transformer block (also one pipeline stage of the composed 3-D step)
    hidden: int = 64
    heads: int = 4
    seq_len: int = 16
    batch: int = 8  # the TP demo's batch, and the 3-D step's whole batch (split dp x three_d_micro_batches)
    three_d_micro_batches: int = 2  # micro-batches per data-parallel replica in the 3-D step
    # pipeline: each stage is pp_layers x (Linear(pp_width, pp_width) + tanh)
    pp_width: int = 768
    pp_layers: int = 6
    micro_batch: int = 128  # rows per micro-batch
    micro_batches: tuple[int, ...] = (1, 2, 4, 8, 16)
    pp_repeats: int = 5  # runs per (schedule, m); the median idle fraction is reported
    # data parallel and ZeRO: an MLP of dp_layers Linear(dp_width, dp_width) layers
    dp_width: int = 64
    dp_layers: int = 4
    dp_batch: int = 32
    lr: float = 1e-2
    timeout_s: float = 600.0  # the whole run; children are killed after it

    def validate(self) -> None:
        if self.heads % self.tp or self.hidden % self.heads:
            raise ValueError("heads must divide by tp, and hidden by heads")
        if (4 * self.hidden) % self.tp:
            raise ValueError("the MLP width 4*hidden must divide by tp")
        if self.dp_batch % self.dp:
            raise ValueError("dp_batch must divide by dp")
        if self.batch % (self.dp * self.three_d_micro_batches):
            raise ValueError("batch must divide by dp * three_d_micro_batches (the 3-D step's micro-batches)")
        # imported here, not above: this module must load before torch (see OMP_PASSIVE); by the
        # time a config is validated the lab, and torch with it, has loaded
        from labs._distributed import launched_world

        launched = launched_world()
        world = self.tp * self.pp * self.dp
        if launched and launched.size != world:
            raise ValueError(f"the launcher started {launched.size} processes but tp*pp*dp = "
                             f"{self.tp}*{self.pp}*{self.dp} = {world}: start {world} (--nnodes x --nproc-per-node) "
                             "or set tp, pp and dp to match")


LIMITS = {
    "seed": Range(0),
    "tp": Range(1), "pp": Range(1), "dp": Range(1),
    "hidden": Range(1), "heads": Range(1), "seq_len": Range(1), "batch": Range(1),
    "three_d_micro_batches": Range(1),
    "pp_width": Range(1), "pp_layers": Range(1), "micro_batch": Range(1),
    "micro_batches": Range(1),  # and not empty
    "pp_repeats": Range(1),
    "dp_width": Range(1), "dp_layers": Range(1), "dp_batch": Range(1),
    "lr": Range(0, low_open=True),
    "timeout_s": Range(0, low_open=True),
}

TOY = {"micro_batches": (1, 2, 4), "pp_repeats": 5, "timeout_s": 150.0}


def ring_allreduce_bytes(numel: int, p: int, bytes_per: int = 4) -> float:
    """Bytes one rank sends in a ring all-reduce of ``numel`` numbers: 2 (p-1)/p * N * bytes."""
    return 2 * (p - 1) / p * numel * bytes_per


def bubble_fraction(p: int, m: int) -> float:
    """Idle fraction of a GPipe or 1F1B pipeline: (p-1) / (m+p-1)."""
    return (p - 1) / (m + p - 1)


def padded(numel: int, p: int) -> int:
    """``numel`` rounded up to a multiple of p (the ring splits a buffer into p equal chunks)."""
    return -(-numel // p) * p
