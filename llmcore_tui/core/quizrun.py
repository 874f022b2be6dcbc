"""Quiz sittings: draw a module's questions, grade each answer, store it, schedule misses.

A thin layer over :mod:`llmcore_tui.core.quiz` (pure: load, draw, grade) and the store:

    sitting = QuizSitting(course, "mdp", seed=7)      # or module=None: the day's module
    shown = sitting.current                           # a PresentedQuestion, or None when done
    grade = sitting.answer("B", now)                  # a quiz.Grade; sitting moves on if valid
    result = sitting.finish(now)                      # quiz.SittingResult, quiz_sittings row

Each valid answer is one transaction: a ``quiz_attempts`` row and, when the answer is not
fully right, an Again rating of the SRS item ``quiz:<question id>`` (introduced as a new item
of kind ``quiz`` the first time) so the question comes back in the Review queue. An answer
that cannot be read (``grade.valid`` False) stores nothing and the question stays current.
No UI here.
"""

from __future__ import annotations

import random
import uuid
from typing import TYPE_CHECKING, Any

from llmcore_tui.core import quiz
from llmcore_tui.core.content import ADVANCED_TAG
from llmcore_tui.core.quiz import Grade, PresentedQuestion, QuizBank, SittingResult
from llmcore_tui.core.srs import AGAIN, NewItem

if TYPE_CHECKING:
    from llmcore_tui.core.course import Course

QUIZ_ITEM_PREFIX = "quiz:"


def item_id(question_id: str) -> str:
    """The SRS item id of a quiz question."""
    return QUIZ_ITEM_PREFIX + question_id


def question_id_of(item: str) -> str | None:
    """``quiz:<id>`` -> ``<id>``; None for anything else (a card)."""
    return item[len(QUIZ_ITEM_PREFIX):] if item.startswith(QUIZ_ITEM_PREFIX) else None


def bank_of(course: "Course") -> QuizBank:
    """The course's quiz bank (loaded on first use and cached on the course)."""
    return course.quiz_bank


def default_module(course: "Course") -> str | None:
    """The day's module if it has a quiz, else the latest quiz module up to today, else the first."""
    modules = bank_of(course).modules
    if not modules:
        return None
    day = course.today().day
    if day.module in modules:
        return day.module
    bank = bank_of(course)
    earlier = [m for m in modules if (bank.info(m).day if bank.info(m) else 99) <= day.number]
    return earlier[-1] if earlier else modules[0]


def pass_threshold(course: "Course", module: str) -> float:
    """The learner's ``quiz_pass_threshold`` if they set one, else the quiz file's ``pass`` (80%)."""
    if course.store.get_setting("quiz_pass_threshold") is not None:
        return float(course.settings.get("quiz_pass_threshold"))
    return bank_of(course).pass_threshold(module)


def asked_questions(course: "Course", bank: QuizBank, module: str) -> list:
    """The questions a sitting of ``module`` asks: its core ones, and its ``advanced`` ones only once
    the learner has met every advanced card of the module (a day is passed without them)."""
    questions = bank.for_module(module)
    advanced_cards = len(course.summary.advanced.get(module, ()))
    if advanced_cards and course.advanced_introduced().get(module, 0) >= advanced_cards:
        return questions
    core = [q for q in questions if ADVANCED_TAG not in q.tags]
    return core or questions


class QuizSitting:
    """One sitting of a module's quiz. ``seed`` fixes the order and the drawn numbers."""

    def __init__(self, course: "Course", module: str | None = None, seed: int | None = None,
                 limit: int | None = None, now: float | None = None, shuffle: bool = True):
        self.course = course
        self.bank = bank_of(course)
        module = module or default_module(course)
        if module is None or not self.bank.for_module(module):
            raise ValueError(f"no quiz questions for module {module!r}; modules with quizzes: "
                             f"{', '.join(self.bank.modules) or 'none'}")
        self.module = module
        self.seed = random.randrange(2**31) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.questions: list[PresentedQuestion] = quiz.draw_sitting(
            asked_questions(course, self.bank, module), self.rng, limit, shuffle)
        info = self.bank.info(module)
        self.day = info.day if info else self.questions[0].question.day
        self.title = dict(info.title) if info else {"en": module, "zh": module}
        self.threshold = pass_threshold(course, module)
        self.id = uuid.uuid4().hex
        self.started_ts = course.now() if now is None else now
        self.grades: list[Grade] = []
        self.result: SittingResult | None = None

    # -- where we are ---------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.questions)

    @property
    def index(self) -> int:
        """0-based index of the current question (== total when every one is answered)."""
        return len(self.grades)

    @property
    def current(self) -> PresentedQuestion | None:
        return self.questions[self.index] if self.index < self.total else None

    @property
    def done(self) -> bool:
        return self.index >= self.total

    # -- acting ---------------------------------------------------------------------------
    def answer(self, given: Any, now: float | None = None) -> Grade:
        """Grade ``given`` for the current question (letters, indices, ``"2 GiB"``, ``"yes"``...).

        Valid: stored (and a miss scheduled) in one transaction, then the sitting moves on.
        Invalid: nothing stored; ``grade.feedback_for(lang)`` says why; same question again.
        """
        shown = self.current
        if shown is None:
            raise RuntimeError("the sitting has no question left to answer")
        if self.result is not None:
            raise RuntimeError("the sitting is finished")
        grade = quiz.grade(shown, given)
        if not grade.valid:
            return grade
        now = self.course.now() if now is None else now
        q = shown.question
        with self.course.store.transaction() as conn:
            conn.execute(
                "INSERT INTO quiz_attempts(sitting, question_id, module, day, answer, correct, score, attempted_ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self.id, q.id, q.module, q.day, grade.given, int(grade.correct), grade.score, now),
            )
            if not grade.correct:
                srs = self.course.srs
                key = item_id(q.id)
                srs.rate(key if srs.row(key) is not None else NewItem(key, "quiz", q.module, q.day), AGAIN, now)
        self.grades.append(grade)
        return grade

    def summary(self) -> SittingResult:
        """The score so far over every question drawn (unanswered ones count as wrong)."""
        total = self.total
        score = sum(g.score for g in self.grades) / total if total else 0.0
        correct = sum(1 for g in self.grades if g.correct)
        return SittingResult(score, correct, total, self.threshold,
                             bool(total) and score >= self.threshold - 1e-9)

    def finish(self, now: float | None = None) -> SittingResult:
        """Write the ``quiz_sittings`` row (once) and return the result."""
        if self.result is not None:
            return self.result
        now = self.course.now() if now is None else now
        result = self.summary()
        with self.course.store.transaction() as conn:
            conn.execute(
                "INSERT INTO quiz_sittings(id, module, day, started_ts, finished_ts, questions, correct, score, passed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.id, self.module, self.day, self.started_ts, now, result.total, result.correct,
                 result.score, int(result.passed)),
            )
        self.result = result
        return result


__all__ = ["QuizSitting", "QUIZ_ITEM_PREFIX", "item_id", "question_id_of", "bank_of", "default_module",
           "pass_threshold"]
