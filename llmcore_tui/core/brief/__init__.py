"""The personal technical brief: day 14's deliverable, built from what the learner did.

For each learning module (days 1-12 and the day-13 reference deck) the brief gives

- **key ideas**: every card's question and the first sentence of its answer (math as LaTeX);
- **measured mastery**: FSRS probability of recall today, reviews, lapses, quiz accuracy
  (:func:`llmcore_tui.core.stats.module_mastery`);
- **evidence from the labs**: the headline numbers and the most informative curves of the
  latest successful run of each of the module's labs (``lab_runs`` / ``lab_metrics``);

then the weakest cards, the topics to revisit and a 14-day timeline (reviews, new cards, quiz
answers and lab runs per study day). Whatever is missing is said, with the command that fixes
it ("no lab runs yet — run `llmcore-tui lab run mdp --toy`").

Two formats: Markdown (math kept as ``$LaTeX$``) and one self-contained HTML file: inline CSS,
charts as inline SVG drawn here, math as MathML when the optional ``latex2mathml`` package is
installed, else as Unicode (:mod:`llmcore_tui.core.mathtext`). No network, no scripts, no
external resources. The HTML is also well-formed XML.

:func:`write_brief` writes atomically (a temporary file in the same folder, then a rename),
never creates anything else, refuses a folder, and records ``brief_exported_ts`` in the
settings (the roadmap's day-14 criterion).

Pure Python: no textual, no torch; the statistics and the deck load on first use.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser
import math
import os
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmcore_tui.core import roadmap
from llmcore_tui.core.clock import day_bounds, study_date

if TYPE_CHECKING:
    from llmcore_tui.core.course import Course
    from llmcore_tui.core.labruns import RunRecord
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


# -- words --------------------------------------------------------------------------------------

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Personal technical brief — LLM post-training in 14 days",
        "generated": "Generated {when} ({zone}) · study day {day} of 14 · started {start}",
        "glance": "At a glance",
        "cards_line": "Cards: {introduced} of {total} introduced · {reviews} review{reviews_s}{split} · mean recall today {recall}",
        "reviews_split": " ({cards} of cards, {quiz} of missed quiz questions)",
        "quiz_line": "Quizzes: {answers} answers, mean score {accuracy} · {passed} of {quizzes} quizzes passed",
        "lab_line": "Labs: {labs_ok} of {labs} labs run successfully · {ok} of {runs} recorded runs succeeded",
        "days_line": "Roadmap: {done} of 14 days done",
        "no_reviews": "No reviews yet — open `llmcore-tui` and review today's cards.",
        "no_quiz": "No quiz answered yet — take a day's quiz in the app.",
        "no_labs": "No lab runs yet — run `llmcore-tui lab run mdp --toy`.",
        "mastery": "Mastery by module",
        "col_day": "Day", "col_module": "Module", "col_status": "Status", "col_cards": "Cards",
        "col_recall": "Recall today", "col_reviews": "Reviews", "col_lapses": "Lapses", "col_quiz": "Quiz",
        "col_lab": "Labs", "col_date": "Date", "col_new": "New cards", "col_runs": "Lab runs",
        "col_card": "Card", "col_difficulty": "Difficulty", "col_metric": "Metric", "col_value": "Value",
        "status_done": "done", "status_open": "open", "status_locked": "locked",
        "timeline": "Timeline: 14 days",
        "timeline_note": "Reviews, new cards, quiz answers (score/answers; a partly right answer counts in part) and lab runs per study day.",
        "later": "after day 14",
        "earlier": "before day 1",
        "future": "(ahead)",
        "today": "(today)",
        "weakest": "Weakest cards",
        "weakest_none": "No cards introduced yet: nothing to rank.",
        "weak_line": "recall {recall}, {lapses} lapse{lapses_s}, difficulty {difficulty}",
        "revisit": "Topics to revisit",
        "revisit_none": "Nothing stands out: every opened module is on track.",
        "revisit_tags": "Tags that recur among the weakest cards: {tags}.",
        "r_recall": "recall today {recall} (target {target})",
        "r_lapses": "{n} lapse{n_s}",
        "r_quiz": "quiz accuracy {accuracy}",
        "r_no_quiz": "no quiz answered",
        "r_unseen": "{n} of {total} cards not seen yet",
        "r_lab": "lab {lab} not run successfully",
        "modules": "Modules",
        "goal": "Goal",
        "mastery_head": "Mastery",
        "mastery_line": "{introduced}/{total} cards introduced · recall today {recall} · {reviews} review{reviews_s} · {lapses} lapse{lapses_s}",
        "quiz_acc": "quiz: {answers} answer{answers_s}, mean score {accuracy}",
        "extra_quiz": "{name} quiz: {answers} answer{answers_s}, mean score {accuracy}",
        "evidence": "Lab evidence",
        "ideas": "Key ideas",
        "no_cards_module": "no cards reviewed yet — review day {day}'s cards in `llmcore-tui`",
        "no_quiz_module": "no quiz answered yet — take the day-{day} quiz in the app",
        "no_lab_module": "no lab runs yet — run `{command}`",
        "lab_failed": "lab {lab}: {runs} run{runs_s}, none succeeded (latest {status}: {error}) — run `{command}`",
        "run_line": "run `{id}` · {status} {when} · took {took} · preset {preset} · {n} of {runs} runs succeeded",
        "curve_line": "{key}: {first} → {last} (min {low}, max {high}; {points} points{log})",
        "log_scale": ", log scale",
        "no_curves": "no curves recorded for this run",
        "no_headline": "no headline numbers recorded",
        "chart_timeline": "Reviews and quiz answers per study day; triangles mark lab runs",
        "chart_mastery": "Per module: cards introduced (grey), recall today (blue), quiz accuracy (orange)",
        "legend_reviews": "reviews", "legend_quiz": "quiz answers", "legend_labs": "lab runs",
        "legend_intro": "introduced", "legend_recall": "recall today", "legend_qacc": "quiz accuracy",
        "math_note": "Math is typeset as {how}.",
        "math_mathml": "MathML", "math_unicode": "Unicode text",
        "none": "—",
    },
    "zh": {
        "title": "个人技术简报 —— 14 天掌握大模型后训练",
        "generated": "生成于 {when}（{zone}）· 第 {day}/14 天 · 开始于 {start}",
        "glance": "概览",
        "cards_line": "卡片：已学 {introduced}/{total} 张 · 复习 {reviews} 次{split} · 今日平均记忆概率 {recall}",
        "reviews_split": "（卡片 {cards} 次，答错的测验题 {quiz} 次）",
        "quiz_line": "测验：作答 {answers} 次，平均得分 {accuracy} · 通过 {passed}/{quizzes} 个测验",
        "lab_line": "实验：{labs_ok}/{labs} 个实验已成功运行 · 记录的 {runs} 次运行中 {ok} 次成功",
        "days_line": "路线图：已完成 {done}/14 天",
        "no_reviews": "还没有复习记录 —— 打开 `llmcore-tui` 复习今天的卡片。",
        "no_quiz": "还没有作答任何测验 —— 在应用中完成某一天的测验。",
        "no_labs": "还没有实验运行记录 —— 运行 `llmcore-tui lab run mdp --toy`。",
        "mastery": "各模块掌握情况",
        "col_day": "天", "col_module": "模块", "col_status": "状态", "col_cards": "卡片",
        "col_recall": "今日记忆概率", "col_reviews": "复习", "col_lapses": "遗忘", "col_quiz": "测验",
        "col_lab": "实验", "col_date": "日期", "col_new": "新卡片", "col_runs": "实验运行",
        "col_card": "卡片", "col_difficulty": "难度", "col_metric": "指标", "col_value": "数值",
        "status_done": "已完成", "status_open": "进行中", "status_locked": "未解锁",
        "timeline": "时间线：14 天",
        "timeline_note": "每个学习日的复习次数、新卡片、测验作答（得分/作答数，部分正确按比例计分）与实验运行。",
        "later": "第 14 天之后",
        "earlier": "第 1 天之前",
        "future": "（未到）",
        "today": "（今天）",
        "weakest": "最薄弱的卡片",
        "weakest_none": "还没有学过卡片，无从排序。",
        "weak_line": "记忆概率 {recall}，遗忘 {lapses} 次，难度 {difficulty}",
        "revisit": "需要回顾的主题",
        "revisit_none": "没有明显短板：已解锁的模块都在正轨上。",
        "revisit_tags": "最薄弱卡片中反复出现的标签：{tags}。",
        "r_recall": "今日记忆概率 {recall}（目标 {target}）",
        "r_lapses": "遗忘 {n} 次",
        "r_quiz": "测验正确率 {accuracy}",
        "r_no_quiz": "尚未作答测验",
        "r_unseen": "{total} 张卡片中还有 {n} 张未学",
        "r_lab": "实验 {lab} 尚未成功运行",
        "modules": "各模块详情",
        "goal": "目标",
        "mastery_head": "掌握情况",
        "mastery_line": "已学 {introduced}/{total} 张卡片 · 今日记忆概率 {recall} · 复习 {reviews} 次 · 遗忘 {lapses} 次",
        "quiz_acc": "测验：作答 {answers} 次，平均得分 {accuracy}",
        "extra_quiz": "{name} 测验：作答 {answers} 次，平均得分 {accuracy}",
        "evidence": "实验证据",
        "ideas": "核心要点",
        "no_cards_module": "还没有复习本模块的卡片 —— 在 `llmcore-tui` 中复习第 {day} 天的卡片",
        "no_quiz_module": "还没有作答测验 —— 在应用中完成第 {day} 天的测验",
        "no_lab_module": "还没有实验运行记录 —— 运行 `{command}`",
        "lab_failed": "实验 {lab}：共 {runs} 次运行，均未成功（最近一次 {status}：{error}）—— 运行 `{command}`",
        "run_line": "运行 `{id}` · {status} {when} · 用时 {took} · 预设 {preset} · {runs} 次运行中 {n} 次成功",
        "curve_line": "{key}：{first} → {last}（最小 {low}，最大 {high}；{points} 个点{log}）",
        "log_scale": "，对数坐标",
        "no_curves": "这次运行没有记录曲线",
        "no_headline": "没有记录关键数值",
        "chart_timeline": "每个学习日的复习次数与测验作答；三角形表示实验运行",
        "chart_mastery": "各模块：已学卡片比例（灰）、今日记忆概率（蓝）、测验正确率（橙）",
        "legend_reviews": "复习", "legend_quiz": "测验作答", "legend_labs": "实验运行",
        "legend_intro": "已学比例", "legend_recall": "今日记忆概率", "legend_qacc": "测验正确率",
        "math_note": "公式以 {how} 排版。",
        "math_mathml": "MathML", "math_unicode": "Unicode 文本",
        "none": "—",
    },
}


def _t(lang: str, name: str, /, **values: Any) -> str:
    """The text ``name`` in ``lang`` filled with ``values``; ``{x_s}`` is "s" unless ``x`` is 1."""
    text = TEXT.get(lang, TEXT["en"]).get(name) or TEXT["en"][name]
    plurals = {f"{k}_s": "" if v == 1 else "s" for k, v in values.items() if isinstance(v, int)}
    return text.format(**values, **plurals) if values else text


def _pct(value: float | None, lang: str = "en") -> str:
    return _t(lang, "none") if value is None else f"{value:.0%}"


# -- the model ----------------------------------------------------------------------------------

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
    key: str
    points: tuple[tuple[int, float], ...]  # finite values only, subsampled to MAX_CURVE_POINTS
    count: int  # points recorded (finite or not)
    first: float | None
    last: float | None
    low: float | None
    high: float | None

    @property
    def log_scale(self) -> bool:
        """Plot on a log scale: every value positive, spanning three decades or more."""
        values = [v for _, v in self.points]
        return bool(values) and min(values) > 0 and max(values) / min(values) >= 1e3


@dataclass(frozen=True)
class LabEvidence:
    lab: str
    title: str
    runs: int  # runs recorded for this lab
    succeeded: int
    run: "RunRecord | None"  # the latest successful run (the evidence), if any
    latest: "RunRecord | None"  # the latest run of any status
    headline: tuple[tuple[str, Any], ...] = ()
    curves: tuple[Curve, ...] = ()

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


# -- building -----------------------------------------------------------------------------------

_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|vs|cf|etc|approx|resp|Fig|Eq|Sec)|\b[A-Z])\.$")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|[。！？]")
_MATH_SPLIT = re.compile(r"(\$\$.+?\$\$|(?<![\\$])\$(?!\$).+?(?<![\\$])\$(?!\$))", re.S)
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


def _join_lines(text: str) -> str:
    """One paragraph's lines as one line (no space between two CJK characters)."""
    out = ""
    for line in (ln.strip() for ln in text.splitlines()):
        if not line:
            continue
        if out and not (_CJK.match(out[-1]) and _CJK.match(line[0])):
            out += " "
        out += line
    return out


