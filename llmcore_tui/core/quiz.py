"""Quizzes: load the Markdown files under ``quizzes/``, present questions and grade answers.

The format is documented in ``quizzes/README.md``. Like the card loader, every problem is a
:class:`~llmcore_tui.core.content.Problem` with file and line, and valid questions load
regardless. The API is pure (no UI, no store):

    bank = load_bank(Path("quizzes"))            # QuizBank: questions, problems, titles
    shown = draw(bank.by_id["reference-q-kv-gqa"], random.Random(seed))   # numbers drawn here
    grade(shown, "1.5 GiB")                      # Grade(correct, score, expected, explanation...)
    summarize(grades).passed                     # pass mark: PASS_THRESHOLD (80%) by default

Question kinds: ``single`` and ``multiple`` choice, ``numeric`` (with tolerance and units),
``parametric`` (numbers drawn at random, the answer computed by a calculator function from
:data:`llmcore_tui.core.calc.QUIZ_FUNCTIONS`) and ``recall`` (self-graded against a model answer).
"""

from __future__ import annotations

import inspect
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from llmcore_tui.core import calc
from llmcore_tui.core.content import CARD_ID, LANGS, Problem, check_section, outline, parse_front_matter

KINDS = ("single", "multiple", "numeric", "parametric", "recall")
CHOICE_KINDS = ("single", "multiple")
PASS_THRESHOLD = 0.8
REVIEW_MODULE = "review"
REVIEW_DAY = 13
DEFAULT_TOLERANCE = 0.01  # relative, for numeric and parametric questions
MAX_CHOICES = 8

_COMMON_SECTIONS = ("question.en", "question.zh", "explanation.en", "explanation.zh")
SECTIONS: dict[str, tuple[str, ...]] = {
    "single": _COMMON_SECTIONS + ("choices.en", "choices.zh"),
    "multiple": _COMMON_SECTIONS + ("choices.en", "choices.zh"),
    "numeric": _COMMON_SECTIONS,
    "parametric": _COMMON_SECTIONS,
    "recall": _COMMON_SECTIONS + ("answer.en", "answer.zh"),
}
KEYS: dict[str, tuple[str, ...]] = {
    "single": ("answer",),
    "multiple": ("answer",),
    "numeric": ("answer", "tolerance"),
    "parametric": ("function", "unit", "tolerance"),  # plus param.NAME
    "recall": (),
}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LETTERS = "ABCDEFGH"


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Tolerance:
    """Accept |given - expected| <= max(relative·|expected|, absolute) (absolute in base units)."""

    relative: float = DEFAULT_TOLERANCE
    absolute: float = 0.0

    def accepts(self, given: float, expected: float) -> bool:
        slack = max(self.relative * abs(expected), self.absolute) + 1e-12 * abs(expected)
        return abs(given - expected) <= slack

    def describe(self, unit: str, system: str) -> str:
        """``±1%``, ``±0.1 GiB`` or ``exact``."""
        if self.relative:
            return f"±{calc.format_number(self.relative * 100)}%"
        return f"±{_show_value(self.absolute, unit, system)}" if self.absolute else "exact"


