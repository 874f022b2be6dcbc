#!/usr/bin/env bash
# Creates the virtual environment and installs llmcore-tui with its test tools.
# torch: the CPU build is preferred (it is a tenth of the size and the labs are CPU-first);
#   1. a CPU wheel already on this machine's pip find-links (no network at all),
#   2. TORCH_INDEX_URL, when set: an extra index that serves the build you want (for example
#      PyTorch's CPU wheel index on a Linux machine without a GPU); no index is named here,
#   3. otherwise pip's configured index (the CUDA build on Linux, the only build on macOS).
set -euo pipefail
venv=${1:-.venv}
torch_version=${TORCH_VERSION:-2.13.0}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip >/dev/null

if "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: torch already installed"
elif "${pip[@]}" install -q --no-index --no-deps "torch==$torch_version" 2>/dev/null; then
  # the wheel came from local find-links; its own dependencies come from the index
  "${pip[@]}" install -q "torch==$torch_version"
  echo "setup: torch $torch_version from a local wheel ($("$venv/bin/python" -c 'import torch; print(torch.__version__)'))"
elif [ -n "${TORCH_INDEX_URL:-}" ] \
  && "${pip[@]}" install -q --timeout 30 --retries 1 --extra-index-url "$TORCH_INDEX_URL" "torch==$torch_version"; then
  echo "setup: torch $torch_version from TORCH_INDEX_URL"
else
  "${pip[@]}" install -q "torch==$torch_version" || "${pip[@]}" install -q torch
fi

"${pip[@]}" install -q -e ".[dev]"
echo "setup: done ($venv)"
