"""``python -m labs NAME [--toy] [--seed N] [--device cpu|cuda] [--set k=v ...] [--json] [--out DIR]``."""

import sys

from labs._runtime import main

if __name__ == "__main__":
    sys.exit(main())