@dataclass(frozen=True)
class Question:
    """One question as written in a quiz file. Texts are keyed by language (``en``, ``zh``).

    - choice kinds: ``choices[lang]`` and ``answer`` (0-based indices of the right choices)
    - numeric: ``value`` (in base units of ``system``), shown in ``unit``; ``tolerance``
    - parametric: ``function``, ``params`` (name -> the values to draw from), ``unit``,
      ``tolerance``; the texts hold ``{{name}}`` placeholders
    - recall: ``model_answer[lang]``
    """

    id: str
    kind: str
    module: str
    day: int
    text: dict[str, str]
    explanation: dict[str, str]
    path: str
    line: int
    tags: tuple[str, ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    answer: tuple[int, ...] = ()
    value: float | None = None
    unit: str = ""
    system: str = "count"
    tolerance: Tolerance = Tolerance()
    function: str = ""
    params: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    model_answer: dict[str, str] = field(default_factory=dict)

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class PresentedQuestion:
    """A question ready to show: parametric numbers drawn and filled into the texts.

    ``params`` holds the drawn values (store them to replay the same question);
    ``expected_value`` is in base units (bytes, count, FLOPs) for numeric kinds.
    """

    question: Question
    params: dict[str, Any]
    text: dict[str, str]
    explanation: dict[str, str]
    choices: dict[str, tuple[str, ...]]
    expected_value: float | None

    @property
    def id(self) -> str:
        return self.question.id

    @property
    def kind(self) -> str:
        return self.question.kind

    def text_for(self, lang: str) -> str:
        return self.text.get(lang) or self.text["en"]

    def choices_for(self, lang: str) -> tuple[str, ...]:
        return self.choices.get(lang) or self.choices.get("en", ())

    def explanation_for(self, lang: str) -> str:
        return self.explanation.get(lang) or self.explanation["en"]

    def model_answer_for(self, lang: str) -> str:
        """The model answer of a recall question (shown before the learner grades themselves)."""
        answers = self.question.model_answer
        return answers.get(lang) or answers.get("en", "")

    def expected_for(self, lang: str) -> str:
        """The right answer, for display: ``B: 10``, ``2 GiB``, or the model answer."""
        q = self.question
        if q.kind in CHOICE_KINDS:
            choices = self.choices_for(lang)
            return "; ".join(f"{_LETTERS[i]}: {choices[i]}" for i in q.answer)
        if q.kind == "recall":
            return self.model_answer_for(lang)
        assert self.expected_value is not None
        return _show_value(self.expected_value, q.unit, q.system)

    @property
    def unit_hint(self) -> str:
        """For numeric kinds: the unit a bare number is read in (``GiB``), else ``""``."""
        return self.question.unit if self.question.kind in ("numeric", "parametric") else ""

    @property
    def tolerance_hint(self) -> str:
        """For numeric kinds: how close an answer must be (``±1%``), else ``""``."""
        q = self.question
        return q.tolerance.describe(q.unit, q.system) if q.kind in ("numeric", "parametric") else ""


@dataclass(frozen=True)
class Grade:
    """The verdict on one answer.

    ``valid`` is False when the answer could not be read (an unknown letter, no number, a
    unit of the wrong kind): ``feedback`` says why and the UI may ask again without recording it.
    ``given`` is the answer normalised for storage (``"A,C"``, ``"2 GiB"``, ``"self:0.5"``).
    """

    question_id: str
    correct: bool
    score: float
    expected: str
    expected_zh: str
    explanation_en: str
    explanation_zh: str
    given: str = ""
    valid: bool = True
    feedback: dict[str, str] = field(default_factory=dict)

    def expected_for(self, lang: str) -> str:
        return self.expected_zh if lang == "zh" else self.expected

    def explanation_for(self, lang: str) -> str:
        return self.explanation_zh if lang == "zh" else self.explanation_en

    def feedback_for(self, lang: str) -> str:
        return self.feedback.get(lang) or self.feedback.get("en", "")


@dataclass(frozen=True)
class QuizInfo:
    """A quiz file's front matter."""

    module: str
    day: int
    title: dict[str, str]
    pass_threshold: float
    path: str


@dataclass
class QuizBank:
    """Every valid question, the quizzes they came from, and every problem found."""

    questions: list[Question] = field(default_factory=list)
    quizzes: list[QuizInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def by_id(self) -> dict[str, Question]:
        return {q.id: q for q in self.questions}

    @property
    def modules(self) -> list[str]:
        """Modules that have at least one question, in day order."""
        seen: dict[str, int] = {}
        for q in self.questions:
            seen.setdefault(q.module, q.day)
        return sorted(seen, key=lambda m: (seen[m], m == REVIEW_MODULE, m))

    def for_module(self, module: str) -> list[Question]:
        return [q for q in self.questions if q.module == module]

    def for_day(self, day: int) -> list[Question]:
        return [q for q in self.questions if q.day == day]

    def info(self, module: str) -> QuizInfo | None:
        return next((qi for qi in self.quizzes if qi.module == module), None)

    def pass_threshold(self, module: str) -> float:
        """The share of the score a sitting of ``module`` needs to pass (default 80%)."""
        info = self.info(module)
        return info.pass_threshold if info else PASS_THRESHOLD


@dataclass(frozen=True)
class SittingResult:
    """A sitting's outcome: mean score, number fully correct, and whether it passed."""

    score: float
    correct: int
    total: int
    threshold: float
    passed: bool


def summarize(grades: Sequence[Grade], threshold: float = PASS_THRESHOLD) -> SittingResult:
    """Score a sitting: the mean of the question scores; it passes at ``score >= threshold``.

    An empty sitting does not pass. Invalid (unread) answers count as wrong.
    """
    total = len(grades)
    score = sum(g.score for g in grades) / total if total else 0.0
    correct = sum(1 for g in grades if g.correct)
    return SittingResult(score, correct, total, threshold, bool(total) and score >= threshold - 1e-9)


def passed(grades: Sequence[Grade], threshold: float = PASS_THRESHOLD) -> bool:
    """Whether a sitting with these grades passes (mean score >= ``threshold``, default 80%)."""
    return summarize(grades, threshold).passed


# ---------------------------------------------------------------------------------------------
# Values and units


def _show_value(base_value: float, unit: str, system: str) -> str:
    factor = _factor(unit, system)
    number = calc.format_number(base_value / factor)
    if not unit:
        return number
    return f"{number}{unit}" if unit == "%" else f"{number} {unit}"


def _factor(unit: str, system: str) -> float:
    units = calc.UNIT_SYSTEMS[system]
    return units.get(unit.lower(), units.get(unit, 1.0))


def _read_quantity(text: str) -> tuple[float, str, str]:
    """``"2 GiB"`` -> (value in base units, unit as written, unit system). ValueError if unknown."""
    number, unit = calc.split_quantity(text)
    system = calc.unit_system(unit)
    if system is None:
        raise ValueError(f"unknown unit {unit!r}")
    return number * _factor(unit, system), unit, system


def _format_param(value: Any) -> str:
    if isinstance(value, calc.ModelConfig):
        return value.name
    if isinstance(value, float):
        big_or_tiny = value and not 1e-3 <= abs(value) < 1e5
        return calc.format_sci(value, 6) if big_or_tiny else calc.format_number(value, 6)
    return str(value)


def _parse_scalar(text: str) -> Any:
    text = text.strip()
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_param_spec(spec: str) -> tuple[Any, ...]:
    """The values a parameter is drawn from.

    ``a | b | c`` (a list), ``lo..hi`` or ``lo..hi step k`` (inclusive range; floats allowed),
    or one value. Raises ValueError for an empty or backwards range.
    """
    spec = spec.strip()
    m = re.fullmatch(r"(\S+)\s*\.\.\s*(\S+?)(?:\s+step\s+(\S+))?", spec)
    if m and "|" not in spec:
        lo, hi, step = (_parse_scalar(x) for x in (m[1], m[2], m[3] or "1"))
        if not all(isinstance(x, (int, float)) for x in (lo, hi, step)):
            raise ValueError(f"range {spec!r} must be numbers: lo..hi [step k]")
        if step <= 0 or hi < lo:
            raise ValueError(f"range {spec!r} is empty: need lo <= hi and step > 0")
        count = int((hi - lo) / step + 1e-9) + 1
        if count > 100_000:
            raise ValueError(f"range {spec!r} has {count} values; use a coarser step")
        if all(isinstance(x, int) for x in (lo, hi, step)):
            return tuple(range(lo, hi + 1, step))
        decimals = max(len(str(x).partition(".")[2]) for x in (lo, step))
        return tuple(round(lo + i * step, decimals) for i in range(count))
    values = tuple(_parse_scalar(v) for v in spec.split("|"))
    if any(v == "" for v in values):
        raise ValueError(f"parameter values {spec!r} have an empty entry")
    return values


def _call(function: str, params: dict[str, Any]) -> float:
    fn = calc.QUIZ_FUNCTIONS[function]
    args = {k: (calc.get_preset(v) if k == "model" else v) for k, v in params.items()
            if k in inspect.signature(fn).parameters}
    result = fn(**args)
    return float(result.total if isinstance(result, calc.Breakdown) else result)


def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), template)


