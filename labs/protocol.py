"""The lab protocol: what a lab says about itself, importable without torch.

A lab declares the figures its day is about as ``CHARTS``, a list of :class:`Chart`
at the top of its module. The runner sends them as the run's ``charts`` event, so the
Labs screen and the brief draw exactly those figures, for live and recorded runs alike.

A chart plots series a lab already emits: either metric series (``metric`` events, keyed
by name, paired by step) or two columns of one of its tables (``table=``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Chart:
    """One figure: ``y`` against ``x`` with optional log axes and reference lines.

    - ``y``: the plotted series (metric names, or column names when ``table`` is set);
      several names share the chart and get a legend.
    - ``x``: the x series; ``None`` means the metric's step.
    - ``reference``: series drawn as the formula/baseline the measured ones are read against
      (e.g. the bubble formula ``(p-1)/(m+p-1)`` beside the measured bubble).
    - ``look_for``: one line telling the learner what the figure shows when the algorithm works.
    """

    title: str
    y: tuple[str, ...]
    x: str | None = None
    table: str | None = None
    log_x: bool = False
    log_y: bool = False
    reference: tuple[str, ...] = field(default=())
    look_for: str = ""
    x_label: str = ""
    y_label: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.y, str) or isinstance(self.reference, str):
            raise TypeError(f"chart {self.title!r}: y and reference are tuples of series names")
        if not self.y:
            raise ValueError(f"chart {self.title!r}: no y series")

    @property
    def series(self) -> tuple[str, ...]:
        """Every series name the chart reads (x first when it has one)."""
        return ((self.x,) if self.x else ()) + self.y + self.reference

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["y"], data["reference"] = list(self.y), list(self.reference)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Chart":
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["y"] = tuple(kwargs.get("y") or ())
        kwargs["reference"] = tuple(kwargs.get("reference") or ())
        return cls(**kwargs)
