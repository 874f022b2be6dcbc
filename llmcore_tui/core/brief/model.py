"""What a brief is: typed records built once (:mod:`.build`) and read by both renderers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from llmcore_tui.core import roadmap

if TYPE_CHECKING:
    from llmcore_tui.core.labhistory import RunRecord
    from llmcore_tui.core.stats import ModuleMastery

FORMATS = {"md": "md", "markdown": "md", "html": "html", "htm": "html"}
LANGS = ("en", "zh")
SETTING = "brief_exported_ts"
PLAN_DAYS = 14
WEAKEST = 10
MAX_BACK_CHARS = 280  # the "short back": first sentence, cut at a word boundary past this
MIN_BACK_CHARS = 60  # ... or more sentences while it is shorter than this
MAX_HEADLINE = 10  # headline numbers shown per run
MAX_CURVES = 2  # curves shown per run
MAX_CURVE_POINTS = 240  # points kept per curve (evenly subsampled, the last one kept)
RECALL_TARGET = 0.85  # below this mean recall a module is listed to revisit
LAB_COMMAND = "llmcore-tui lab run {lab} --toy"


class BriefError(ValueError):
    """The brief cannot be written as asked; the message says why."""


@dataclass(frozen=True)
class Idea:
    """One card as a key idea: its question and the first sentence of its answer (Markdown with
    ``$LaTeX$``), in the brief's language."""

    card_id: str
    front: str
    back: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Curve:
    """One line of a run: (x, y) points, x the step unless a declared chart pairs it otherwise."""

    key: str
    points: tuple[tuple[float, float], ...]  # finite values only, subsampled to MAX_CURVE_POINTS
    count: int  # points recorded (finite or not)
    first: float | None
    last: float | None
    low: float | None
    high: float | None
    reference: bool = False  # a formula or baseline the measured lines are read against

    @property
    def log_scale(self) -> bool:
        """Plot on a log scale: every value positive, spanning three decades or more."""
        values = [v for _, v in self.points]
        return bool(values) and min(values) > 0 and max(values) / min(values) >= 1e3


@dataclass(frozen=True)
class Figure:
    """A chart the lab declared (``labs.protocol.Chart``) with the lines this run gave it."""

    title: str
    look_for: str
    x_label: str
    y_label: str
    log_x: bool
    log_y: bool
    lines: tuple[Curve, ...]

    @property
    def drawn(self) -> tuple[Curve, ...]:
        """The lines with at least one point."""
        return tuple(line for line in self.lines if line.points)


@dataclass(frozen=True)
class LabEvidence:
    lab: str
    title: str
    runs: int  # runs recorded for this lab
    succeeded: int
    run: "RunRecord | None"  # the latest successful run (the evidence), if any
    latest: "RunRecord | None"  # the latest run of any status
    headline: tuple[tuple[str, Any], ...] = ()
    curves: tuple[Curve, ...] = ()  # the most informative curves, for a run that declared no charts
    figures: tuple[Figure, ...] = ()  # the charts the lab declared

    @property
    def command(self) -> str:
        return LAB_COMMAND.format(lab=self.lab)


@dataclass(frozen=True)
class QuizExtra:
    """Quiz answers of a quiz module that is not a roadmap module (the day-13 mixed review)."""

    module: str
    answers: int
    accuracy: float | None


@dataclass(frozen=True)
class ModuleBrief:
    day: roadmap.Day
    name: str  # the roadmap's short title
    title: str  # the deck's full title
    goal: str
    status: str  # done / open / locked
    mastery: "ModuleMastery | None"
    has_quiz: bool
    ideas: tuple[Idea, ...] = ()
    labs: tuple[LabEvidence, ...] = ()
    extra_quizzes: tuple[QuizExtra, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.day.module

    @property
    def introduced(self) -> int:
        return self.mastery.introduced if self.mastery else 0

    @property
    def recall(self) -> float | None:
        return self.mastery.mean_retrievability if self.mastery and self.mastery.introduced else None


@dataclass(frozen=True)
class TimelineDay:
    number: int | None  # day of the plan (1-14); None: the days after day 14 together; 0: before day 1
    date: date | None
    reviews: int = 0
    new_cards: int = 0
    quiz_answers: int = 0
    quiz_score: float = 0.0  # sum of the answers' scores (a partly right answer counts in part)
    sittings: int = 0
    passed: int = 0
    lab_runs: tuple[tuple[str, str], ...] = ()  # (lab, status) in start order
    today: bool = False
    future: bool = False

    @property
    def empty(self) -> bool:
        return not (self.reviews or self.new_cards or self.quiz_answers or self.sittings or self.lab_runs)


@dataclass(frozen=True)
class WeakItem:
    card_id: str
    module: str
    day: int
    front: str
    retrievability: float
    lapses: int
    difficulty: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Revisit:
    module: str
    day: int
    name: str
    reasons: tuple[str, ...]
    score: float


@dataclass(frozen=True)
class Totals:
    cards: int
    introduced: int
    reviews: int  # ratings in effect, of cards and of missed quiz questions: the timeline's sum
    card_reviews: int  # of cards only: the mastery table's sum (stats.module_mastery)
    recall: float | None
    quiz_answers: int
    quiz_score: float | None  # mean answer score over all quizzes, as stats.module_mastery defines it
    quizzes: int  # modules with a quiz
    quizzes_passed: int
    lab_runs: int
    lab_succeeded: int
    labs: int
    labs_ok: int
    days_done: int  # the roadmap's done days, day 14 counted done by this brief (see days_done)

    @property
    def quiz_reviews(self) -> int:
        """Reviews of missed quiz questions (the SRS items a wrong answer creates)."""
        return self.reviews - self.card_reviews


@dataclass(frozen=True)
class Brief:
    lang: str
    generated_ts: float
    generated: str  # local time, for display
    zone: str
    start: date
    study_date: date
    calendar_day: int
    totals: Totals
    modules: tuple[ModuleBrief, ...]
    weakest: tuple[WeakItem, ...]
    revisit: tuple[Revisit, ...]
    weak_tags: tuple[tuple[str, int], ...]
    timeline: tuple[TimelineDay, ...]
    notes: tuple[str, ...] = ()  # what is missing overall
    tz: Any = field(default=None, compare=False)  # the course's zone, for times shown