# ---------------------------------------------------------------------------------------------
# Presenting and grading


def draw(question: Question, rng: random.Random) -> PresentedQuestion:
    """Present ``question``: for a parametric one, draw each parameter with ``rng`` (so a seed
    replays the same numbers) and compute the expected answer with the calculator."""
    if question.kind != "parametric":
        return PresentedQuestion(question, {}, dict(question.text), dict(question.explanation),
                                 dict(question.choices), question.value)
    params = {name: rng.choice(values) for name, values in question.params.items()}
    return present_with(question, params)


def present_with(question: Question, params: dict[str, Any]) -> PresentedQuestion:
    """Present a parametric ``question`` with given parameter values (e.g. stored ones)."""
    expected = _call(question.function, params)
    shown = {k: _format_param(v) for k, v in params.items()}
    shown["answer"] = _show_value(expected, question.unit, question.system)
    return PresentedQuestion(
        question, dict(params),
        {lang: _fill(t, shown) for lang, t in question.text.items()},
        {lang: _fill(t, shown) for lang, t in question.explanation.items()},
        {}, expected,
    )


_SELF = {
    "y": 1.0, "yes": 1.0, "right": 1.0, "correct": 1.0, "got it": 1.0, "对": 1.0, "会": 1.0,
    "p": 0.5, "partly": 0.5, "partial": 0.5, "half": 0.5, "部分": 0.5, "部分对": 0.5,
    "n": 0.0, "no": 0.0, "wrong": 0.0, "missed": 0.0, "错": 0.0, "不会": 0.0,
}


