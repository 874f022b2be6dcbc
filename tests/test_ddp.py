"""Data parallelism for sft and dpo: two ranks under torchrun (gloo, CPU) take the same steps as one
process on the same global batch, so their loss series agree to 1e-5; only rank 0 reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labs import _distributed as ddp
from labs._runtime import LabUsageError
from test_lab_checkpoints import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
STEPS = 6
RUNS = {  # every step evaluated, so every step's batch loss is reported
    "sft": (["steps=6", "eval_every=1", "compare_steps=0", "eval_problems=10", "batch_size=16"], "losses/train"),
    "dpo": (["steps=6", "eval_every=1", "train_prompts=100", "heldout_prompts=10", "batch_pairs=16",
             "sweep_betas=", "lr=1e-3"], "losses/dpo"),
}


def _events(argv: list[str], out: Path) -> list[dict]:
    env = {**os.environ, "LLMCORE_LAB_CHECKPOINTS": str(out / "checkpoints")}
    done = subprocess.run([sys.executable, *argv, "--json", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _losses(events: list[dict], key: str) -> list[float]:
    return [e["values"][key] for e in events if e["event"] == "metric" and e["values"].get(key) is not None]


@pytest.mark.lab
@pytest.mark.parametrize("lab", list(RUNS))
def test_two_ranks_take_the_same_steps_as_one_process(lab, tmp_path):
    folder = save_checkpoint(tmp_path / "model")
    settings, key = RUNS[lab]
    lab_args = [lab, "--toy", "--seed", "0", "--threads", "1", "--set", f"model={folder}",
                *(a for s in settings for a in ("--set", s))]
    one = _events(["-m", "labs", *lab_args], tmp_path / "one")
    two = _events(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "labs", *lab_args],
                  tmp_path / "two")
    single, parallel = _losses(one, key), _losses(two, key)
    assert len(single) == STEPS and len(parallel) == STEPS
    gap = max(abs(a - b) for a, b in zip(single, parallel))
    print(f"{lab}: {key} over {STEPS} steps, 1 process {single[0]:.6f} .. {single[-1]:.6f}, "
          f"largest gap to 2 ranks {gap:.2e}")
    assert gap < 1e-5
    assert single[0] != single[-1]  # the model moved: equal series are not two frozen models
    assert sum(e["event"] == "summary" for e in two) == 1  # rank 0 alone reports
    assert sum(e["event"] == "start" for e in two) == 1
    assert any("data parallel over 2 ranks" in e.get("text", "") for e in two)


def _sft_gradient(rank: int, size: int, init_file: str, out: str) -> None:
    """One SFT backward on a fixed global batch of 8 sequences, as rank ``rank`` of ``size``; saves the gradient."""
    import random

    import torch

    from labs import _tinylm as tl
    from labs import sft

    world = ddp.World(rank, size)
    if size > 1:
        torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    torch.manual_seed(0)
    model = tl.build_model(tl.model_config(d_model=16, n_layers=1, n_heads=2, d_ff=32))
    task = tl.AdditionTask()
    problems = task.sample(random.Random(0), 8)
    answers = sft.demonstrations(task, problems, random.Random(1), cut_short=0.5)  # answers of unequal lengths
    batch = sft.make_batch(task, problems, "cpu", answers)
    mine = world.shard(8)
    forward = world.wrap(model)  # held until backward: its reducer does the all-reduce
    logits = forward(input_ids=batch["ids"][mine]).logits[:, :-1]
    tokens = batch["completion_mask"].sum() if size > 1 else None
    world.backward(sft.sft_loss(logits, batch["targets"][mine], batch["completion_mask"][mine], tokens))
    if rank == 0:
        torch.save(torch.cat([p.grad.flatten() for p in model.parameters()]), out)
    if size > 1:
        torch.distributed.destroy_process_group()


@pytest.mark.lab
def test_two_ranks_average_to_the_gradient_of_the_global_batch(tmp_path):
    """Unequal token counts on the two slices: a per-rank mean, or a share not scaled back by the
    rank count, would give another gradient (Adam's scale-invariance can hide the latter in a loss)."""
    import torch
    import torch.multiprocessing as mp

    _sft_gradient(0, 1, "", str(tmp_path / "one.pt"))
    mp.spawn(_sft_gradient, args=(2, str(tmp_path / "rendezvous"), str(tmp_path / "two.pt")), nprocs=2)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.abs().max() > 0
    torch.testing.assert_close(two, one, rtol=1e-5, atol=1e-7)


def test_a_rank_takes_its_slice_of_the_global_batch():
    assert ddp.World().shard(12) == slice(None)
    assert [ddp.World(r, 3).shard(12) for r in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]


def test_a_batch_that_does_not_split_over_the_ranks_is_a_usage_error(monkeypatch):
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)
    assert ddp.launched_world() == ddp.World(0, 3, 0)
    with pytest.raises(LabUsageError, match="batch_size=16 does not split over 3 ranks"):
        ddp.check_divides(16, "batch_size")
    ddp.check_divides(18, "batch_size")
    monkeypatch.delenv("MASTER_PORT")
    with pytest.raises(LabUsageError, match="MASTER_PORT is not"):  # half-set: not a hang at the rendezvous
        ddp.launched_world()
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key)
    assert ddp.launched_world() is None