def short_text(text: str, limit: int = MAX_BACK_CHARS, least: int = MIN_BACK_CHARS) -> str:
    """The first sentence of the first paragraph (more sentences while it is shorter than
    ``least``), never cut inside ``$…$``; past ``limit`` it is cut at a space and ends with an
    ellipsis. Lengths are display widths: a CJK character counts two."""
    paragraph = _join_lines(re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0])
    math_spans = [m.span() for m in _MATH_SPLIT.finditer(paragraph)]
    width = [0]  # width[i]: display width of paragraph[:i]
    for ch in paragraph:
        width.append(width[-1] + (2 if _CJK.match(ch) else 1))

    def in_math(i: int) -> bool:
        return any(a < i < b for a, b in math_spans)

    for m in _SENTENCE_END.finditer(paragraph):
        end = m.end()
        if in_math(m.start()) or (m.group() == "." and _ABBREV.search(paragraph[:end])):
            continue
        if width[end] >= least or width[end] > limit:
            if width[end] <= limit:
                return paragraph[:end].strip()
            break
    if width[-1] <= limit:
        return paragraph.strip()
    room = max(i for i, w in enumerate(width) if w <= limit)
    breaks = [i for i in range(1, room + 1) if (paragraph[i - 1] in " ，；、" or _CJK.match(paragraph[i - 1]))
              and not in_math(i - 1)]
    cut = breaks[-1] if breaks else next((b for a, b in math_spans if a < room < b), room)
    return paragraph[:cut].rstrip(" ,;:，；：、") + " …"


def _series_curve(key: str, series: list[tuple[int, float | None]]) -> Curve:
    points = [(int(s), float(v)) for s, v in series if v is not None and math.isfinite(v)]
    values = [v for _, v in points]
    kept = points
    if len(points) > MAX_CURVE_POINTS:
        stride = len(points) / (MAX_CURVE_POINTS - 1)
        kept = [points[min(len(points) - 1, round(i * stride))] for i in range(MAX_CURVE_POINTS - 1)] + [points[-1]]
    return Curve(key, tuple(kept), len(series), values[0] if values else None, values[-1] if values else None,
                 min(values) if values else None, max(values) if values else None)


def pick_curves(series: dict[str, list[tuple[int, float | None]]], n: int = MAX_CURVES) -> list[str]:
    """The run's curves worth showing: series that move, in :func:`labruns.informative_keys`
    order (eval/ and charts/ first) but the longest first within a rank, one per metric group
    (the part before ``/``) while other groups are left."""
    from llmcore_tui.core.labruns import informative_keys

    order = {k: i for i, k in enumerate(informative_keys(series))}
    prefix_rank = {"eval": 0, "charts": 1, "losses": 2}
    moving = [k for k in series if len({v for _, v in series[k] if v is not None}) >= 2]
    moving.sort(key=lambda k: (prefix_rank.get(k.split("/", 1)[0], 3), -len(series[k]), order[k]))
    picked: list[str] = []
    groups: set[str] = set()
    for key in moving:
        group = key.split("/", 1)[0] if "/" in key else key
        if group not in groups:
            picked.append(key)
            groups.add(group)
    picked += [k for k in moving if k not in picked]
    return picked[:n]


def _lab_evidence(store: Any, lab: Any, runs: list["RunRecord"]) -> LabEvidence:
    from llmcore_tui.core import labruns

    ok = [r for r in runs if r.status == "succeeded"]
    chosen = ok[0] if ok else None
    headline: tuple[tuple[str, Any], ...] = ()
    curves: tuple[Curve, ...] = ()
    if chosen is not None:
        headline = tuple(list((chosen.headline or {}).items())[:MAX_HEADLINE])
        series = labruns.run_metrics(store, chosen.id)
        curves = tuple(_series_curve(k, series[k]) for k in pick_curves(series))
    return LabEvidence(lab.name, lab.title, len(runs), len(ok), chosen, runs[0] if runs else None, headline, curves)


