"""scripts/setup.sh's choice of torch build, read from its --print-plan with a fake nvidia-smi on PATH
(nothing is installed). PATH holds only the fake, so a real driver on the test machine cannot leak in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"
BASH = shutil.which("bash") or "/bin/bash"
TWO_GPUS = 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0)"; echo "GPU 1: NVIDIA H200 (UUID: GPU-1)"'
NO_DRIVER = 'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."; exit 9'


def plan(tmp_path: Path, nvidia_smi: str | None, **env: str) -> tuple[int, dict[str, str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if nvidia_smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\n{nvidia_smi}\n")
        fake.chmod(0o755)
    out = subprocess.run([BASH, str(SCRIPT), "--print-plan", str(tmp_path / "venv")], capture_output=True,
                         text=True, env={"PATH": str(bin_dir), **env}, timeout=30)
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    return out.returncode, lines, out.stderr


def sources(lines: dict[str, str]) -> list[str]:
    return [v for k, v in sorted(lines.items()) if k.startswith("source ")]


def test_a_gpu_listed_by_nvidia_smi_chooses_the_cuda_build(tmp_path):
    code, lines, _ = plan(tmp_path, TWO_GPUS)
    assert code == 0
    assert lines["build"].startswith("cuda (nvidia-smi lists 2 GPU(s), the first: GPU 0: NVIDIA H200")
    assert sources(lines) == ["pip's configured index"]
    assert not (tmp_path / "venv").exists()  # a plan installs nothing


def test_the_cuda_index_comes_only_from_its_variable(tmp_path):
    _, lines, _ = plan(tmp_path, TWO_GPUS, TORCH_CUDA_INDEX_URL="file:///wheels/cuda", TORCH_INDEX_URL="file:///x")
    assert sources(lines) == ["extra index TORCH_CUDA_INDEX_URL", "pip's configured index"]


@pytest.mark.parametrize("nvidia_smi, why", [(None, "no nvidia-smi on PATH"), (NO_DRIVER, "lists no GPU")])
def test_no_usable_driver_chooses_the_cpu_build(tmp_path, nvidia_smi, why):
    code, lines, _ = plan(tmp_path, nvidia_smi, TORCH_INDEX_URL="file:///wheels/cpu")
    assert code == 0
    assert lines["build"].startswith("cpu") and why in lines["build"]
    assert sources(lines) == ["a local CPU wheel on pip's find-links", "extra index TORCH_INDEX_URL",
                              "pip's configured index"]


def test_torch_build_overrides_the_choice_and_is_checked(tmp_path):
    _, lines, _ = plan(tmp_path, TWO_GPUS, TORCH_BUILD="cpu", TORCH_VERSION="2.5.1")
    assert lines["build"] == "cpu (TORCH_BUILD=cpu)" and lines["torch"] == "2.5.1"
    code, _, stderr = plan(tmp_path, TWO_GPUS, TORCH_BUILD="rocm")
    assert code == 2 and "TORCH_BUILD=rocm: expected cpu or cuda" in stderr
