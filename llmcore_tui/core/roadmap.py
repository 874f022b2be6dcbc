"""The 14-day plan: phases, modules, which days are unlocked and what makes a day done."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from llmcore_tui.i18n import N_


@dataclass(frozen=True)
class Phase:
    id: str
    title: dict[str, str]
    days: tuple[int, ...]


@dataclass(frozen=True)
class Day:
    number: int
    module: str
    phase: str
    title: dict[str, str]
    goal: dict[str, str]  # what the learner must understand by the end of the day


PHASES: tuple[Phase, ...] = (
    Phase("foundations", {"en": "RL foundations", "zh": "强化学习基础"}, (1, 2, 3, 4)),
    Phase("alignment", {"en": "Alignment", "zh": "对齐"}, (5, 6, 7, 8, 9)),
    Phase("systems", {"en": "Systems", "zh": "系统"}, (10, 11, 12, 13, 14)),
)


def _day(n: int, module: str, phase: str, en: str, zh: str, goal_en: str, goal_zh: str) -> Day:
    return Day(n, module, phase, {"en": en, "zh": zh}, {"en": goal_en, "zh": goal_zh})


DAYS: tuple[Day, ...] = (
    _day(1, "mdp", "foundations", "MDP", "马尔可夫决策过程",
         "The five-tuple (S, A, P, R, γ) as a model of a real problem; Bellman backups.",
         "用五元组 (S, A, P, R, γ) 建模真实问题；贝尔曼备份。"),
    _day(2, "td_learning", "foundations", "TD learning", "时序差分学习",
         "How the TD error drives value estimates to converge; Q-learning vs SARSA.",
         "TD 误差如何驱动价值估计收敛；Q-learning 与 SARSA 的区别。"),
    _day(3, "advantage", "foundations", "Advantage", "优势函数",
         "A(s,a) = Q(s,a) − V(s) and why it reduces gradient variance.",
         "A(s,a) = Q(s,a) − V(s)，以及它为何能降低梯度方差。"),
    _day(4, "gae", "foundations", "GAE", "广义优势估计",
         "How λ trades bias against variance.",
         "λ 如何在偏差与方差之间权衡。"),
    _day(5, "sft", "alignment", "SFT", "监督微调",
         "Cross-entropy on completions; convergence behaviour.",
         "只在回答部分计算交叉熵；收敛行为。"),
    _day(6, "dpo", "alignment", "DPO", "直接偏好优化",
         "The implicit reward that removes the explicit reward model.",
         "隐式奖励如何取代显式奖励模型。"),
    _day(7, "ppo", "alignment", "PPO", "近端策略优化",
         "Why ratio clipping keeps RL alignment stable; the four models.",
         "比率裁剪为何让强化学习对齐保持稳定；四个模型。"),
    _day(8, "grpo", "alignment", "GRPO", "组相对策略优化",
         "Group-relative reward normalisation, no critic.",
         "组内相对奖励归一化，无需价值网络。"),
    _day(9, "rlhf", "alignment", "RLHF", "基于人类反馈的强化学习",
         "The whole SFT → reward model → PPO data flow.",
         "SFT → 奖励模型 → PPO 的完整数据流。"),
    _day(10, "offline_rl", "systems", "Offline RL", "离线强化学习",
         "How CQL's conservative term suppresses out-of-distribution actions.",
         "CQL 的保守项如何压制分布外动作。"),
    _day(11, "vlm", "systems", "VLM", "视觉语言模型",
         "MLP projector vs Q-Former for modality alignment.",
         "模态对齐中 MLP 投影器与 Q-Former 的对比。"),
    _day(12, "parallelism", "systems", "Parallelism", "并行训练",
         "TP / PP / DP and their communication costs; pipeline bubbles.",
         "TP / PP / DP 及其通信开销；流水线气泡。"),
    _day(13, "reference", "systems", "Review", "复习",
         "KV cache, Flash Attention, GQA, ZeRO, LoRA, memory arithmetic.",
         "KV 缓存、Flash Attention、GQA、ZeRO、LoRA 与显存计算。"),
    _day(14, "brief", "systems", "Brief", "技术简报",
         "Export the personal technical brief.",
         "导出个人技术简报。"),
)

BY_NUMBER: dict[int, Day] = {d.number: d for d in DAYS}
# quizzes a day asks for besides its own module's: the review day also takes the course-wide review
EXTRA_QUIZZES: dict[int, tuple[str, ...]] = {13: ("review",)}
EXTRA_QUIZ_TITLES: dict[str, str] = {"review": N_("course-wide review")}  # shown through _()
EXTRA_QUIZ_DAYS: dict[str, int] = {quiz: day for day, quizzes in EXTRA_QUIZZES.items() for quiz in quizzes}
MODULE_DAYS: dict[str, int] = {d.module: d.number for d in DAYS}
LEARNING_MODULES: tuple[str, ...] = tuple(d.module for d in DAYS if d.number <= 13)


def phase_of(day: Day) -> Phase:
    return next(p for p in PHASES if p.id == day.phase)


def calendar_day(start: date, today: date) -> int:
    """Day N of the plan by the calendar: 1 on the start date, capped to 1..14."""
    return max(1, min(len(DAYS), (today - start).days + 1))


@dataclass(frozen=True)
class Criterion:
    name: str  # 'cards', 'reviews', 'lab', 'quiz', 'brief'
    met: bool
    detail: str
    subject: str = ""  # the lab or quiz it names


@dataclass(frozen=True)
class DayStatus:
    """A day's criteria decide it once: when all are met the day is recorded as completed
    (``completed_on``) and stays done, even when its old cards fall due again later."""

    day: Day
    unlocked: bool
    criteria: tuple[Criterion, ...] = field(default_factory=tuple)
    completed_on: str | None = None  # ISO study date on which the day was completed

    @property
    def done(self) -> bool:
        return self.unlocked and (self.completed_on is not None or all(c.met for c in self.criteria))

    @property
    def label(self) -> str:
        if self.done:
            return "done"
        return "open" if self.unlocked else "locked"


def unlocked_days(calendar: int, done: dict[int, bool]) -> set[int]:
    """Days up to today's calendar day are open; finishing a day also opens the next (work ahead)."""
    opened = set(range(1, calendar + 1))
    for n in range(1, len(DAYS)):
        if n in opened and done.get(n):
            opened.add(n + 1)
    return opened
