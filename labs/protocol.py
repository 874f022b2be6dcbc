"""The lab protocol: the one decoder of a lab's event stream, importable without torch.

A lab speaks in JSON lines (``labs/README.md``). This module is the only place that reads
them: :func:`parse` turns a line into a typed event (:func:`encode` is its inverse, what the
emitter writes), and :class:`LiveRun` folds events into what a run is so far — config,
progress, metric series, tables, logs, headline, error and the charts the lab declared. The
emitter (``labs._runtime``), the recorder (``core.labruns``), the Labs screen, the CLI reporter
and the lab tests all use it; values, durations and plain-text tables are formatted here too.

A lab declares the figures its day is about as ``CHARTS``, a list of :class:`Chart` at the
top of its module. The runner sends them as the run's ``charts`` event, so the Labs screen
and the brief draw exactly those figures, for live and recorded runs alike. A chart plots
series a lab already emits: metric series (keyed by name, paired by step) or two columns of
one of its tables (``table=``).
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence, Union


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


# -- events -------------------------------------------------------------------------------


class ProtocolError(ValueError):
    """A line that is not a well-formed event of this protocol."""


class NotAnEvent(ProtocolError):
    """A line that is no event at all (not JSON, not an object, no ``event`` kind), as opposed to
    an event whose fields are wrong: a lab that prints stray text, say."""


@dataclass(frozen=True)
class Start:
    lab: str
    config: dict[str, Any]
    total_steps: int | None


@dataclass(frozen=True)
class Metric:
    step: int
    values: dict[str, float | None]  # non-finite numbers arrive (and stay) as None


@dataclass(frozen=True)
class Progress:
    done: int
    total: int | None


@dataclass(frozen=True)
class Log:
    text: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[str]
    rows: list[list[Any]]

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] if index < len(row) else None for row in self.rows]


@dataclass(frozen=True)
class Charts:
    charts: tuple[Chart, ...]


@dataclass(frozen=True)
class Summary:
    headline: dict[str, Any]
    artifacts: list[str]


@dataclass(frozen=True)
class Error:
    message: str
    detail: str = ""


@dataclass(frozen=True)
class Other:
    """An event kind newer than this reader: passed on, never an error."""

    kind: str
    data: dict[str, Any]


Event = Union[Start, Metric, Progress, Log, Table, Charts, Summary, Error, Other]


def number(value: Any) -> float | None:
    """A metric value as kept: a float, None for a non-finite one; anything else is a protocol error."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    raise ProtocolError(f"metric value {value!r} is not a number")


def _int_or_none(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{what} {value!r} is not a number")
    return int(value)


def decode(data: dict[str, Any]) -> Event:
    """A decoded JSON object as a typed event; raises :class:`ProtocolError` when it is malformed."""
    kind = data.get("event")
    if not isinstance(kind, str):
        raise NotAnEvent("no 'event' kind")
    try:
        if kind == "start":
            config = data.get("config")
            return Start(str(data.get("lab", "")), dict(config) if isinstance(config, dict) else {},
                         _int_or_none(data.get("total_steps"), "total_steps"))
        if kind == "metric":
            values = data.get("values") or {}
            if not isinstance(values, dict):
                raise ProtocolError("metric values are not an object")
            return Metric(int(_int_or_none(data.get("step", 0), "step") or 0),
                          {str(k): number(v) for k, v in values.items()})
        if kind == "progress":
            return Progress(int(_int_or_none(data.get("done", 0), "done") or 0), _int_or_none(data.get("total"), "total"))
        if kind == "log":
            return Log(str(data.get("text", "")))
        if kind == "table":
            columns, rows = data.get("columns") or [], data.get("rows") or []
            if not isinstance(columns, list) or not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise ProtocolError("a table needs a list of columns and a list of rows")
            return Table(str(data["name"]), [str(c) for c in columns], [list(r) for r in rows])
        if kind == "charts":
            return Charts(tuple(Chart.from_json(c) for c in data.get("charts") or []))
        if kind == "summary":
            headline = data.get("headline")
            return Summary(dict(headline) if isinstance(headline, dict) else {},
                           [str(a) for a in data.get("artifacts") or []])
        if kind == "error":
            return Error(str(data.get("message") or "the lab reported an error"), str(data.get("detail") or ""))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"malformed {kind} event: {exc}") from exc
    return Other(kind, dict(data))