def _invalid(shown: PresentedQuestion, given: str, en: str, zh: str) -> Grade:
    return _grade(shown, False, 0.0, given, valid=False, feedback={"en": en, "zh": zh})


def _grade(shown: PresentedQuestion, correct: bool, score: float, given: str, valid: bool = True,
           feedback: dict[str, str] | None = None) -> Grade:
    return Grade(shown.id, correct, score, shown.expected_for("en"), shown.expected_for("zh"),
                 shown.explanation_for("en"), shown.explanation_for("zh"), given, valid, feedback or {})


def _read_choices(answer: Any, n: int) -> list[int]:
    """Letters (``"A, C"``, ``"ac"``) or 0-based indices -> sorted indices; ValueError if out of range."""
    if isinstance(answer, (list, tuple)) and all(isinstance(a, str) for a in answer):
        answer = ",".join(answer)
    if isinstance(answer, str):
        letters = [c for c in answer.upper() if not c.isspace() and c not in ",;/"]
        picks = []
        for c in letters:
            if c not in _LETTERS[:n]:
                raise ValueError(c)
            picks.append(_LETTERS.index(c))
    else:
        picks = [int(i) for i in answer]
        for i in picks:
            if not 0 <= i < n:
                raise ValueError(str(i))
    return sorted(set(picks))


