"""What a lab's toy run claims, stated once: the lab test asserts it, ``make robust`` measures it.

A lab test declares its headline properties as ``CLAIMS`` (and, if its run needs them, the
``--set`` assignments as ``TOY_SETTINGS``) at module level::

    CLAIMS = [
        Claim("reward gain, end - start", lambda r: r.h["reward_end"] - r.h["reward_start"], ">", 0.05),
        Claim("tiled vs naive max |diff|", "max_abs_diff", "<", 1e-5, null=None),
    ]

and checks them with ``check_claims(CLAIMS, LabResult.of(events))``, which also fails when the lab
declares no ``CHARTS`` or a chart reads a series the run never emitted. ``benchmarks/robust.py``
runs the same toy over seeds 0-2 and 1-2 torch threads and reports, per claim, the worst value
and its margin to the threshold. The rule the thresholds are set by: the worst grid value clears
the threshold by at least a quarter of the effect, where the effect is the median's distance
from ``null`` (the value a run without the effect would give). A tolerance claim
(``null=None``) measures its effect as the threshold itself: the worst run must sit at most
three quarters of the way to it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence, Union

from labs.protocol import LiveRun, decode

MARGIN_FRACTION = 0.25


@dataclass
class LabResult:
    """One run's events, decoded by ``labs.protocol`` for claims: headline, config, tables as lists of
    row dicts, metric series, and the whole :class:`~labs.protocol.LiveRun` (its charts included)."""

    headline: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    live: LiveRun = field(default_factory=LiveRun)

    @property
    def h(self) -> dict[str, Any]:
        return self.headline

    def column(self, table: str, name: str) -> list[Any]:
        return [row[name] for row in self.tables[table]]

    @classmethod
    def of(cls, events: Sequence[dict[str, Any]]) -> "LabResult":
        live = LiveRun()
        for event in events:
            live.apply(decode(event))
        return cls(headline=dict(live.headline or {}), config=dict(live.config),
                   tables={name: [dict(zip(t.columns, row)) for row in t.rows] for name, t in live.tables.items()},
                   metrics={key: [(step, v) for step, v in points if v is not None]
                            for key, points in live.series.items()},
                   live=live)


def chart_problems(result: LabResult) -> list[str]:
    """Why the run's declared charts could not be drawn from what it emitted (none: they can)."""
    if not result.live.charts:
        return ["the lab declares no CHARTS (labs/protocol.py: the figures its day is about)"]
    return [f"chart series never emitted: {name}" for name in result.live.missing_series()]


Measure = Union[str, Callable[[LabResult], float]]


@dataclass(frozen=True)
class Claim:
    name: str  # what is claimed, in words a reader of the robustness table understands
    measure: Measure  # a headline key, or a function of the run
    op: Literal[">", "<"]
    threshold: float
    null: float | None = 0.0  # the value without the effect; None for a tolerance

    def value(self, result: LabResult) -> float:
        raw = result.headline[self.measure] if isinstance(self.measure, str) else self.measure(result)
        return float(raw)

    def holds(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value > self.threshold if self.op == ">" else value < self.threshold

    def describe(self) -> str:
        return f"{self.name} {self.op} {self.threshold:g}"

    def spread(self, values: Sequence[float]) -> dict[str, Any]:
        """Min / median / max over a grid, the worst value's margin to the threshold, and the effect."""
        worst = min(values) if self.op == ">" else max(values)
        median = statistics.median(values)
        margin = worst - self.threshold if self.op == ">" else self.threshold - worst
        if self.null is None:
            effect = abs(self.threshold)
        else:
            effect = median - self.null if self.op == ">" else self.null - median
        ratio = margin / effect if effect > 0 else -math.inf
        return {"min": min(values), "median": median, "max": max(values), "worst": worst,
                "margin": margin, "effect": effect, "margin_over_effect": ratio,
                "all_hold": all(self.holds(v) for v in values),
                "clear": all(self.holds(v) for v in values) and ratio >= MARGIN_FRACTION}


def check_claims(claims: Sequence[Claim], result: LabResult) -> None:
    """Assert every claim on one run, and that its declared charts are drawn from series it really
    emitted; the message lists each failing claim with its value."""
    failures = chart_problems(result)
    for claim in claims:
        try:
            value = claim.value(result)
        except (KeyError, TypeError, ValueError) as exc:
            failures.append(f"{claim.describe()}: not measurable ({type(exc).__name__}: {exc})")
            continue
        if not claim.holds(value):
            failures.append(f"{claim.describe()}: got {value:.6g}")
    assert not failures, "lab claims failed:\n  " + "\n  ".join(failures)