def parse(line: str) -> Event:
    """One line of a lab's stream as a typed event; :class:`ProtocolError` if it is not one."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise NotAnEvent("not JSON") from exc
    if not isinstance(data, dict):
        raise NotAnEvent("not a JSON object")
    return decode(data)


_KINDS: dict[type, str] = {Start: "start", Metric: "metric", Progress: "progress", Log: "log", Table: "table",
                           Charts: "charts", Summary: "summary", Error: "error"}


def encode(event: Event) -> dict[str, Any]:
    """The JSON object of ``event``: what :func:`decode` reads back (the emitter writes this)."""
    if isinstance(event, Other):
        return {**event.data, "event": event.kind}
    if isinstance(event, Charts):
        return {"event": "charts", "charts": [chart.to_json() for chart in event.charts]}
    return {"event": _KINDS[type(event)], **asdict(event)}


# -- a run as it unfolds --------------------------------------------------------------------

LOG_LINES_KEPT = 200


@dataclass(frozen=True)
class Line:
    """One drawn line of a chart: its label, the points, and whether it is a reference (formula)."""

    label: str
    xs: list[float]
    ys: list[float]
    reference: bool = False


class LiveRun:
    """Everything a run has said so far. Feed it events (or lines) in order; read it any time."""

    def __init__(self, lab: str = "") -> None:
        self.lab = lab
        self.started = False
        self.config: dict[str, Any] = {}
        self.total_steps: int | None = None
        self.done = 0
        self.series: dict[str, list[tuple[int, float | None]]] = {}
        self.tables: dict[str, Table] = {}
        self.logs: deque[str] = deque(maxlen=LOG_LINES_KEPT)
        self.charts: tuple[Chart, ...] = ()
        self.headline: dict[str, Any] | None = None
        self.artifacts: list[str] = []
        self.error: Error | None = None

    def feed(self, line: str) -> Event:
        event = parse(line)
        self.apply(event)
        return event

    def apply(self, event: Event) -> None:
        if isinstance(event, Start):
            self.started, self.config, self.total_steps = True, event.config, event.total_steps
            self.lab = event.lab or self.lab
        elif isinstance(event, Metric):
            for key, value in event.values.items():
                self.series.setdefault(key, []).append((event.step, value))
        elif isinstance(event, Progress):
            self.done = event.done
            if event.total is not None:
                self.total_steps = event.total
        elif isinstance(event, Log):
            self.logs.extend(event.text.splitlines() or [""])
        elif isinstance(event, Table):
            self.tables[event.name] = event  # the latest table of a name replaces the earlier one
        elif isinstance(event, Charts):
            self.charts = event.charts
        elif isinstance(event, Summary):
            self.headline, self.artifacts = event.headline, event.artifacts
        elif isinstance(event, Error):
            self.error = event

    def copy(self) -> "LiveRun":
        """A snapshot another thread can read while this one keeps being fed."""
        other = LiveRun(self.lab)
        other.__dict__.update(self.__dict__)
        other.config, other.headline = dict(self.config), dict(self.headline) if self.headline is not None else None
        other.series = {key: list(points) for key, points in self.series.items()}
        other.tables, other.artifacts = dict(self.tables), list(self.artifacts)
        other.logs = deque(self.logs, maxlen=LOG_LINES_KEPT)
        return other

    @property
    def succeeded(self) -> bool:
        return self.headline is not None and self.error is None

    def chart_lines(self, chart: Chart) -> list[Line]:
        """The points of each of ``chart``'s y and reference series, paired with its x.

        Metric series pair with ``chart.x`` by step (or use the step itself); table series use
        the table's rows. Points where x or y is missing or not finite are left out, and a log
        axis drops values that are not positive, so a drawn line never lies about its data.
        """
        lines = []
        for name in chart.y + chart.reference:
            xs, ys = self._points(chart, name)
            keep = [(x, y) for x, y in zip(xs, ys) if _drawable(x, chart.log_x) and _drawable(y, chart.log_y)]
            lines.append(Line(name, [float(x) for x, _ in keep], [float(y) for _, y in keep], name in chart.reference))
        return lines

    def _points(self, chart: Chart, name: str) -> tuple[list[Any], list[Any]]:
        if chart.table is not None:
            table = self.tables.get(chart.table)
            if table is None or name not in table.columns or (chart.x and chart.x not in table.columns):
                return [], []
            ys = table.column(name)
            xs = table.column(chart.x) if chart.x else list(range(len(ys)))
            return xs, ys
        points = self.series.get(name, [])
        if chart.x is None:
            return [s for s, _ in points], [v for _, v in points]
        x_at = dict(self.series.get(chart.x, []))
        paired = [(x_at[s], v) for s, v in points if s in x_at]
        return [x for x, _ in paired], [v for _, v in paired]

    def missing_series(self) -> list[str]:
        """Declared chart series this run never produced (a lab test asserts there are none)."""
        missing = []
        for chart in self.charts:
            for name in chart.series:
                if chart.table is not None:
                    table = self.tables.get(chart.table)
                    found = table is not None and name in table.columns
                else:
                    found = name in self.series
                if not found:
                    missing.append(f"{chart.title}: {chart.table + '.' if chart.table else ''}{name}")
        return missing


def _drawable(value: Any, log: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > 0 if log else True


# -- formatting -----------------------------------------------------------------------------


def fmt_value(value: Any) -> str:
    """A headline or table value for people: 4 significant digits, booleans lower-case, None as —."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(fmt_value(v) for v in value)
    return str(value)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def format_table(columns: Sequence[Any], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """Rows as aligned plain text under a header (a lab's terminal output, the CLI's tables)."""
    cells = [[fmt_value(c) for c in row] for row in rows]
    widths = [max([len(str(col))] + [len(r[i]) for r in cells if i < len(r)]) for i, col in enumerate(columns)]
    lines = [indent + "  ".join(str(c).ljust(w) for c, w in zip(columns, widths)).rstrip(),
             indent + "  ".join("-" * w for w in widths)]
    lines += [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)
