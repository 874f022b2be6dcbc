"""Start-up stays light: the TUI and the core never import torch or transformers."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "gymnasium", "numpy", "sqlite_utils", "plotext", "typer", "pydantic", "fsrs",
         "markdown_it")

PROBE = """
import sys, importlib, pkgutil
import llmcore_tui.cli, llmcore_tui.tui.app, llmcore_tui.core.course
names = [m.name for m in pkgutil.walk_packages(llmcore_tui.__path__, "llmcore_tui.") if ".tui" in m.name or ".core" in m.name or ".cli" in m.name]
for name in names:
    importlib.import_module(name)
import labs, labs.registry
print(",".join(sorted(n for n in {heavy!r} if n in sys.modules)))
"""

STARTUP = """
import sys
import llmcore_tui.cli, llmcore_tui.tui.app
from llmcore_tui.cli.options import resolve_options
from llmcore_tui.tui.screens import today
print(",".join(sorted(n for n in {heavy!r} if n in sys.modules)))
"""


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_no_module_of_the_app_imports_torch_or_transformers():
    loaded = _run(PROBE.format(heavy=("torch", "transformers")))
    assert loaded == "", f"importing llmcore_tui pulled in: {loaded}"


def test_the_start_up_path_avoids_every_heavy_import():
    loaded = _run(STARTUP.format(heavy=HEAVY))
    assert loaded == "", f"TUI start-up pulled in: {loaded}"