def _timeline(course: "Course", start: date, today: date, runs: list["RunRecord"]) -> tuple[TimelineDay, ...]:
    """Study days 1-14 from ``start`` (and, when there was activity later, one row for all the
    days after day 14; when there was any before day 1 (a changed time zone or day start can
    move an early review there), one row for it first). Together the rows hold every review in
    effect, so the brief's total is their sum."""
    from llmcore_tui.core import stats

    hour, tz = course.settings.get("day_start_hour"), course.tz
    dates = [start + timedelta(days=i) for i in range(PLAN_DAYS)]
    bounds = [day_bounds(d, hour, tz) for d in dates]
    lo, end = bounds[0][0], bounds[-1][1]
    # the Stats screen's own count (valid reviews, same study-day bucketing), for days 1-14 and after
    reviews = stats.review_heatmap(course, PLAN_DAYS, dates[-1])
    later_days = max((today - dates[-1]).days, 0)
    later_reviews = sum(stats.review_heatmap(course, later_days, today).values()) if later_days else 0
    conn = course.store.conn
    first = conn.execute("SELECT min(reviewed_ts) FROM reviews").fetchone()[0]
    earlier_days = (start - study_date(first, hour, tz)).days if first is not None and first < lo else 0
    earlier_reviews = sum(stats.review_heatmap(course, earlier_days, start - timedelta(days=1)).values()) \
        if earlier_days > 0 else 0

    def bucket(ts: float) -> int | None:
        if ts < lo:
            return PLAN_DAYS + 1
        if ts >= end:
            return PLAN_DAYS
        for i, (a, b) in enumerate(bounds):
            if a <= ts < b:
                return i
        return None

    n = PLAN_DAYS + 2  # days 1-14, after day 14, before day 1
    new = [0] * n
    answers, sittings, passed = [0] * n, [0] * n, [0] * n
    scores = [0.0] * n
    labs: list[list[tuple[str, str]]] = [[] for _ in range(n)]
    for (ts,) in conn.execute("SELECT introduced_ts FROM srs_items WHERE kind = 'card' AND introduced_ts IS NOT NULL"):
        i = bucket(ts)
        if i is not None:
            new[i] += 1
    for ts, score in conn.execute("SELECT attempted_ts, score FROM quiz_attempts"):
        i = bucket(ts)
        if i is not None:
            answers[i] += 1
            scores[i] += float(score or 0.0)
    for ts, ok in conn.execute("SELECT coalesce(finished_ts, started_ts), passed FROM quiz_sittings "
                               "WHERE coalesce(finished_ts, started_ts) IS NOT NULL"):
        i = bucket(ts)
        if i is not None:
            sittings[i] += 1
            passed[i] += int(ok or 0)
    for run in sorted(runs, key=lambda r: r.started_ts):
        i = bucket(run.started_ts)
        if i is not None:
            labs[i].append((run.lab, run.status))
    days = [TimelineDay(i + 1, d, reviews.get(d, 0), new[i], answers[i], scores[i], sittings[i], passed[i],
                        tuple(labs[i]), today=d == today, future=d > today)
            for i, d in enumerate(dates)]
    later = TimelineDay(None, None, later_reviews, new[PLAN_DAYS], answers[PLAN_DAYS], scores[PLAN_DAYS],
                        sittings[PLAN_DAYS], passed[PLAN_DAYS], tuple(labs[PLAN_DAYS]))
    if not later.empty:
        days.append(later)
    earlier = TimelineDay(0, None, earlier_reviews, new[-1], answers[-1], scores[-1], sittings[-1], passed[-1],
                          tuple(labs[-1]))
    if not earlier.empty:
        days.insert(0, earlier)
    return tuple(days)


def _quiz_extras(course: "Course", mastery: list["ModuleMastery"]) -> dict[str, list[QuizExtra]]:
    """Quiz modules outside the roadmap (the mixed review), attached to the module of their day."""
    extras: dict[str, list[QuizExtra]] = {}
    known = set(roadmap.MODULE_DAYS)
    days = dict(course.store.conn.execute("SELECT module, max(day) FROM quiz_attempts GROUP BY module").fetchall())
    for m in mastery:
        if m.module in known or not m.quiz_attempts:
            continue
        day = roadmap.BY_NUMBER.get(int(days.get(m.module) or 13)) or roadmap.BY_NUMBER[13]
        extras.setdefault(day.module, []).append(QuizExtra(m.module, m.quiz_attempts, m.quiz_accuracy))
    return extras


def build_brief(course: "Course", lang: str = "en", now: float | None = None, weakest: int = WEAKEST) -> Brief:
    """Everything the brief shows, read from the course's store and deck."""
    from llmcore_tui.core import labruns, stats
    from labs.registry import labs_for_day

    if lang not in LANGS:
        raise BriefError(f"unknown language {lang!r}: expected en or zh")
    now = course.now() if now is None else now
    deck = course.deck
    by_id = deck.by_id
    mastery_list = stats.module_mastery(course, now)
    mastery = {m.module: m for m in mastery_list}
    extras = _quiz_extras(course, mastery_list)
    statuses = {s.day.number: s for s in course.day_statuses()}
    quiz_modules = course.quiz_modules()
    runs = labruns.list_runs(course.store)
    runs_by_lab: dict[str, list[labruns.RunRecord]] = {}
    for run in runs:  # newest first
        runs_by_lab.setdefault(run.lab, []).append(run)
    study = course.study_date(now)
    threshold = float(course.settings.get("quiz_pass_threshold"))

    modules: list[ModuleBrief] = []
    revisit: list[Revisit] = []
    for day in roadmap.DAYS:
        if day.module not in roadmap.LEARNING_MODULES:
            continue
        status = statuses.get(day.number)
        label = status.label if status else "locked"
        m = mastery.get(day.module)
        cards = deck.for_module(day.module)
        ideas = tuple(Idea(c.id, _join_lines(c.text("front", lang)), short_text(c.text("back", lang)), c.tags)
                      for c in cards)
        evidence = tuple(_lab_evidence(course.store, lab, runs_by_lab.get(lab.name, []))
                         for lab in labs_for_day(day.number))
        has_quiz = day.module in quiz_modules
        missing: list[str] = []
        if not (m and m.introduced):
            missing.append(_t(lang, "no_cards_module", day=day.number))
        if has_quiz and not (m and m.quiz_attempts):
            missing.append(_t(lang, "no_quiz_module", day=day.number))
        for ev in evidence:
            if ev.runs == 0:
                missing.append(_t(lang, "no_lab_module", command=ev.command))
            elif ev.run is None and ev.latest is not None:
                missing.append(_t(lang, "lab_failed", lab=ev.lab, runs=ev.runs, status=ev.latest.status,
                                  error=(ev.latest.error or "—").splitlines()[0][:120], command=ev.command))
        name = day.title[lang]
        title = deck.titles.get(day.module, {}).get(lang) or deck.titles.get(day.module, {}).get("en") or name
        brief = ModuleBrief(day, name, title, day.goal[lang], label, m, has_quiz, ideas, evidence,
                            tuple(extras.get(day.module, ())), tuple(missing))
        modules.append(brief)
        if label != "locked":
            reasons, score = _revisit_reasons(brief, threshold, lang)
            if reasons:
                revisit.append(Revisit(day.module, day.number, name, tuple(reasons), score))
    revisit.sort(key=lambda r: (-r.score, r.day))

    weak: list[WeakItem] = []
    for w in stats.weakest_cards(course, weakest, now):
        card = by_id.get(w.item_id)
        front = _join_lines(card.text("front", lang)) if card else w.item_id
        weak.append(WeakItem(w.item_id, w.module, roadmap.MODULE_DAYS.get(w.module, 0), front, w.retrievability,
                             w.lapses, w.difficulty, card.tags if card else ()))
    tags = Counter(t for w in weak for t in w.tags)
    weak_tags = tuple((t, n) for t, n in tags.most_common(8) if n >= 2)

    introduced = sum(mb.introduced for mb in modules)
    recall_sum = sum((mb.mastery.mean_retrievability * mb.mastery.introduced) for mb in modules if mb.mastery)
    answers = sum(m.quiz_attempts for m in mastery_list)
    # the mean answer score over every quiz: module_mastery's quiz_accuracy weighted by answers
    score = sum((m.quiz_accuracy or 0.0) * m.quiz_attempts for m in mastery_list) / answers if answers else None
    timeline = _timeline(course, course.start_date, study, runs)
    passed_quizzes = {r[0] for r in course.store.conn.execute("SELECT DISTINCT module FROM quiz_sittings WHERE passed = 1")}
    all_labs = [ev for mb in modules for ev in mb.labs]
    totals = Totals(
        cards=sum(course.summary.totals.get(mb.module, 0) for mb in modules),
        introduced=introduced,
        reviews=sum(d.reviews for d in timeline),
        card_reviews=sum(m.reviews for m in mastery_list),
        recall=recall_sum / introduced if introduced else None,
        quiz_answers=answers,
        quiz_score=score,
        quizzes=len(quiz_modules),
        quizzes_passed=len(passed_quizzes & quiz_modules),
        lab_runs=len(runs),
        lab_succeeded=sum(1 for r in runs if r.status == "succeeded"),
        labs=len(all_labs),
        labs_ok=sum(1 for ev in all_labs if ev.run is not None),
        days_done=days_done(statuses.values()),
    )
    notes = []
    if not introduced:
        notes.append(_t(lang, "no_reviews"))
    if not answers:
        notes.append(_t(lang, "no_quiz"))
    if not runs:
        notes.append(_t(lang, "no_labs"))
    tz = course.tz
    local = datetime.fromtimestamp(now, tz)
    return Brief(lang, now, local.strftime("%Y-%m-%d %H:%M"), local.tzname() or str(tz), course.start_date, study,
                 roadmap.calendar_day(course.start_date, study), totals, tuple(modules), tuple(weak),
                 tuple(revisit), weak_tags, timeline, tuple(notes), tz)


