"""Megatron-style parallelism on real torch.distributed processes: TP, PP, DP, ZeRO, and all three at once.

``python -m labs parallel`` starts ``tp * pp * dp`` processes itself (``mesh.py``:
torch.multiprocessing, a ``file://`` rendezvous, gloo on CPU and NCCL on GPU); under torchrun
(``torchrun --nproc-per-node N -m labs parallel``, one or more machines) each process is one rank
that meets the others at the ``env://`` rendezvous, and rank 0 alone writes the events. Rank r sits at mesh coordinates
(dp_i, pp_i, tp_i) with ``r = (dp_i * pp + pp_i) * tp + tp_i`` (tensor parallel innermost, as in
Megatron-LM). Each axis is first shown on its own (``tp.py``, ``pp.py``, ``dp.py``); then
``three_d.py`` composes them into one training step. Every result is checked against one process
running the same model on the whole batch, and every byte a rank sends is counted and compared
with the formulas below.

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

GPipe holds all m micro-batches' activations at its peak; 1F1B holds at most p - s on stage s.
What is measured: each stage's idle fraction of the step, 1 - (its compute time) / makespan,
averaged over stages, where time is a Lamport clock of compute: each stage's clock advances by
the CPU time of its own forward and backward passes, each message carries its sender's clock,
and a receiver's clock jumps to the stamp when it had to wait. The clock follows the schedule
that really ran, message by message, and is immune to the descheduling that makes wall-clock
timelines on shared cores swing by +-0.1 (a descheduled process burns no CPU time); the
wall-clock idle fraction is reported beside it. See ``pp.py``.

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

3-D parallelism: world = tp * pp * dp. Stage s of a pp-stage pipeline is a transformer block
TP-sharded over its tp ranks; dp replicas each run 1F1B over their share of the batch, then
every gradient shard is averaged over the dp ranks holding the same shard. Per rank and step:
m * 4 ring all-reduces of the micro-batch activation over tp, m activations to each pipeline
neighbour, and one ring all-reduce of its own shard (Psi / (tp * pp) numbers) over dp.
"""

# config is imported first: it sets OMP_WAIT_POLICY before torch loads (see its OMP_PASSIVE)
from labs.parallel.config import (LIMITS, OMP_PASSIVE, TOY, Config, bubble_fraction, padded,  # noqa: F401
                                  ring_allreduce_bytes)
from labs.parallel.lab import CHARTS, run

__all__ = ["CHARTS", "Config", "LIMITS", "OMP_PASSIVE", "TOY", "run", "bubble_fraction", "padded", "ring_allreduce_bytes"]
