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


def test_a_rank_takes_its_slice_of_the_global_batch():
    assert ddp.World().shard(12) == slice(None)
    assert [ddp.World(r, 3).shard(12) for r in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]


def test_a_batch_that_does_not_split_over_the_ranks_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert ddp.under_torchrun()
    with pytest.raises(LabUsageError, match="batch_size=16 does not split over 3 ranks"):
        ddp.check_divides(16, "batch_size")
    ddp.check_divides(18, "batch_size")
    monkeypatch.delenv("RANK")
    assert not ddp.under_torchrun() and ddp.planned_world_size() == 1
