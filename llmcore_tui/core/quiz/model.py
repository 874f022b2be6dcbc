"""The quiz data model: questions as written, questions as shown, grades, banks and pass marks.

Everything here is a plain value: :class:`Question` (one ``## id`` block of a quiz file),
:class:`PresentedQuestion` (its numbers drawn and filled in), :class:`Grade` (the verdict on
one answer), :class:`QuizBank` (every question and problem of a folder) and
:class:`SittingResult` (a sitting's score against its pass mark). Answers with units are read
and shown through the calculator's unit systems (:mod:`llmcore_tui.core.calc`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from llmcore_tui.core import calc
from llmcore_tui.core.content import Problem

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
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
LETTERS = "ABCDEFGH"


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
        return f"±{show_value(self.absolute, unit, system)}" if self.absolute else "exact"


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
            return "; ".join(f"{LETTERS[i]}: {choices[i]}" for i in q.answer)
        if q.kind == "recall":
            return self.model_answer_for(lang)
        assert self.expected_value is not None
        return show_value(self.expected_value, q.unit, q.system)

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


def show_value(base_value: float, unit: str, system: str) -> str:
    """``base_value`` (bytes, count, FLOPs, percent) shown in ``unit``: ``2 GiB``, ``27.3%``."""
    factor = _factor(unit, system)
    number = calc.format_number(base_value / factor)
    if not unit:
        return number
    return f"{number}{unit}" if unit == "%" else f"{number} {unit}"


def _factor(unit: str, system: str) -> float:
    units = calc.UNIT_SYSTEMS[system]
    return units.get(unit.lower(), units.get(unit, 1.0))


def read_quantity(text: str) -> tuple[float, str, str]:
    """``"2 GiB"`` -> (value in base units, unit as written, unit system). ValueError if unknown."""
    number, unit = calc.split_quantity(text)
    system = calc.unit_system(unit)
    if system is None:
        raise ValueError(f"unknown unit {unit!r}")
    return number * _factor(unit, system), unit, system