def grade(shown: PresentedQuestion, answer: Any) -> Grade:
    """Grade an answer to a presented question.

    - ``single``/``multiple``: letters (``"B"``, ``"A, C"``) or a sequence of 0-based indices.
      Multiple choice scores partial credit, (right picks - wrong picks) / right choices, at
      least 0; it is correct only when the picks are exactly the right set.
    - ``numeric``/``parametric``: text such as ``"2 GiB"``, ``"2048 MiB"``, ``"2.1e9 B"``; a bare
      number is read in the question's unit (for a percentage, a bare number up to 1 may also
      be a fraction: ``0.273`` for ``27.3%``); correct within the tolerance (default 1%).
    - ``recall``: the learner's own verdict: True/False, a score in [0, 1], or a word
      (``yes``/``partly``/``no``, ``对``/``部分``/``错``); correct only at score 1.
    """
    q = shown.question
    if q.kind in CHOICE_KINDS:
        n = len(shown.choices_for("en"))
        try:
            picks = _read_choices(answer, n)
        except (ValueError, TypeError) as exc:
            last = _LETTERS[n - 1]
            return _invalid(shown, str(answer), f"'{exc}' is not one of the choices A-{last}.",
                            f"“{exc}”不是选项 A–{last} 之一。")
        given = ",".join(_LETTERS[i] for i in picks)
        if not picks:
            return _invalid(shown, given, "Pick at least one choice.", "请至少选择一项。")
        if q.kind == "single" and len(picks) != 1:
            return _invalid(shown, given, "Pick exactly one choice.", "请只选择一项。")
        right = set(q.answer)
        hits = len(right & set(picks))
        score = max(0.0, (hits - (len(picks) - hits)) / len(right))
        return _grade(shown, set(picks) == right, score, given)
    if q.kind in ("numeric", "parametric"):
        text = str(answer).strip()
        try:
            value = calc.parse_quantity(text, q.system, q.unit)
        except ValueError:
            try:
                calc.split_quantity(text)
            except ValueError:
                return _invalid(shown, text, f"Could not read a number from {text!r}.", f"无法从“{text}”中读出数字。")
            if q.system == "count":
                return _invalid(shown, text, "Give a plain number (k, M, B for thousand, million, billion are fine).",
                                "请给出一个数（可用 k、M、B 或 万、亿）。")
            units = ", ".join(u for u in calc.UNIT_SYSTEMS[q.system] if u and u.isascii())
            return _invalid(shown, text, f"Give the answer in units of {q.system} ({units}).",
                            f"请用{_SYSTEM_ZH[q.system]}单位作答（{units}）。")
        assert shown.expected_value is not None
        ok = q.tolerance.accepts(value, shown.expected_value)
        if not ok and q.system == "percent" and not calc.split_quantity(text)[1] and abs(value) <= 1:
            ok = q.tolerance.accepts(value * 100, shown.expected_value)  # a fraction: 0.273 for 27.3%
        return _grade(shown, ok, 1.0 if ok else 0.0, text)
    # recall
    score = _self_score(answer)
    if score is None:
        return _invalid(shown, str(answer), "Say how you did: yes, partly or no.", "请自评：对、部分对或错。")
    return _grade(shown, score >= 1.0, score, f"self:{calc.format_number(score)}")


_SYSTEM_ZH = {"bytes": "字节", "flops": " FLOPs ", "percent": "百分比"}


def _self_score(answer: Any) -> float | None:
    if isinstance(answer, bool):
        return 1.0 if answer else 0.0
    if isinstance(answer, (int, float)):
        return float(answer) if 0 <= answer <= 1 else None
    key = str(answer).strip().lower()
    if key in _SELF:
        return _SELF[key]
    try:
        value = float(key)
    except ValueError:
        return None
    return value if 0 <= value <= 1 else None


def draw_sitting(questions: Iterable[Question], rng: random.Random, limit: int | None = None,
                 shuffle: bool = True) -> list[PresentedQuestion]:
    """Present a sitting: the questions (shuffled with ``rng`` unless ``shuffle=False``), at
    most ``limit`` of them, each drawn with the same ``rng``."""
    chosen = list(questions)
    if shuffle:
        rng.shuffle(chosen)
    if limit is not None:
        chosen = chosen[:limit]
    return [draw(q, rng) for q in chosen]


