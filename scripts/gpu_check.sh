#!/usr/bin/env bash
# Every registered lab's full preset with --device cuda on this machine's GPUs (the parallel lab
# under torchrun, NCCL, one rank per GPU), unattended: a table of wall time, peak GPU memory and
# headline per lab in output/gpu_check/ (gpu_check.md, gpu_check.json).
#
#   scripts/gpu_check.sh --dry-run        # what it would run; needs no GPU
#   scripts/gpu_check.sh                  # run it (default: 120 s per lab, 570 s in all)
#   scripts/gpu_check.sh --help           # the options (scripts/gpu_check.py does the work)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
exec "$python" scripts/gpu_check.py "$@"
