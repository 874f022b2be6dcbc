"""``python -m labs NAME [--toy] [--seed N] [--threads N] [--device cpu|cuda] [--set k=v ...] [--json] [--out DIR]``."""

import os
import sys

# Idle OpenMP threads sleep instead of spinning. Set before torch loads: with 2 threads per lab
# on a shared 2-core machine, spinning siblings made one toy run take 635 s instead of 20 s.
# It changes timings only, never results.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from labs._runtime import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