# ---------------------------------------------------------------------------------------------
# Loading and validation


def module_days() -> dict[str, int]:
    """Modules a quiz may belong to and their day: the roadmap's learning modules and ``review``."""
    from llmcore_tui.core import roadmap

    return {**{m: roadmap.MODULE_DAYS[m] for m in roadmap.LEARNING_MODULES}, REVIEW_MODULE: REVIEW_DAY}


def quiz_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.md") if p.name.lower() != "readme.md")


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


_BULLET = re.compile(r"[-*]\s+")
_META_KEY = re.compile(r"[a-z_]+(\.[A-Za-z_][A-Za-z0-9_]*)?")
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
        q = _QuestionParser(path, body_start, body, title, line0, end, sections, module, day, problems).parse()
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


class _QuestionParser:
    """Parses one ``## id`` block; records problems and returns None if the question is unusable."""

    def __init__(self, path: str, offset: int, lines: list[str], qid: str, start: int, end: int,
                 sections: list[tuple[int, str, int]], module: str, day: int, problems: list[Problem]):
        self.path, self.offset, self.lines, self.qid = path, offset, lines, qid
        self.start, self.end, self.sections = start, end, sections
        self.module, self.day, self.problems = module, day, problems
        self.ok = True

    def problem(self, line0: int, message: str) -> None:
        """Record a problem at zero-based body line ``line0``; the question is then dropped."""
        self.problems.append(Problem(self.path, self.offset + line0 + 1, f"question {self.qid}: {message}"))
        self.ok = False

    def parse(self) -> Question | None:
        if not CARD_ID.match(self.qid):
            self.problem(self.start, f"id must be lowercase letters, digits and '-'")
        meta = self._meta()
        kind, kind_line = meta.pop("kind", ("", self.start))
        if kind not in KINDS:
            self.problem(kind_line, f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}" if kind
                         else f"no 'kind' line (one of {', '.join(KINDS)})")
            return None
        tags = tuple(t.strip() for t in meta.pop("tags", ("", 0))[0].split(",") if t.strip())
        texts = self._sections(kind)
        allowed = KEYS[kind]
        for key, (_, line) in meta.items():
            if key not in allowed and not (kind == "parametric" and key.startswith("param.")):
                self.problem(line, f"key {key!r} does not belong to a {kind} question "
                                   f"(allowed: {', '.join(allowed + (('param.NAME',) if kind == 'parametric' else ())) or 'none'})")
        fields: dict[str, Any] = dict(
            id=self.qid, kind=kind, module=self.module, day=self.day, tags=tags, path=self.path,
            line=self.offset + self.start + 1,
            text={lang: texts.get(f"question.{lang}", "") for lang in LANGS},
            explanation={lang: texts.get(f"explanation.{lang}", "") for lang in LANGS},
        )
        if kind in CHOICE_KINDS:
            fields.update(self._choices(kind, meta, texts))
        elif kind == "numeric":
            fields.update(self._numeric(meta))
        elif kind == "parametric":
            fields.update(self._parametric(meta, fields["text"], fields["explanation"]))
        else:
            fields["model_answer"] = {lang: texts.get(f"answer.{lang}", "") for lang in LANGS}
        if kind != "parametric":
            for name, text in texts.items():
                m = _PLACEHOLDER.search(text)
                if m:
                    self.problem(self._section_line(name, m[0]), "'{{...}}' placeholders belong to parametric questions only")
        return Question(**fields) if self.ok else None

    # -- pieces ------------------------------------------------------------------------------

    def _meta(self) -> dict[str, tuple[str, int]]:
        meta: dict[str, tuple[str, int]] = {}
        stop = self.sections[0][2] if self.sections else self.end
        for j in range(self.start + 1, stop):
            line = self.lines[j].strip()
            if not line:
                continue
            key, sep, value = line.partition(":")
            key = key.strip()
            if not sep or not _META_KEY.fullmatch(key):
                self.problem(j, f"expected 'key: value' before the first section, got {line!r}")
                continue
            if key in meta:
                self.problem(j, f"key {key!r} given twice")
                continue
            meta[key] = (value.strip(), j)
        return meta

    def _section_line(self, name: str, needle: str = "") -> int:
        """The heading line of section ``name``, or with ``needle`` the first line in it holding it."""
        line0 = next((s[2] for s in self.sections if s[1] == name), self.start)
        if needle:
            end = next((s[2] for s in self.sections if s[2] > line0), self.end)
            return next((j for j in range(line0, end) if needle in self.lines[j]), line0)
        return line0

    def _sections(self, kind: str) -> dict[str, str]:
        wanted = SECTIONS[kind]
        texts: dict[str, str] = {}
        for k, (_, name, line0) in enumerate(self.sections):
            s_end = self.sections[k + 1][2] if k + 1 < len(self.sections) else self.end
            if name not in wanted:
                self.problem(line0, f"section {name!r} does not belong to a {kind} question; expected {', '.join(wanted)}")
                continue
            if name in texts:
                self.problem(line0, f"section {name!r} appears twice")
                continue
            raw = "\n".join(self.lines[line0 + 1:s_end])
            body = raw.strip()
            if not body:
                self.problem(line0, f"section {name!r} is empty")
            elif body.replace("\\$", "").count("$") % 2:
                self.problem(line0, f"unbalanced '$' in {name!r}")
            else:
                self.problems += check_section(self.path, self.offset + line0 + 2, raw, name, f"question {self.qid}")
            texts[name] = body
        missing = [s for s in wanted if s not in texts]
        if missing:
            self.problem(self.start, f"missing section(s) {', '.join(missing)}")
        return texts

    def _list_items(self, name: str, text: str) -> tuple[str, ...]:
        items: list[str] = []
        line0 = self._section_line(name)
        for j, raw in enumerate(text.splitlines()):
            bullet = _BULLET.match(raw)
            if bullet:
                items.append(raw[bullet.end():].strip())
            elif raw.strip() and items and raw.startswith((" ", "\t")):
                items[-1] += " " + raw.strip()
            elif raw.strip():
                self.problem(line0 + 1 + j, f"{name}: expected a list item '- ...', got {raw.strip()!r}")
        return tuple(items)

    def _choices(self, kind: str, meta: dict[str, tuple[str, int]], texts: dict[str, str]) -> dict[str, Any]:
        choices = {lang: self._list_items(f"choices.{lang}", texts.get(f"choices.{lang}", "")) for lang in LANGS}
        n = len(choices["en"])
        if "choices.en" in texts and not 2 <= n <= MAX_CHOICES:
            self.problem(self._section_line("choices.en"), f"needs 2 to {MAX_CHOICES} choices, has {n}")
        if "choices.zh" in texts and len(choices["zh"]) != n:
            self.problem(self._section_line("choices.zh"), f"choices.zh has {len(choices['zh'])} choices, choices.en has {n}")
        answer_text, line = meta.get("answer", ("", self.start))
        letters = [a.strip().upper() for a in answer_text.split(",") if a.strip()]
        answer: list[int] = []
        if not letters:
            self.problem(line, "no 'answer' line (the letter(s) of the right choice(s), e.g. 'answer: B')")
        for letter in letters:
            if len(letter) != 1 or letter not in _LETTERS[:max(n, 1)]:
                self.problem(line, f"answer {letter!r} is not a choice letter A-{_LETTERS[max(n, 1) - 1]}")
            elif _LETTERS.index(letter) in answer:
                self.problem(line, f"answer {letter!r} given twice")
            else:
                answer.append(_LETTERS.index(letter))
        if kind == "single" and len(letters) > 1:
            self.problem(line, f"a single-choice question has one answer, got {answer_text!r} (use kind: multiple)")
        return {"choices": choices, "answer": tuple(sorted(answer))}

    def _tolerance(self, meta: dict[str, tuple[str, int]], system: str, unit: str) -> Tolerance:
        if "tolerance" not in meta:
            return Tolerance()
        text, line = meta["tolerance"]
        try:
            if text.endswith("%"):
                rel = float(text[:-1]) / 100
                if rel < 0:
                    raise ValueError
                return Tolerance(relative=rel)
            value = calc.parse_quantity(text, system, unit)
            if value < 0:
                raise ValueError
            return Tolerance(relative=0.0, absolute=value)
        except ValueError:
            self.problem(line, f"tolerance {text!r} must be a percentage ('2%') or an amount in {system} ('0.1' or '0.1 {unit or 'unit'}')")
            return Tolerance()

    def _numeric(self, meta: dict[str, tuple[str, int]]) -> dict[str, Any]:
        text, line = meta.get("answer", ("", self.start))
        if not text:
            self.problem(line, "no 'answer' line (a number with an optional unit, e.g. 'answer: 2 GiB')")
            return {}
        try:
            value, unit, system = _read_quantity(text)
        except ValueError as exc:
            self.problem(line, f"answer {text!r}: {exc}")
            return {}
        return {"value": value, "unit": unit, "system": system, "tolerance": self._tolerance(meta, system, unit)}

    def _parametric(self, meta: dict[str, tuple[str, int]], text: dict[str, str],
                    explanation: dict[str, str]) -> dict[str, Any]:
        function, fline = meta.get("function", ("", self.start))
        if function not in calc.QUIZ_FUNCTIONS:
            self.problem(fline, (f"unknown function {function!r}" if function else "no 'function' line")
                         + f"; calculator functions: {', '.join(calc.QUIZ_FUNCTIONS)}")
            return {}
        unit, uline = meta.get("unit", ("", self.start))
        system = calc.unit_system(unit)
        if system is None:
            self.problem(uline, f"unknown unit {unit!r}")
            return {}
        signature = inspect.signature(calc.QUIZ_FUNCTIONS[function]).parameters
        params: dict[str, tuple[Any, ...]] = {}
        for key, (spec, line) in meta.items():
            if not key.startswith("param."):
                continue
            name = key[len("param."):]
            if name not in signature:
                self.problem(line, f"{function}() has no parameter {name!r} (it takes {', '.join(signature)})")
                continue
            try:
                params[name] = parse_param_spec(spec)
            except ValueError as exc:
                self.problem(line, str(exc))
                continue
            if name == "model":
                unknown = [v for v in params[name] if str(v).lower() not in map(str.lower, calc.PRESETS)]
                if unknown:
                    self.problem(line, f"unknown preset(s) {', '.join(map(str, unknown))}; presets: {', '.join(calc.PRESETS)}")
        required = [n for n, p in signature.items() if p.default is inspect.Parameter.empty]
        missing = [n for n in required if n not in params]
        if missing:
            self.problem(fline, f"{function}() needs param.{', param.'.join(missing)}")
        for lang in LANGS:
            for where, texts, extra in (("question", text, ()), ("explanation", explanation, ("answer",))):
                for m in _PLACEHOLDER.finditer(texts[lang]):
                    if m[1] not in params and m[1] not in extra:
                        self.problem(self._section_line(f"{where}.{lang}", m[0]), f"placeholder {m[0]} is not a parameter")
        if not self.ok:
            return {}
        for combo in ({n: v[0] for n, v in params.items()}, {n: v[-1] for n, v in params.items()}):
            try:
                value = _call(function, combo)
            except (ValueError, TypeError, KeyError) as exc:
                self.problem(fline, f"{function}({', '.join(f'{k}={v!r}' for k, v in combo.items())}) fails: {exc}")
                return {}
            if not value > 0:
                self.problem(fline, f"{function}() gives {value} for {combo}; answers must be positive")
                return {}
        return {"function": function, "params": params, "unit": unit, "system": system,
                "tolerance": self._tolerance(meta, system, unit)}
