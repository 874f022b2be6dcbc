"""Golden renderings: every math span in cards/ and quizzes/ with the Unicode the terminal shows.

``tests/golden/math.tsv`` (file, line, latex, rendering) was reviewed by eye. A test fails when
the renderer changes any of those renderings, or when the content has a formula whose
rendering nobody has looked at yet. After reviewing the difference, regenerate with

    .venv/bin/python -m tests.test_math_golden --update

and read ``git diff tests/golden/math.tsv`` before committing it. Rows are matched by their
LaTeX (whitespace collapsed), not by line, so editing the prose around a formula never fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

from llmcore_tui.core.mathtext import iter_math, latex_to_unicode

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "math.tsv"
HEADER = "file\tline\tlatex\trendering"
REGENERATE = ".venv/bin/python -m tests.test_math_golden --update"


def _one_line(latex: str) -> str:
    return " ".join(latex.split())


def shipped_spans() -> list[tuple[str, int, str, str]]:
    """(file, line, latex on one line, rendering) for every math span in the shipped content."""
    rows = []
    for folder in ("cards", "quizzes"):
        for path in sorted((REPO / folder).glob("*.md")):
            if path.name.lower() == "readme.md":
                continue
            text = path.read_text(encoding="utf-8")
            for span in iter_math(text):
                line = text.count("\n", 0, span.offset) + 1
                rows.append((f"{folder}/{path.name}", line, _one_line(span.latex), latex_to_unicode(span.latex.strip())))
    return rows


def read_golden() -> list[tuple[str, int, str, str]]:
    lines = GOLDEN.read_text(encoding="utf-8").splitlines()
    assert lines[0] == HEADER, f"{GOLDEN} has no header; regenerate it with {REGENERATE}"
    rows = []
    for raw in lines[1:]:
        file, line, latex, rendering = raw.split("\t")
        rows.append((file, int(line), latex, rendering))
    return rows


def write_golden() -> None:
    rows = shipped_spans()
    for _, _, latex, rendering in rows:
        assert "\t" not in latex + rendering and "\n" not in rendering
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{file}\t{line}\t{latex}\t{rendering}\n" for file, line, latex, rendering in rows)
    GOLDEN.write_text(HEADER + "\n" + body, encoding="utf-8")
    print(f"wrote {len(rows)} spans ({len({r[2] for r in rows})} distinct) to {GOLDEN.relative_to(REPO)}")


def test_every_reviewed_rendering_is_unchanged():
    changed = [f"{file}:{line}: {latex}\n    was: {old}\n    now: {latex_to_unicode(latex)}"
               for file, line, latex, old in read_golden() if latex_to_unicode(latex) != old]
    assert not changed, (f"{len(changed)} rendering(s) changed; review, then run {REGENERATE}:\n"
                         + "\n".join(changed[:40]))


def test_every_shipped_formula_has_a_reviewed_rendering():
    golden = {latex: rendering for _, _, latex, rendering in read_golden()}
    unseen = [f"{file}:{line}: {latex}\n    shows: {rendering}" for file, line, latex, rendering in shipped_spans()
              if golden.get(latex) != rendering]
    assert not unseen, (f"{len(unseen)} formula(s) in the content have no reviewed rendering; check how they "
                        f"read, then run {REGENERATE}:\n" + "\n".join(unseen[:40]))


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(f"usage: {REGENERATE}")
    write_golden()