def days_done(statuses: Any) -> int:
    """Days of the roadmap done, as the brief counts them: the roadmap's own statuses, except
    that day 14 whose only unmet criterion is the export counts as done, because the brief
    being written *is* that export. So the first export (HTML or Markdown) and every later one
    say the same, instead of the first one saying 13 and the next 14."""
    done = 0
    for s in statuses:
        if s.done:
            done += 1
        elif s.day.module == "brief" and s.unlocked and all(c.met for c in s.criteria if c.name != "brief"):
            done += 1
    return done


def _revisit_reasons(mb: ModuleBrief, threshold: float, lang: str) -> tuple[list[str], float]:
    reasons: list[str] = []
    score = 0.0
    m = mb.mastery
    if m and m.introduced:
        if m.mean_retrievability < RECALL_TARGET:
            reasons.append(_t(lang, "r_recall", recall=_pct(m.mean_retrievability), target=_pct(RECALL_TARGET)))
            score += 2 * (RECALL_TARGET - m.mean_retrievability) * 10
        if m.lapses:
            reasons.append(_t(lang, "r_lapses", n=m.lapses))
            score += min(m.lapses, 10) * 0.5
    if m and m.quiz_accuracy is not None and m.quiz_accuracy < threshold:
        reasons.append(_t(lang, "r_quiz", accuracy=_pct(m.quiz_accuracy)))
        score += (threshold - m.quiz_accuracy) * 10
    total = m.cards_total if m else 0
    if total and (m.introduced if m else 0) < total:
        unseen = total - (m.introduced if m else 0)
        reasons.append(_t(lang, "r_unseen", n=unseen, total=total))
        score += unseen / total
    if mb.has_quiz and not (m and m.quiz_attempts):
        reasons.append(_t(lang, "r_no_quiz"))
        score += 0.5
    for ev in mb.labs:
        if ev.run is None:
            reasons.append(_t(lang, "r_lab", lab=ev.lab))
            score += 0.5
    return reasons, score


# -- shared formatting --------------------------------------------------------------------------

def _num(value: Any) -> str:
    from llmcore_tui.core.labruns import fmt_value

    return fmt_value(value)


def _when(ts: float | None, tz: Any) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M")


def _status_word(brief: Brief, status: str) -> str:
    return _t(brief.lang, f"status_{status}") if status in ("done", "open", "locked") else status


def _run_line(brief: Brief, ev: LabEvidence, tz: Any) -> str:
    from llmcore_tui.core.labruns import fmt_duration

    run = ev.run
    assert run is not None
    return _t(brief.lang, "run_line", id=run.id, status=run.status, when=_when(run.started_ts, tz),
              took=fmt_duration(run.duration_s), preset=run.preset or "—", n=ev.succeeded, runs=ev.runs)


def _curve_line(brief: Brief, c: Curve) -> str:
    return _t(brief.lang, "curve_line", key=c.key, first=_num(c.first), last=_num(c.last), low=_num(c.low),
              high=_num(c.high), points=c.count, log=_t(brief.lang, "log_scale") if c.log_scale else "")


def _module_name(brief: Brief, module: str) -> str:
    day = roadmap.BY_NUMBER.get(roadmap.MODULE_DAYS.get(module, 0))
    return day.title[brief.lang] if day else module


def _day_label(brief: Brief, d: TimelineDay) -> str:
    if d.number is None:
        return _t(brief.lang, "later")
    if d.number == 0:
        return _t(brief.lang, "earlier")
    return f"D{d.number}"


def _lab_cell(mb: ModuleBrief) -> str:
    if not mb.labs:
        return "—"
    return ", ".join(f"{ev.lab} {'✓' if ev.run else ('✗' if ev.runs else '–')}" for ev in mb.labs)


def _quiz_cell(brief: Brief, mb: ModuleBrief) -> str:
    m = mb.mastery
    if m and m.quiz_attempts:
        return f"{_pct(m.quiz_accuracy)} ({m.quiz_attempts})"
    return "—" if mb.has_quiz else ""


def _timeline_quiz(d: TimelineDay) -> str:
    return f"{_num(round(d.quiz_score, 2))}/{d.quiz_answers}" if d.quiz_answers else "—"


def _timeline_labs(d: TimelineDay) -> str:
    if not d.lab_runs:
        return "—"
    counts = Counter(d.lab_runs)
    return ", ".join(f"{lab} {status}" + (f" ×{n}" if n > 1 else "") for (lab, status), n in counts.items())


# -- Markdown -----------------------------------------------------------------------------------

_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 40, log: bool = False) -> str:
    if not values:
        return ""
    if log:
        values = [math.log10(v) for v in values]
    if len(values) > width:
        step = len(values) / width
        values = [values[min(len(values) - 1, int(i * step))] for i in range(width - 1)] + [values[-1]]
    lo, hi = min(values), max(values)
    if hi == lo:
        return _SPARK[3] * len(values)
    return "".join(_SPARK[min(7, int((v - lo) / (hi - lo) * 7.999))] for v in values)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# Everything the Markdown brief inserts from cards, quizzes, labs or the database goes through
# one of these three, so that no raw HTML, link or code span of theirs reaches the page:
_MD_ESCAPE = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]", "`": "\\`", "\\": "\\\\"}
_MD_UNSAFE_CODE = frozenset("<>&`\n")


def _md_plain(text: Any) -> str:
    """Data as literal text on one line: HTML-significant characters as entities; brackets,
    backticks and backslashes escaped, so no link, code span or escape of ours is started."""
    return "".join(_MD_ESCAPE.get(c, c) for c in " ".join(str(text).splitlines()))


def _md_code(text: Any) -> str:
    """Data as a code span when that is safe to show verbatim, else as escaped plain text."""
    text = str(text)
    return f"`{text}`" if text and not _MD_UNSAFE_CODE & set(text) else _md_plain(text)


