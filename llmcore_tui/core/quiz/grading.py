"""Presenting and grading: draw a question's numbers, then mark an answer to it.

:func:`draw` fills a parametric question with parameters drawn from a seeded ``random.Random``
and computes its answer with a calculator function (:data:`llmcore_tui.core.calc.QUIZ_FUNCTIONS`);
:func:`grade` reads an answer (letters, a quantity with units, or a self-assessment) and
returns a :class:`~llmcore_tui.core.quiz.model.Grade`.
"""

from __future__ import annotations

import inspect
import random
from typing import Any, Iterable

from llmcore_tui.core import calc
from llmcore_tui.core.quiz.model import (
    CHOICE_KINDS,
    LETTERS,
    PLACEHOLDER,
    Grade,
    PresentedQuestion,
    Question,
    show_value,
)


def format_param(value: Any) -> str:
    """A drawn parameter as the question shows it: a preset's name, a float in short form."""
    if isinstance(value, calc.ModelConfig):
        return value.name
    if isinstance(value, float):
        big_or_tiny = value and not 1e-3 <= abs(value) < 1e5
        return calc.format_sci(value, 6) if big_or_tiny else calc.format_number(value, 6)
    return str(value)


def evaluate(function: str, params: dict[str, Any]) -> float:
    """The answer to a parametric question: calculator ``function`` on ``params`` (a ``model``
    parameter names a preset; parameters the function does not take are ignored)."""
    fn = calc.QUIZ_FUNCTIONS[function]
    args = {k: (calc.get_preset(v) if k == "model" else v) for k, v in params.items()
            if k in inspect.signature(fn).parameters}
    result = fn(**args)
    return float(result.total if isinstance(result, calc.Breakdown) else result)


def _fill(template: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), template)


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
    expected = evaluate(question.function, params)
    shown = {k: format_param(v) for k, v in params.items()}
    shown["answer"] = show_value(expected, question.unit, question.system)
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
            if c not in LETTERS[:n]:
                raise ValueError(c)
            picks.append(LETTERS.index(c))
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
            last = LETTERS[n - 1]
            return _invalid(shown, str(answer), f"'{exc}' is not one of the choices A-{last}.",
                            f"“{exc}”不是选项 A–{last} 之一。")
        given = ",".join(LETTERS[i] for i in picks)
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
