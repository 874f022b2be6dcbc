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

Where things live: ``model`` (the dataclasses and pass marks), ``grading`` (draw and grade),
``question_block`` (one ``## id`` block of a file) and ``parse`` (files, front matter, a bank).
"""

from llmcore_tui.core.quiz.grading import draw, draw_sitting, grade, present_with
from llmcore_tui.core.quiz.model import (
    CHOICE_KINDS,
    DEFAULT_TOLERANCE,
    KEYS,
    KINDS,
    MAX_CHOICES,
    PASS_THRESHOLD,
    REVIEW_DAY,
    REVIEW_MODULE,
    SECTIONS,
    Grade,
    PresentedQuestion,
    Question,
    QuizBank,
    QuizInfo,
    SittingResult,
    Tolerance,
    passed,
    summarize,
)
from llmcore_tui.core.quiz.parse import load_bank, module_days, parse_quiz, parse_quiz_file, quiz_files
from llmcore_tui.core.quiz.question_block import parse_param_spec

__all__ = [
    "CHOICE_KINDS", "DEFAULT_TOLERANCE", "KEYS", "KINDS", "MAX_CHOICES", "PASS_THRESHOLD", "REVIEW_DAY",
    "REVIEW_MODULE", "SECTIONS", "Grade", "PresentedQuestion", "Question", "QuizBank", "QuizInfo", "SittingResult",
    "Tolerance", "draw", "draw_sitting", "grade", "load_bank", "module_days", "parse_param_spec", "parse_quiz",
    "parse_quiz_file", "passed", "present_with", "quiz_files", "summarize",
]