def _md_text(text: Any) -> str:
    """Card Markdown (or one of our lines with data in it) on one line: code spans and $math$
    kept; outside them ``& < >`` become entities and brackets are escaped; inside math ``<``
    and ``>`` become ``\\lt`` and ``\\gt``; a code span holding ``< > &`` becomes plain text."""
    out: list[str] = []
    for chunk in _CODE_SPAN.split(" ".join(str(text).splitlines())):
        if chunk.startswith("`") and chunk.endswith("`") and len(chunk) > 1:
            out.append(_md_code(chunk[1:-1]))
            continue
        for part in _MATH_SPLIT.split(chunk):
            if _MATH_SPLIT.fullmatch(part):
                out.append(part.replace("<", "\\lt ").replace(">", "\\gt "))
            else:
                out.append("".join(_MD_ESCAPE.get(c, c) if c in "&<>[]" else c for c in part))
    return "".join(out)


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(brief: Brief) -> str:
    lang = brief.lang
    t = lambda name, **kw: _t(lang, name, **kw)  # noqa: E731
    tz = _tz_of(brief)
    tot = brief.totals
    out: list[str] = [f"# {t('title')}", "",
                      t("generated", when=brief.generated, zone=_md_plain(brief.zone), day=brief.calendar_day,
                        start=brief.start.isoformat()), ""]
    out += [f"## {t('glance')}", ""]
    out.append("- " + _cards_line(brief))
    out.append("- " + t("quiz_line", answers=tot.quiz_answers,
                        accuracy=_pct(tot.quiz_score),
                        passed=tot.quizzes_passed, quizzes=tot.quizzes))
    out.append("- " + t("lab_line", ok=tot.lab_succeeded, labs_ok=tot.labs_ok, labs=tot.labs, runs=tot.lab_runs))
    out.append("- " + t("days_line", done=tot.days_done))
    out += [f"- **{_md_text(note)}**" for note in brief.notes]
    out.append("")

    out += [f"## {t('timeline')}", "", t("timeline_note"), ""]
    peak = max([d.reviews for d in brief.timeline] + [1])
    rows = []
    for d in brief.timeline:
        label = _day_label(brief, d) + (" " + t("today") if d.today else "") + (" " + t("future") if d.future else "")
        bar = "█" * round(12 * d.reviews / peak) if d.reviews else ""
        rows.append([label, d.date.isoformat() if d.date else "—", f"{d.reviews} {bar}".strip(), str(d.new_cards),
                     _timeline_quiz(d), _md_plain(_timeline_labs(d))])
    out += _md_table([t("col_day"), t("col_date"), t("col_reviews"), t("col_new"), t("col_quiz"), t("col_runs")], rows)
    out.append("")

    out += [f"## {t('mastery')}", ""]
    rows = []
    for mb in brief.modules:
        m = mb.mastery
        rows.append([str(mb.day.number), _md_plain(mb.name), _md_plain(_status_word(brief, mb.status)),
                     f"{mb.introduced}/{m.cards_total if m else 0}", _pct(mb.recall),
                     str(m.reviews if m else 0), str(m.lapses if m else 0), _md_plain(_quiz_cell(brief, mb)),
                     _md_plain(_lab_cell(mb))])
    out += _md_table([t("col_day"), t("col_module"), t("col_status"), t("col_cards"), t("col_recall"),
                      t("col_reviews"), t("col_lapses"), t("col_quiz"), t("col_lab")], rows)
    out.append("")

    out += [f"## {t('weakest')}", ""]
    if not brief.weakest:
        out.append(t("weakest_none"))
    for i, w in enumerate(brief.weakest, 1):
        out.append(f"{i}. **{_md_text(w.front)}** ({_md_code(w.card_id)}, D{w.day} "
                   f"{_md_plain(_module_name(brief, w.module))}) — " + t(
            "weak_line", recall=_pct(w.retrievability), lapses=w.lapses, difficulty=f"{w.difficulty:.1f}"))
    out.append("")

    out += [f"## {t('revisit')}", ""]
    if not brief.revisit:
        out.append(t("revisit_none"))
    for r in brief.revisit:
        out.append(f"- **D{r.day} · {_md_plain(r.name)}**: " + "; ".join(_md_text(x) for x in r.reasons))
    if brief.weak_tags:
        out += ["", t("revisit_tags", tags=", ".join(f"{_md_code(tag)} ×{n}" for tag, n in brief.weak_tags))]
    out.append("")

    out += [f"## {t('modules')}", ""]
    for mb in brief.modules:
        out += [f"### {t('col_day')} {mb.day.number} · {_md_plain(mb.name)} — {_md_plain(mb.title)}", "",
                f"*{t('goal')}:* {_md_text(mb.goal)}", ""]
        out.append(f"**{t('mastery_head')}:** " + _mastery_text(brief, mb))
        out.append("")
        for line in mb.missing:
            out.append(f"- ⚠ {_md_text(line)}")
        if mb.missing:
            out.append("")
        if any(ev.run for ev in mb.labs):
            out += [f"**{t('evidence')}**", ""]
            for ev in mb.labs:
                if ev.run is None:
                    continue
                out.append(f"- {_md_code(ev.lab)} — {_md_plain(ev.title)}: " + _md_text(_run_line(brief, ev, tz)))
                if ev.headline:
                    out.append("")
                    out += ["  " + line for line in _md_table(
                        [t("col_metric"), t("col_value")], [[_md_code(k), _md_plain(_num(v))] for k, v in ev.headline])]
                    out.append("")
                else:
                    out.append(f"  - {t('no_headline')}")
                for c in ev.curves:
                    spark = sparkline([v for _, v in c.points], log=c.log_scale)
                    out.append(f"  - `{spark}` " + _md_text(_curve_line(brief, c)))
                if not ev.curves:
                    out.append(f"  - {t('no_curves')}")
            out.append("")
        out += [f"**{t('ideas')}**", ""]
        for idea in mb.ideas:
            out.append(f"- **{_md_text(idea.front)}** — {_md_text(idea.back)}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _cards_line(brief: Brief) -> str:
    tot = brief.totals
    split = _t(brief.lang, "reviews_split", cards=tot.card_reviews, quiz=tot.quiz_reviews) if tot.quiz_reviews else ""
    return _t(brief.lang, "cards_line", introduced=tot.introduced, total=tot.cards, reviews=tot.reviews, split=split,
              recall=_pct(tot.recall))


def _mastery_text(brief: Brief, mb: ModuleBrief) -> str:
    lang = brief.lang
    m = mb.mastery
    text = _t(lang, "mastery_line", introduced=mb.introduced, total=m.cards_total if m else 0,
              recall=_pct(mb.recall), reviews=m.reviews if m else 0, lapses=m.lapses if m else 0)
    if m and m.quiz_attempts:
        text += " · " + _t(lang, "quiz_acc", answers=m.quiz_attempts, accuracy=_pct(m.quiz_accuracy))
    for q in mb.extra_quizzes:
        text += " · " + _t(lang, "extra_quiz", name=q.module, answers=q.answers, accuracy=_pct(q.accuracy))
    return text


def _tz_of(brief: Brief) -> Any:
    from datetime import timezone

    return brief.tz or timezone.utc


# -- HTML ---------------------------------------------------------------------------------------

_CODE_SPAN = re.compile(r"(`[^`\n]+`)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def _mathml_converter():
    try:
        from latex2mathml.converter import convert
    except ImportError:
        return None
    return convert


# What latex2mathml may emit, and all the brief lets through: MathML presentation elements and
# their layout attributes. Anything else (an <img>, an event handler, a <script>) means the
# formula is shown as escaped Unicode text instead.
_MATHML_TAGS = frozenset(
    "math semantics mrow mi mo mn ms mtext mspace msub msup msubsup mfrac msqrt mroot mstyle merror mpadded "
    "mphantom mfenced menclose munder mover munderover mmultiscripts mprescripts none mtable mtr mtd".split())
_MATHML_ATTRS = frozenset(
    "xmlns display displaystyle scriptlevel mathvariant stretchy fence separator separators lspace rspace accent "
    "accentunder columnalign columnlines columnspacing rowalign rowlines rowspacing frame framespacing "
    "linethickness minsize maxsize movablelimits symmetric largeop form width height depth voffset notation "
    "open close align rowspan columnspan".split())
_MATHML_NS = "http://www.w3.org/1998/Math/MathML"
# latex2mathml copies the argument of \text and its kin into <mtext> unescaped: those characters
# travel through the conversion as private-use stand-ins and come back escaped.
_TEXT_COMMAND = re.compile(r"\\(?:text(?:rm|bf|it|sf|tt|up|normal)?|mbox|hbox|mathrm|operatorname)\s*\{")
_STAND_IN = {"&": "\ue000", "<": "\ue001", ">": "\ue002", '"': "\ue003"}
_STAND_OUT = {v: k for k, v in _STAND_IN.items()}


def _protect_text_args(latex: str) -> str:
    """``latex`` with ``& < > "`` inside text-command arguments replaced by stand-ins."""
    out: list[str] = []
    pos = 0
    while (m := _TEXT_COMMAND.search(latex, pos)) is not None:
        out.append(latex[pos:m.end()])
        depth, j = 1, m.end()
        while j < len(latex) and depth:
            depth += {"{": 1, "}": -1}.get(latex[j], 0) if latex[j - 1] != "\\" else 0
            j += 1
        out.append("".join(_STAND_IN.get(c, c) for c in latex[m.end():j]))
        pos = j
    out.append(latex[pos:])
    return "".join(out)


class _MathmlFilter(HTMLParser):
    """Re-serialises latex2mathml's output through an allow-list: known MathML elements with
    known attributes, balanced, one <math> root; every text node escaped anew. ``ok`` is False
    as soon as anything else shows up."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[str] = []
        self.roots = 0
        self.ok = True

    def _open(self, tag: str, attrs: list[tuple[str, str | None]], empty: bool) -> None:
        if tag not in _MATHML_TAGS or (not self.stack and (tag != "math" or self.roots)):
            self.ok = False
            return
        parts = [tag]
        for name, value in attrs:
            if name not in _MATHML_ATTRS or (name == "xmlns" and value != _MATHML_NS):
                self.ok = False
                return
            parts.append(f'{name}="{html.escape(value or "")}"')
        self.roots += tag == "math" and not self.stack
        self.out.append("<" + " ".join(parts) + ("/>" if empty else ">"))
        if not empty:
            self.stack.append(tag)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, True)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.ok = False
            return
        self.stack.pop()
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.stack:
            self.ok = self.ok and not data.strip()
            return
        self.out.append(html.escape("".join(_STAND_OUT.get(c, c) for c in data), quote=False))

    def handle_comment(self, data: str) -> None:
        self.ok = False

    def handle_decl(self, decl: str) -> None:
        self.ok = False

    def handle_pi(self, data: str) -> None:
        self.ok = False

    def unknown_decl(self, data: str) -> None:
        self.ok = False


def safe_mathml(markup: str) -> str | None:
    """``markup`` (latex2mathml's output) rebuilt from allowed MathML only; None when it holds
    anything else or is not one balanced <math> element."""
    parser = _MathmlFilter()
    parser.feed(markup)
    parser.close()
    if not parser.ok or parser.stack or parser.roots != 1:
        return None
    return "".join(parser.out)


def math_html(latex: str, display: bool = False, mathml: bool = True) -> str:
    """One formula as MathML (with latex2mathml, filtered through an allow-list), else as
    escaped Unicode text in a span."""
    convert = _mathml_converter() if mathml else None
    if convert is not None:
        try:
            out = safe_mathml(convert(_protect_text_args(latex), display="block" if display else "inline"))
            if out is not None and out.startswith("<math") and "<mi>\\</mi>" not in out:
                return out.replace("<math ", f"<math alttext=\"{html.escape(latex)}\" ", 1)
        except Exception:  # noqa: BLE001 - an unusual formula falls back to Unicode
            pass
    from llmcore_tui.core.mathtext import latex_to_unicode

    tag = "div" if display else "span"
    return f'<{tag} class="math" title="{html.escape(latex)}">{html.escape(latex_to_unicode(latex))}</{tag}>'


def inline_html(text: str, mathml: bool = True) -> str:
    """Card Markdown (one paragraph) as HTML: `code`, **bold**, *em*, $math$ and $$math$$."""
    out: list[str] = []
    for chunk in _CODE_SPAN.split(text):
        if not chunk:
            continue
        if chunk.startswith("`") and chunk.endswith("`") and len(chunk) > 1:
            out.append(f"<code>{html.escape(chunk[1:-1])}</code>")
            continue
        for part in _MATH_SPLIT.split(chunk):
            if not part:
                continue
            if part.startswith("$$") and part.endswith("$$") and len(part) > 4:
                out.append(math_html(part[2:-2].strip(), True, mathml))
            elif part.startswith("$") and part.endswith("$") and len(part) > 2:
                out.append(math_html(part[1:-1].strip(), False, mathml))
            else:
                escaped = html.escape(part, quote=False)
                escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
                escaped = _EM.sub(r"<em>\1</em>", escaped)
                out.append(escaped)
    return "".join(out)


def _e(text: Any) -> str:
    return html.escape(str(text))


def _fmt_tick(value: float) -> str:
    return _num(float(value))


def _tip(title: str) -> str:
    return f"<title>{_e(title)}</title>" if title else ""


class _Svg:
    """A tiny SVG writer: every chart is built from these few primitives."""

    def __init__(self, width: int, height: int, label: str, cls: str = "chart"):
        self.width, self.height = width, height
        self.parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="{cls}" width="{width}" height="{height}" '
                      f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}"><title>{_e(label)}</title>']

    def rect(self, x: float, y: float, w: float, h: float, cls: str, title: str = "") -> None:
        tip = _tip(title)
        self.parts.append(f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" '
                          f'height="{max(h, 0):.1f}">{tip}</rect>')

    def line(self, x1: float, y1: float, x2: float, y2: float, cls: str) -> None:
        self.parts.append(f'<line class="{cls}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>')

    def text(self, x: float, y: float, text: str, cls: str = "lbl", anchor: str = "start") -> None:
        self.parts.append(f'<text class="{cls}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{_e(text)}</text>')

    def path(self, points: list[tuple[float, float]], cls: str) -> None:
        d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
        self.parts.append(f'<path class="{cls}" d="{d}"/>')

    def circle(self, x: float, y: float, r: float, cls: str, title: str = "") -> None:
        tip = _tip(title)
        self.parts.append(f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}">{tip}</circle>')

    def triangle(self, x: float, y: float, size: float, cls: str, title: str = "") -> None:
        tip = _tip(title)
        self.parts.append(f'<polygon class="{cls}" points="{x:.1f},{y - size:.1f} {x - size:.1f},{y + size * 0.7:.1f} '
                          f'{x + size:.1f},{y + size * 0.7:.1f}">{tip}</polygon>')

    def legend(self, x: float, y: float, items: list[tuple[str, str]]) -> None:
        for cls, label in items:
            self.rect(x, y - 9, 10, 10, cls)
            self.text(x + 14, y, label)
            x += 24 + 7.5 * len(label) if label.isascii() else 24 + 13 * len(label)

    def __str__(self) -> str:
        return "".join(self.parts) + "</svg>"


def svg_timeline(brief: Brief) -> str:
    t = lambda name: _t(brief.lang, name)  # noqa: E731
    days = [d for d in brief.timeline if d.number]  # days 1-14 only
    width, height, left, top, bottom = 1000, 250, 44, 44, 40
    svg = _Svg(width, height, t("chart_timeline"), "chart wide")
    plot_h = height - top - bottom
    peak = max([d.reviews for d in days] + [d.quiz_answers for d in days] + [1])
    slot = (width - left - 10) / len(days)
    base = top + plot_h
    svg.line(left, base, width - 10, base, "axis")
    svg.line(left, top, left, base, "axis")
    svg.text(left - 6, base + 4, "0", "tick", "end")
    svg.text(left - 6, top + 4, str(peak), "tick", "end")
    svg.line(left, top, width - 10, top, "grid")
    for i, d in enumerate(days):
        x = left + i * slot
        if d.today:
            svg.rect(x + 1, top - 4, slot - 2, plot_h + 4, "today")
        bw = slot * 0.36
        h_r = plot_h * d.reviews / peak
        h_q = plot_h * d.quiz_answers / peak
        svg.rect(x + slot * 0.12, base - h_r, bw, h_r, "b-reviews", f"D{d.number}: {d.reviews} {t('legend_reviews')}")
        svg.rect(x + slot * 0.12 + bw, base - h_q, bw, h_q, "b-quiz",
                 f"D{d.number}: {_timeline_quiz(d)} {t('legend_quiz')}")
        if d.reviews:
            svg.text(x + slot * 0.12 + bw / 2, base - h_r - 3, str(d.reviews), "val", "middle")
        if d.lab_runs:
            ok = any(status == "succeeded" for _, status in d.lab_runs)
            svg.triangle(x + slot / 2, top - 12, 5, "m-lab" if ok else "m-labfail",
                         f"D{d.number}: {_timeline_labs(d)}")
            if len(d.lab_runs) > 1:
                svg.text(x + slot / 2 + 7, top - 8, f"×{len(d.lab_runs)}", "tick")
        svg.text(x + slot / 2, base + 15, f"D{d.number}", "tick" if not d.future else "tick dim", "middle")
        if d.date and (i == 0 or d.date.day == 1 or i == len(days) - 1):
            svg.text(x + slot / 2, base + 28, d.date.strftime("%m-%d"), "tick dim", "middle")
    svg.legend(left, 14, [("b-reviews", t("legend_reviews")), ("b-quiz", t("legend_quiz")),
                          ("m-lab", t("legend_labs"))])
    return str(svg)


def svg_mastery(brief: Brief) -> str:
    t = lambda name: _t(brief.lang, name)  # noqa: E731
    rows = brief.modules
    row_h, left, top, width = 26, 150, 30, 1000
    height = top + row_h * len(rows) + 24
    svg = _Svg(width, height, t("chart_mastery"), "chart wide")
    plot_w = width - left - 70
    for frac in (0.0, 0.5, 0.8, 1.0):
        x = left + plot_w * frac
        svg.line(x, top - 4, x, top + row_h * len(rows), "grid")
        svg.text(x, height - 8, f"{frac:.0%}", "tick", "middle")
    for i, mb in enumerate(rows):
        y = top + i * row_h
        m = mb.mastery
        total = m.cards_total if m else 0
        intro = mb.introduced / total if total else 0.0
        svg.text(left - 8, y + 16, f"D{mb.day.number} {mb.name}", "lbl", "end")
        svg.rect(left, y + 2, plot_w * intro, 5, "b-intro", f"{mb.introduced}/{total}")
        recall = mb.recall
        svg.rect(left, y + 8, plot_w * (recall or 0.0), 7, "b-reviews", f"{t('legend_recall')}: {_pct(recall)}")
        acc = m.quiz_accuracy if m else None
        svg.rect(left, y + 16, plot_w * (acc or 0.0), 6, "b-quiz", f"{t('legend_qacc')}: {_pct(acc)}")
        label = " / ".join([_pct(recall), _pct(acc)])
        svg.text(left + plot_w + 6, y + 16, label, "val")
    svg.legend(left, 14, [("b-intro", t("legend_intro")), ("b-reviews", t("legend_recall")),
                          ("b-quiz", t("legend_qacc"))])
    return str(svg)


def svg_curve(curve: Curve, width: int = 360, height: int = 170) -> str:
    svg = _Svg(width, height, curve.key)
    left, right, top, bottom = 58, 10, 20, 28
    pts = list(curve.points)
    log = curve.log_scale
    ys = [math.log10(v) for _, v in pts] if log else [v for _, v in pts]
    xs = [s for s, _ in pts]
    svg.text(left, 13, curve.key + (" (log)" if log else ""), "lbl")
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    if x1 == x0:
        x1 = x0 + 1
    pw, ph = width - left - right, height - top - bottom
    sx = lambda x: left + pw * (x - x0) / (x1 - x0)  # noqa: E731
    sy = lambda y: top + ph * (1 - (y - y0) / (y1 - y0))  # noqa: E731
    svg.line(left, top + ph, left + pw, top + ph, "axis")
    svg.line(left, top, left, top + ph, "axis")
    for y in (y0, y1):
        svg.line(left, sy(y), left + pw, sy(y), "grid")
        svg.text(left - 5, sy(y) + 4, _fmt_tick(10 ** y if log else y), "tick", "end")
    svg.text(left, top + ph + 16, str(x0), "tick", "middle")
    svg.text(left + pw, top + ph + 16, str(x1), "tick", "end")
    svg.path([(sx(x), sy(y)) for x, y in zip(xs, ys)], "curve")
    if len(pts) <= 30:
        for x, y, (_, v) in zip(xs, ys, pts):
            svg.circle(sx(x), sy(y), 2.2, "dot", f"{x}: {_num(v)}")
    return str(svg)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC",sans-serif;margin:0;
 background:#f6f7f9;color:#1d232b;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{border-bottom:2px solid #e3e7ec;padding-bottom:4px;margin-top:32px}
h3{margin:26px 0 6px}.meta{color:#5b6673}.note{background:#fff6e0;border-left:4px solid #e0a100;padding:6px 10px;
 margin:6px 0}.missing{color:#8a5a00}.missing::before{content:"⚠ "}
table{border-collapse:collapse;margin:8px 0;font-size:.92em}th,td{border:1px solid #dde2e8;padding:2px 8px;
 text-align:left;vertical-align:top}th{background:#f0f3f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.future td{color:#9aa4af}tr.today td{background:#eef5ff}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.9em;background:#f0f3f6;padding:0 3px;
 border-radius:3px}.math{font-family:"DejaVu Serif","Cambria Math",serif}div.math{margin:4px 0}
ul.ideas li{margin:3px 0}.runs{display:flex;flex-wrap:wrap;gap:8px}
.status-done{color:#1a7f37;font-weight:600}.status-open{color:#0b5cad}.status-locked{color:#9aa4af}
svg.chart{display:block;margin:8px 0;max-width:100%;height:auto;font-family:system-ui,"Noto Sans CJK SC",sans-serif}
svg.wide{width:100%}
svg .axis{stroke:#7a8590;stroke-width:1}svg .grid{stroke:#e3e7ec;stroke-width:1}
svg .lbl{font-size:12px;fill:#1d232b}svg .tick{font-size:10px;fill:#5b6673}svg .dim{fill:#a7b0ba}
svg .val{font-size:10px;fill:#1d232b}svg .b-reviews{fill:#3b7dd8}svg .b-quiz{fill:#f0962f}
svg .b-intro{fill:#b8c2cc}svg .today{fill:#eef5ff;stroke:#9cc1f0;stroke-dasharray:3 2}
svg .m-lab{fill:#2e9d58}svg .m-labfail{fill:#d1453b}svg .curve{fill:none;stroke:#3b7dd8;stroke-width:1.8}
svg .dot{fill:#3b7dd8}
.ev{border:1px solid #e3e7ec;border-radius:6px;padding:8px 12px;margin:8px 0}
"""


def render_html(brief: Brief, mathml: bool | None = None) -> str:
    """One self-contained HTML page (also well-formed XML). ``mathml``: None uses MathML when
    latex2mathml is installed; False forces Unicode math."""
    lang = brief.lang
    t = lambda name, **kw: _t(lang, name, **kw)  # noqa: E731
    use_mathml = (_mathml_converter() is not None) if mathml is None else (mathml and _mathml_converter() is not None)
    ih = lambda text: inline_html(text, use_mathml)  # noqa: E731
    tz = _tz_of(brief)
    tot = brief.totals
    out: list[str] = [
        "<!DOCTYPE html>",
        f'<html xmlns="http://www.w3.org/1999/xhtml" lang="{"zh-CN" if lang == "zh" else "en"}">',
        '<head><meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/>',
        f"<title>{_e(t('title'))}</title><style>{_CSS}</style></head>",
        "<body><main>",
        f"<h1>{_e(t('title'))}</h1>",
        f'<p class="meta">{_e(t("generated", when=brief.generated, zone=brief.zone, day=brief.calendar_day, start=brief.start.isoformat()))}</p>',
        f"<h2>{_e(t('glance'))}</h2><ul>",
        f"<li>{_e(_cards_line(brief))}</li>",
        "<li>" + _e(t("quiz_line", answers=tot.quiz_answers,
                      accuracy=_pct(tot.quiz_score),
                      passed=tot.quizzes_passed, quizzes=tot.quizzes)) + "</li>",
        f"<li>{_e(t('lab_line', ok=tot.lab_succeeded, labs_ok=tot.labs_ok, labs=tot.labs, runs=tot.lab_runs))}</li>",
        f"<li>{_e(t('days_line', done=tot.days_done))}</li></ul>",
    ]
    out += [f'<p class="note">{ih(note)}</p>' for note in brief.notes]

    out.append(f"<h2>{_e(t('timeline'))}</h2><p>{_e(t('timeline_note'))}</p>")
    out.append(svg_timeline(brief))
    out.append("<table><thead><tr>" + "".join(f"<th>{_e(t(k))}</th>" for k in (
        "col_day", "col_date", "col_reviews", "col_new", "col_quiz", "col_runs")) + "</tr></thead><tbody>")
    for d in brief.timeline:
        cls = "today" if d.today else "future" if d.future else ""
        out.append(f'<tr class="{cls}"><td>{_e(_day_label(brief, d))}</td>'
                   f'<td>{d.date.isoformat() if d.date else "—"}</td><td class="n">{d.reviews}</td>'
                   f'<td class="n">{d.new_cards}</td><td class="n">{_e(_timeline_quiz(d))}</td>'
                   f'<td>{_e(_timeline_labs(d))}</td></tr>')
    out.append("</tbody></table>")

    out.append(f"<h2>{_e(t('mastery'))}</h2>")
    out.append(svg_mastery(brief))
    out.append("<table><thead><tr>" + "".join(f"<th>{_e(t(k))}</th>" for k in (
        "col_day", "col_module", "col_status", "col_cards", "col_recall", "col_reviews", "col_lapses", "col_quiz",
        "col_lab")) + "</tr></thead><tbody>")
    for mb in brief.modules:
        m = mb.mastery
        out.append(
            f'<tr><td class="n">{mb.day.number}</td><td><a href="#m-{_e(mb.module)}">{_e(mb.name)}</a></td>'
            f'<td class="status-{_e(mb.status)}">{_e(_status_word(brief, mb.status))}</td>'
            f'<td class="n">{mb.introduced}/{m.cards_total if m else 0}</td><td class="n">{_pct(mb.recall)}</td>'
            f'<td class="n">{m.reviews if m else 0}</td><td class="n">{m.lapses if m else 0}</td>'
            f'<td class="n">{_e(_quiz_cell(brief, mb))}</td><td>{_e(_lab_cell(mb))}</td></tr>')
    out.append("</tbody></table>")

    out.append(f"<h2>{_e(t('weakest'))}</h2>")
    if not brief.weakest:
        out.append(f"<p>{_e(t('weakest_none'))}</p>")
    else:
        out.append("<table><thead><tr><th>#</th>" + "".join(f"<th>{_e(t(k))}</th>" for k in (
            "col_card", "col_module", "col_recall", "col_lapses", "col_difficulty")) + "</tr></thead><tbody>")
        for i, w in enumerate(brief.weakest, 1):
            out.append(f'<tr><td class="n">{i}</td><td>{ih(w.front)}<br/><code>{_e(w.card_id)}</code></td>'
                       f'<td>D{w.day} {_e(_module_name(brief, w.module))}</td><td class="n">{_pct(w.retrievability)}</td>'
                       f'<td class="n">{w.lapses}</td><td class="n">{w.difficulty:.1f}</td></tr>')
        out.append("</tbody></table>")

    out.append(f"<h2>{_e(t('revisit'))}</h2>")
    if not brief.revisit:
        out.append(f"<p>{_e(t('revisit_none'))}</p>")
    else:
        out.append("<ul>" + "".join(f"<li><strong>D{r.day} · {_e(r.name)}</strong>: {_e('; '.join(r.reasons))}</li>"
                                    for r in brief.revisit) + "</ul>")
    if brief.weak_tags:
        out.append("<p>" + ih(t("revisit_tags", tags=", ".join(f"`{tag}` ×{n}" for tag, n in brief.weak_tags))) + "</p>")

    out.append(f"<h2>{_e(t('modules'))}</h2>")
    for mb in brief.modules:
        out.append(f'<section id="m-{_e(mb.module)}"><h3>{_e(t("col_day"))} {mb.day.number} · {_e(mb.name)} — '
                   f'{_e(mb.title)}</h3>')
        out.append(f"<p><em>{_e(t('goal'))}:</em> {ih(mb.goal)}</p>")
        out.append(f"<p><strong>{_e(t('mastery_head'))}:</strong> {_e(_mastery_text(brief, mb))}</p>")
        if mb.missing:
            out.append("<ul>" + "".join(f'<li class="missing">{ih(line)}</li>' for line in mb.missing) + "</ul>")
        shown = [ev for ev in mb.labs if ev.run is not None]
        if shown:
            out.append(f"<p><strong>{_e(t('evidence'))}</strong></p>")
        for ev in shown:
            out.append(f'<div class="ev"><p><code>{_e(ev.lab)}</code> — {_e(ev.title)}<br/>'
                       f"{ih(_run_line(brief, ev, tz))}</p>")
            if ev.headline:
                out.append(f"<table><thead><tr><th>{_e(t('col_metric'))}</th><th>{_e(t('col_value'))}</th></tr>"
                           "</thead><tbody>" + "".join(
                               f'<tr><td><code>{_e(k)}</code></td><td class="n">{_e(_num(v))}</td></tr>'
                               for k, v in ev.headline) + "</tbody></table>")
            else:
                out.append(f"<p>{_e(t('no_headline'))}</p>")
            if ev.curves:
                out.append('<div class="runs">' + "".join(svg_curve(c) for c in ev.curves) + "</div>")
                out.append("<ul>" + "".join(f"<li>{_e(_curve_line(brief, c))}</li>" for c in ev.curves) + "</ul>")
            else:
                out.append(f"<p>{_e(t('no_curves'))}</p>")
            out.append("</div>")
        out.append(f"<p><strong>{_e(t('ideas'))}</strong></p><ul class=\"ideas\">")
        for idea in mb.ideas:
            out.append(f"<li><strong>{ih(idea.front)}</strong> — {ih(idea.back)}</li>")
        out.append("</ul></section>")
    out.append(f'<p class="meta">{_e(t("math_note", how=t("math_mathml") if use_mathml else t("math_unicode")))}</p>')
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def render(brief: Brief, fmt: str = "md") -> str:
    fmt = normalize_format(fmt)
    return render_html(brief) if fmt == "html" else render_markdown(brief)


# -- writing ------------------------------------------------------------------------------------

def normalize_format(fmt: str) -> str:
    """``md`` or ``html`` (``markdown`` and ``htm`` are accepted); BriefError otherwise."""
    key = (fmt or "").strip().lower()
    if key not in FORMATS:
        raise BriefError(f"unknown format {fmt!r}: expected md or html")
    return FORMATS[key]


def default_output(fmt: str) -> Path:
    return Path(f"brief.{normalize_format(fmt)}")


def check_target(path: Path | str) -> Path:
    """The file the brief may be written to; BriefError when it is a folder, when its folder is
    missing or not a folder, or when it cannot be written."""
    target = Path(path).expanduser()
    if str(path) == "" or target.name in ("", ".", ".."):
        raise BriefError(f"{path!s} is not a file name")
    if target.is_dir():
        raise BriefError(f"{target} is a folder; give a file name, e.g. {target / 'brief.md'}")
    folder = target.parent
    if not folder.exists():
        raise BriefError(f"cannot write {target}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise BriefError(f"cannot write {target}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BriefError(f"cannot write {target}: the folder {folder} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise BriefError(f"cannot write {target}: the file is read-only")
    return target


def atomic_write(target: Path, text: str) -> None:
    """Write ``text`` to a new file next to ``target``, then rename it over ``target``: the
    target is either the old file or the whole new one, and nothing else is left behind."""
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise BriefError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise BriefError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise


def write_brief(course: "Course", path: Path | str, fmt: str = "md", lang: str = "en",
                now: float | None = None) -> Brief:
    """Build the brief, write it to ``path`` atomically and record ``brief_exported_ts``.

    Raises :class:`BriefError` (nothing written, setting untouched) for a bad format or
    language, a folder, a missing or read-only folder; ``ReadOnlyStoreError`` (nothing written)
    when the database is read-only. The file and the setting are one step: the file is renamed
    into place inside the transaction that records the export, which rolls back if it fails.
    """
    fmt = normalize_format(fmt)
    if lang not in LANGS:
        raise BriefError(f"unknown language {lang!r}: expected en or zh")
    target = check_target(path)
    if course.store.readonly:
        from llmcore_tui.core.store import ReadOnlyStoreError

        raise ReadOnlyStoreError(course.store.readonly_message("the brief export") + " No file was written.")
    brief = build_brief(course, lang, now)
    text = render(brief, fmt)
    with course.store.transaction():
        course.store.set_setting(SETTING, brief.generated_ts)
        atomic_write(target, text)
    return brief


__all__ = [
    "Brief", "BriefError", "Curve", "Idea", "LabEvidence", "ModuleBrief", "Revisit", "TimelineDay", "Totals",
    "WeakItem", "build_brief", "render", "render_markdown", "render_html", "write_brief", "normalize_format",
    "default_output", "check_target", "atomic_write", "short_text", "sparkline", "svg_curve", "svg_mastery",
    "svg_timeline", "inline_html", "math_html", "SETTING",
]
