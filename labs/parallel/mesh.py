"""The process mesh: starting the ranks, their TP / PP / DP groups, and counting every byte sent.

Rank r sits at mesh coordinates (dp_i, pp_i, tp_i) with ``r = (dp_i * pp + pp_i) * tp + tp_i``
(tensor parallel innermost, as in Megatron-LM). Our own communication (the ring all-reduce and
the pipeline's sends) goes through ``post``, which counts the bytes handed to each send; torch's
own collectives (ZeRO-1, FSDP2) are counted by wrapping the ``torch.distributed`` functions
they call (``counted_collectives``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import inspect
import json
import queue as queue_module
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from labs._runtime import Emitter, LabFailure, torch_threads
from labs._distributed import World
from labs.parallel.config import Config, padded

# -- counting communication ----------------------------------------------------------------


class Traffic:
    """Bytes this rank hands to send calls (its own p2p) or ring-equivalent shares (torch collectives)."""

    def __init__(self) -> None:
        self.sent: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()

    def take(self, label: str) -> tuple[int, int]:
        return self.sent.pop(label, 0), self.calls.pop(label, 0)


def post(traffic: Traffic, label: str, group: Any, sends: list, recvs: list, tag: int = 0) -> tuple[list, list]:
    """Post sends [(tensor, group_peer)] and receives [(buffer, group_peer)] as one batch.

    Returns (send works, receive works); the caller waits for receives before using them.
    Sends and receives are posted together with ``dist.batch_isend_irecv``: blocking send/recv
    would deadlock in 1F1B's steady state (stage s sends an activation forward while s+1 sends a
    gradient back, each waiting for the other to receive).
    """
    ops = [dist.P2POp(dist.isend, t, group=group, group_peer=peer, tag=tag) for t, peer in sends]
    ops += [dist.P2POp(dist.irecv, b, group=group, group_peer=peer, tag=tag) for b, peer in recvs]
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


# -- the mesh of groups --------------------------------------------------------------------

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


# -- the processes -------------------------------------------------------------------------

# body(cfg, mesh, device, traffic, say, progress) -> this rank's JSON-able result
Body = Callable[[Config, Mesh, str, Traffic, Callable[[str], None], Callable[[str], None]], dict]


def rank_device(device: str, local_rank: int) -> str:
    """This rank's device: one GPU per rank on its machine (NCCL), or the CPU (gloo)."""
    torch.set_num_threads(torch_threads(1))  # one core per process unless --threads says otherwise
    if not device.startswith("cuda"):
        return device
    device = f"cuda:{local_rank % torch.cuda.device_count()}"
    torch.cuda.set_device(device)
    return device


def rank_main(cfg: Config, body: Body, rank: int, device: str, init_method: str,
              say: Callable[[str], None], progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """One rank's whole life, however it was started: join the group, build the mesh, run
    ``body``, and return every rank's result in rank order (an all-gather, so that each rank
    can compute the same summary)."""
    world = cfg.tp * cfg.pp * cfg.dp
    torch.manual_seed(cfg.seed)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", init_method=init_method,
                            rank=rank, world_size=world, timeout=timedelta(seconds=cfg.timeout_s))
    try:
        mesh = build_mesh(cfg, rank)
        for g in (mesh.tp_group, mesh.pp_group, mesh.dp_group):
            dist.barrier(group=g)  # first use of each group by all its ranks
        result = body(cfg, mesh, device, Traffic(), say, progress)
        results: list[Any] = [None] * world
        dist.all_gather_object(results, result)
        return results
    finally:
        dist.destroy_process_group()


def _worker(rank: int, body: Body, cfg_dict: dict, init_file: str, result_dir: str, messages: Any) -> None:
    cfg = Config(**cfg_dict)
    say = lambda text: messages.put(("log", rank, text))  # noqa: E731
    progress = lambda phase: messages.put(("progress", rank, phase))  # noqa: E731
    try:
        results = rank_main(cfg, body, rank, rank_device(cfg.device, rank), f"file://{init_file}", say, progress)
        if rank == 0:
            Path(result_dir, "results.json").write_text(json.dumps(results))
    except Exception:
        messages.put(("error", rank, traceback.format_exc()))
        raise


def join_launched(cfg: Config, body: Body, world: World, phases: list[str], emit: Emitter) -> list[dict[str, Any]]:
    """This process is one rank that torchrun started: meet the others at the env://
    rendezvous (MASTER_ADDR:MASTER_PORT) and run ``body``. Rank 0 reports the phases; the
    other ranks report through an emitter that drops everything (see lab.run)."""
    if cfg.device.startswith("cuda") and world.local_rank >= torch.cuda.device_count():
        raise LabFailure(f"rank {world.rank}: NCCL needs one GPU per rank, and LOCAL_RANK={world.local_rank} has "
                         f"none ({torch.cuda.device_count()} GPUs on this machine): start fewer ranks per machine")
    report = lambda phase: emit.progress(phases.index(phase) + 1, len(phases))  # noqa: E731
    return rank_main(cfg, body, world.rank, rank_device(cfg.device, world.local_rank), "env://", emit.log, report)


def launch(cfg: Config, body: Body, phases: list[str], emit: Emitter, tmp: Path) -> list[dict[str, Any]]:
    """Start tp*pp*dp processes running ``body``, relay their messages, enforce the timeout,
    and return their results in rank order.

    ``fork`` on CPU so that no child re-imports torch, ``spawn`` for CUDA; the processes meet
    through a ``file://`` rendezvous in ``tmp`` (no ports to clash); gloo on CPU, NCCL on GPU.
    """
    world = cfg.tp * cfg.pp * cfg.dp
    method = "spawn" if cfg.device.startswith("cuda") else "fork"
    messages = mp.get_context(method).Queue()
    ctx = mp.start_processes(_worker, args=(body, dataclasses.asdict(cfg), str(tmp / "rendezvous"), str(tmp), messages),
                             nprocs=world, join=False, start_method=method)
    deadline = time.monotonic() + cfg.timeout_s
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
                    emit.progress(phases.index(text) + 1, len(phases))
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
    path = tmp / "results.json"
    if not path.exists():
        raise LabFailure("the ranks finished without handing rank 0 their results")
    return json.loads(path.read_text())
