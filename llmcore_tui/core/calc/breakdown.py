"""Itemised results: a :class:`Breakdown` is a titled list of :class:`Item` (label, value, formula).

Every ``*_breakdown`` function of the calculator returns one, so the UI, the CLI and the
exported brief show the parts of an estimate and how each was computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmcore_tui.core.calc.units import format_bytes, format_count, format_flops, tidy


@dataclass(frozen=True)
class Item:
    """One line of a breakdown: what it is, its value, and the formula with the numbers put in."""

    label: str
    value: float
    formula: str = ""


@dataclass(frozen=True)
class Breakdown:
    """An itemised estimate. ``unit`` is ``"bytes"``, ``"params"`` or ``"FLOPs"``."""

    title: str
    unit: str
    items: tuple[Item, ...]
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        """The sum of the items."""
        return tidy(sum(item.value for item in self.items))

    def get(self, label: str) -> float:
        """The value of the item called ``label`` (KeyError if there is none)."""
        for item in self.items:
            if item.label == label:
                return item.value
        raise KeyError(label)

    def format(self, value: float) -> str:
        """``value`` in this breakdown's unit, for display."""
        if self.unit == "bytes":
            return format_bytes(value)
        if self.unit == "params":
            return format_count(value)
        return format_flops(value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: title, unit, items (label, value, formula), total and notes."""
        return {
            "title": self.title,
            "unit": self.unit,
            "items": [{"label": i.label, "value": tidy(i.value), "formula": i.formula} for i in self.items],
            "total": self.total,
            "notes": list(self.notes),
        }
