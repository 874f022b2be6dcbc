"""The layers hold: cli/tui -> core -> store; labs apart; no import cycles; files a reader can hold.

Imports are read from the source (ast), those inside functions included and those under
``if TYPE_CHECKING:`` excluded, so a lazy import cannot hide a cycle or a wrong-way arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    files = [*(REPO / "llmcore_tui").rglob("*.py"), *(REPO / "labs").rglob("*.py")]
    return {module_name(p): p for p in files if "__pycache__" not in p.parts}


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every module ``name`` imports (absolute names), wherever in the file. ``from pkg import sub``
    depends on ``pkg.sub`` when that is a module, else on ``pkg`` (names from its ``__init__``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for block in ast.walk(tree) if _type_checking_block(block) for n in ast.walk(block)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found


def graph() -> dict[str, set[str]]:
    mods = sources()
    return {name: {m for m in imports_of(path, name, set(mods)) if m in mods and m != name}
            for name, path in mods.items()}


def test_labs_never_import_the_app():
    wrong = {m: sorted(i for i in deps if i.startswith("llmcore_tui")) for m, deps in graph().items()
             if m.startswith("labs")}
    assert not {m: d for m, d in wrong.items() if d}


def test_core_never_imports_the_interfaces():
    wrong = {m: sorted(i for i in deps if i.startswith(("llmcore_tui.tui", "llmcore_tui.cli")))
             for m, deps in graph().items() if m.startswith("llmcore_tui.core")}
    assert not {m: d for m, d in wrong.items() if d}


LAB_INTERFACE = {"labs.registry", "labs.protocol"}  # which labs exist; what they say (no torch in either)


def test_the_app_reaches_labs_only_through_the_registry_and_the_protocol():
    wrong = {m: sorted(i for i in deps if i.startswith("labs") and i not in LAB_INTERFACE)
             for m, deps in graph().items() if m.startswith("llmcore_tui")}
    assert not {m: d for m, d in wrong.items() if d}


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_files_stay_small_enough_to_read():
    too_long = []
    for name, path in sources().items():
        rel = str(path.relative_to(REPO))
        is_lab = rel.startswith("labs/") and rel.count("/") == 1 and not path.name.startswith("_") \
            and path.name not in ("registry.py", "protocol.py")
        limit = 400 if is_lab else 600
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            too_long.append(f"{rel}: {lines} > {limit}")
    assert not too_long
