"""Loading quiz files: a folder into a :class:`~llmcore_tui.core.quiz.model.QuizBank`.

A file's front matter (module, day, titles, pass mark) is checked here; each ``## id`` block
goes to :class:`~llmcore_tui.core.quiz.question_block.QuestionParser`. A duplicate id, in one
file or across files, is a problem and the first question wins.
"""

from __future__ import annotations

from pathlib import Path

from llmcore_tui.core.content import LANGS, Problem, outline, parse_front_matter
from llmcore_tui.core.quiz.model import PASS_THRESHOLD, REVIEW_DAY, REVIEW_MODULE, Question, QuizBank, QuizInfo
from llmcore_tui.core.quiz.question_block import QuestionParser


def module_days() -> dict[str, int]:
    """Modules a quiz may belong to and their day: the roadmap's learning modules and ``review``."""
    from llmcore_tui.core import roadmap

    return {**{m: roadmap.MODULE_DAYS[m] for m in roadmap.LEARNING_MODULES}, REVIEW_MODULE: REVIEW_DAY}


def quiz_files(directory: Path) -> list[Path]:
    """Quiz files by name stem, so a module's own file (its pass mark) precedes its topic files."""
    return sorted((p for p in directory.glob("*.md") if p.name.lower() != "readme.md"), key=lambda p: p.stem)


def load_bank(directory: Path, modules: dict[str, int] | None = None) -> QuizBank:
    """Every quiz under ``directory``; a duplicate id (across files too) is a problem, first wins."""
    modules = module_days() if modules is None else modules
    bank = QuizBank()
    if not directory.is_dir():
        bank.problems.append(Problem(str(directory), 0, "quiz folder not found"))
        return bank
    seen: dict[str, Question] = {}
    for path in quiz_files(directory):
        part = parse_quiz_file(path, directory.parent, modules)
        bank.problems += part.problems
        bank.quizzes += part.quizzes
        for q in part.questions:
            _add_unique(bank, q, seen)
    bank.problems.sort()
    return bank


def parse_quiz_file(path: Path, root: Path | None = None, modules: dict[str, int] | None = None) -> QuizBank:
    """Parse one quiz file (paths in problems are relative to ``root`` when inside it)."""
    from llmcore_tui.core.content import read_source

    shown = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
    text, problems, bad_lines = read_source(path, shown)
    bank = parse_quiz(text, shown, module_days() if modules is None else modules)
    if bad_lines:  # a question holding undecodable bytes is skipped; every intact one loads
        lines = text.splitlines()
        headings = [i + 1 for i, line in enumerate(lines) if line.startswith("## ")] + [len(lines) + 1]
        spans = dict(zip(headings, headings[1:]))  # a question runs from its heading to the next one
        bank.questions = [q for q in bank.questions
                          if not any(q.line <= b < spans.get(q.line, q.line + 1) for b in bad_lines)]
    bank.problems[:0] = problems
    return bank




def parse_quiz(text: str, path: str, modules: dict[str, int]) -> QuizBank:
    """Parse quiz text; ``path`` is only used in problems."""
    bank = QuizBank()
    problems = bank.problems
    lines = text.splitlines()
    meta, body_start, meta_problems = parse_front_matter(lines, path)
    problems += meta_problems

    module, module_line = meta.get("module", ("", 1))
    if not module:
        problems.append(Problem(path, 1, "front matter has no 'module'"))
    elif module not in modules:
        problems.append(Problem(path, module_line, f"unknown module {module!r}; known: {', '.join(modules)}"))
        module = ""
    day_text, day_line = meta.get("day", ("", 1))
    day = int(day_text) if day_text.isdigit() else 0
    if not 1 <= day <= 14:
        problems.append(Problem(path, day_line, f"'day' must be a number from 1 to 14, got {day_text!r}"))
        day = 0
    elif module and modules[module] != day:
        problems.append(Problem(path, day_line, f"module {module!r} belongs to day {modules[module]}, not {day}"))
    titles = {lang: meta[f"title.{lang}"][0] for lang in LANGS if meta.get(f"title.{lang}", ("", 0))[0]}
    for lang in LANGS:
        if lang not in titles:
            problems.append(Problem(path, 1, f"front matter has no 'title.{lang}'"))
    threshold = PASS_THRESHOLD
    if "pass" in meta:
        value, line = meta["pass"]
        try:
            threshold = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
            if not 0 < threshold <= 1:
                raise ValueError
        except ValueError:
            problems.append(Problem(path, line, f"'pass' must be a share such as 0.8 or 80%, got {value!r}"))
            threshold = PASS_THRESHOLD
    for key, (_, line) in meta.items():
        if key not in ("module", "day", "title.en", "title.zh", "pass"):
            problems.append(Problem(path, line, f"unknown front matter key {key!r}"))
    if not module or not day:
        return bank  # without a module and day no question can be placed
    bank.quizzes.append(QuizInfo(module, day, titles, threshold, path))

    body = lines[body_start:]
    shape = outline(body, body_start)
    headings = shape.headings
    problems += [Problem(path, body_start + line0 + 1, message) for line0, message in shape.broken]
    skipped = {line0 for line0, _ in shape.broken}
    first = next((h[2] for h in headings if h[0] == 2), len(body))
    for level, title, line0 in headings:
        if line0 < first or level not in (2, 3):
            problems.append(Problem(path, body_start + line0 + 1, f"unexpected heading {title!r}: questions start with '## <id>'"))
    for j in range(first):
        if body[j].strip() and not any(h[2] == j for h in headings):
            problems.append(Problem(path, body_start + j + 1, "text before the first question"))
            break
    seen: dict[str, Question] = {}
    for index, (level, title, line0) in enumerate(headings):
        if level != 2:
            continue
        end = next((h[2] for h in headings[index + 1:] if h[0] <= 2), len(body))
        if any(line0 <= k < end for k in skipped):
            continue  # a broken fence inside: reported above
        sections = [h for h in headings[index + 1:] if h[0] == 3 and line0 < h[2] < end]
        q = QuestionParser(path, body_start, body, title, line0, end, sections, module, day, problems).parse()
        if q is not None:
            _add_unique(bank, q, seen)
    return bank


def _add_unique(bank: QuizBank, q: Question, seen: dict[str, Question]) -> None:
    """Add ``q`` unless its id is taken (then it is a problem and the first one wins)."""
    if q.id in seen:
        bank.problems.append(Problem(q.path, q.line, f"duplicate question id {q.id!r} (first at {seen[q.id].location})"))
    else:
        seen[q.id] = q
        bank.questions.append(q)
