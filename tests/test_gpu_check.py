"""scripts/gpu_check.sh: its --dry-run plan (what CI can check without a GPU) and, with a fake
nvidia-smi, one real pass through the runner: a lab that fails is reported with its reason, the
sampled memory peak above the baseline, and both tables written."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labs.registry import LABS

ROOT = Path(__file__).resolve().parents[1]
FAKE_NVIDIA_SMI = """#!/bin/sh
case "$*" in
  *index,name*) echo "0, NVIDIA Fake GPU" ;;
  *-lms=*) while true; do echo "0, 612"; sleep 0.05; done ;;
  *memory.used*) echo "0, 100" ;;
esac
"""


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dry_run_lists_every_registered_lab_and_skips_what_needs_more_gpus(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--gpus", "1",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    planned = dict(line.split(": ", 1) for line in out.stdout.splitlines()[1:])
    assert list(planned) == [lab.name for lab in LABS]
    assert planned["parallel"] == "skip: needs 8 GPUs (one NCCL rank each), 1 visible"
    for name, what in planned.items():
        if name != "parallel":
            assert what.startswith("run: ") and f"-m labs {name} --device cuda --json" in what
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_enough_gpus_put_the_parallel_lab_under_torchrun(tmp_path):
    gpu_check = load_gpu_check()
    (step,) = gpu_check.plan(["parallel"], gpus=8, out=tmp_path)
    assert step.gpus_needed == 8 and not step.skip
    assert step.command[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "8", "-m"]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a real GPU would let the lab run its full preset")
def test_a_run_reports_failure_memory_and_writes_both_tables(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(FAKE_NVIDIA_SMI)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu_check = load_gpu_check()
    # this machine has no CUDA, so the lab refuses --device cuda: a failure, reported with its reason
    code = gpu_check.main(["--labs", "mdp", "--out", str(tmp_path / "out")])
    assert code == 1
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["gpus"] == ["0: NVIDIA Fake GPU"]
    (row,) = report["rows"]
    assert row["lab"] == "mdp" and row["status"] == "failed"
    assert "no CUDA device is available" in row["note"]
    assert row["peak_gpu_mib"] == 512  # 612 sampled during the run, 100 before it
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "on 1 GPU(s): 0: NVIDIA Fake GPU" in table and "| mdp | failed (" in table and "512 MiB" in table
