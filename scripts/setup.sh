#!/usr/bin/env bash
# Creates the virtual environment and installs llmcore-tui with its test tools.
#
#   scripts/setup.sh [--print-plan] [VENV]      (VENV defaults to .venv)
#
# torch: which build depends on the machine.
#   On a machine with an NVIDIA driver (nvidia-smi lists a GPU): the CUDA build, from
#     1. TORCH_CUDA_INDEX_URL, when set: an extra index that serves the CUDA build you want
#        (for example one for your driver's CUDA version),
#     2. otherwise pip's configured index (whose Linux torch wheels are CUDA builds).
#   Elsewhere the CPU build (a tenth of the size; the labs are CPU-first), from
#     1. a CPU wheel already on this machine's pip find-links (no network at all),
#     2. TORCH_INDEX_URL, when set: an extra index that serves the CPU build,
#     3. otherwise pip's configured index (the only build on macOS).
# TORCH_BUILD=cpu or TORCH_BUILD=cuda overrides the choice; TORCH_VERSION pins another release.
# No package index is named here: pip's own configuration and these variables decide.
# --print-plan says what would be installed, and why, and changes nothing.
set -euo pipefail

print_plan=0
if [ "${1:-}" = "--print-plan" ]; then
  print_plan=1
  shift
fi
venv=${1:-.venv}
torch_version=${TORCH_VERSION:-2.13.0}
python=${PYTHON:-python3}

# The build: cuda when nvidia-smi runs and lists a GPU (a driver that is installed but not
# loaded lists none), cpu otherwise. Sets `build` and `reason`.
choose_build() {
  local gpus=""
  if [ -n "${TORCH_BUILD:-}" ]; then
    case "$TORCH_BUILD" in
      cpu|cuda) build=$TORCH_BUILD; reason="TORCH_BUILD=$TORCH_BUILD"; return ;;
      *) echo "setup: TORCH_BUILD=$TORCH_BUILD: expected cpu or cuda" >&2; exit 2 ;;
    esac
  fi
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L 2>/dev/null) || gpus=""
  fi
  if [ "${gpus#GPU }" != "$gpus" ]; then  # "GPU 0: NVIDIA H100 ... (UUID: ...)", one line each
    local lines
    mapfile -t lines <<<"$gpus"
    build=cuda
    reason="nvidia-smi lists ${#lines[@]} GPU(s), the first: ${lines[0]}"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    build=cpu
    reason="nvidia-smi is present but lists no GPU (is the driver loaded?)"
  else
    build=cpu
    reason="no nvidia-smi on PATH: no NVIDIA driver"
  fi
}

# The sources to try, in order, one per line.
torch_sources() {
  if [ "$build" = cuda ]; then
    if [ -n "${TORCH_CUDA_INDEX_URL:-}" ]; then echo "extra index TORCH_CUDA_INDEX_URL"; fi
    echo "pip's configured index"
  else
    echo "a local CPU wheel on pip's find-links"
    if [ -n "${TORCH_INDEX_URL:-}" ]; then echo "extra index TORCH_INDEX_URL"; fi
    echo "pip's configured index"
  fi
}

choose_build
if [ "$print_plan" = 1 ]; then
  echo "build: $build ($reason)"
  echo "torch: $torch_version"
  echo "venv: $venv"
  n=0
  while IFS= read -r source; do
    n=$((n + 1))
    echo "source $n: $source"
  done < <(torch_sources)
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip >/dev/null
torch_is() { "$venv/bin/python" -W ignore -c "import torch; print(torch.__version__, 'cuda' if torch.version.cuda else 'cpu')"; }

# One source of torch: succeeds when torch was installed from it.
install_torch_from() {
  local pinned="torch==$torch_version"
  case "$1" in
    "a local CPU wheel on pip's find-links")
      # no network for the wheel itself; its own dependencies come from the index
      "${pip[@]}" install -q --no-index --no-deps "$pinned" 2>/dev/null && "${pip[@]}" install -q "$pinned" ;;
    "extra index TORCH_INDEX_URL")
      "${pip[@]}" install -q --timeout 30 --retries 1 --extra-index-url "$TORCH_INDEX_URL" "$pinned" ;;
    "extra index TORCH_CUDA_INDEX_URL")
      "${pip[@]}" install -q --timeout 30 --retries 1 --extra-index-url "$TORCH_CUDA_INDEX_URL" "$pinned" ;;
    "pip's configured index")
      "${pip[@]}" install -q "$pinned" || "${pip[@]}" install -q torch ;;
  esac
}

if "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: torch already installed ($(torch_is)); this machine's choice would be the $build build ($reason)"
else
  installed=0
  while IFS= read -r source; do
    if install_torch_from "$source" </dev/null; then
      echo "setup: torch from $source: $(torch_is) ($reason)"
      installed=1
      break
    fi
  done < <(torch_sources)
  if [ "$installed" = 0 ]; then
    echo "setup: could not install torch from any source; see pip's messages above" >&2
    exit 1
  fi
  if [ "$build" = cuda ] && ! "$venv/bin/python" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "setup: warning: torch ($(torch_is)) sees no GPU, so the labs will run on the CPU; a build for your" \
      "driver's CUDA version may need TORCH_CUDA_INDEX_URL" >&2
  fi
fi

"${pip[@]}" install -q -e ".[dev]"
echo "setup: done ($venv)"
