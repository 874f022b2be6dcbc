"""Reading recorded lab runs back: the runs, their metrics and tables, comparisons, and a whole run
as a :class:`~labs.protocol.LiveRun` (:func:`load_run`), the shape the Labs screen, the brief
and the CLI draw a live run in, so a recorded run is shown exactly like a running one.

Only reads (apart from :func:`~llmcore_tui.core.labrecorder.mark_stale`, run before listing, so a
run a killed app left ``running`` is never shown as running).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labs import protocol
from llmcore_tui.core.labrecorder import mark_stale
from llmcore_tui.core.store import Store

FINISHED = ("succeeded", "failed", "cancelled")

LabTable = protocol.Table  # a recorded table is the table the lab sent


def _loads(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _charts(raw: str | None) -> tuple[protocol.Chart, ...]:
    charts = []
    for data in _loads(raw) or []:
        try:
            charts.append(protocol.Chart.from_json(data))
        except (TypeError, ValueError):  # a chart this version cannot read is left out, not fatal
            continue
    return tuple(charts)


@dataclass(frozen=True)
class RunRecord:
    id: str
    lab: str
    day: int | None
    preset: str | None
    config: dict[str, Any]
    status: str
    started_ts: float
    ended_ts: float | None
    exit_code: int | None
    headline: dict[str, Any] | None
    error: str | None
    log_tail: str
    out_dir: str | None
    pid: int | None
    charts: tuple[protocol.Chart, ...] = ()

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "RunRecord":
        return cls(row["id"], row["lab"], row["day"], row["preset"], _loads(row["config_json"]) or {},
                   row["status"], row["started_ts"], row["ended_ts"], row["exit_code"],
                   _loads(row["headline_json"]), row["error"], row["log_tail"] or "", row["out_dir"], row["pid"],
                   _charts(row.get("charts_json")))

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_ts is None else self.ended_ts - self.started_ts


def list_runs(store: Store, lab: str | None = None, limit: int | None = None) -> list[RunRecord]:
    """Runs, newest first (stale 'running' rows are marked failed first)."""
    mark_stale(store)
    sql = "SELECT * FROM lab_runs" + (" WHERE lab = ?" if lab else "") + " ORDER BY started_ts DESC, rowid DESC"
    params: tuple = (lab,) if lab else ()
    if limit is not None:
        sql += " LIMIT ?"
        params += (int(limit),)
    return [RunRecord.from_row(r) for r in store.query(sql, params)]


def latest_runs(store: Store) -> dict[str, RunRecord]:
    """The newest run of each lab."""
    latest: dict[str, RunRecord] = {}
    for run in list_runs(store):
        latest.setdefault(run.lab, run)
    return latest


def get_run(store: Store, run_id: str) -> RunRecord | None:
    mark_stale(store)
    rows = store.query("SELECT * FROM lab_runs WHERE id = ?", (run_id,))
    return RunRecord.from_row(rows[0]) if rows else None


def find_run(store: Store, ref: str) -> RunRecord:
    """A run by id or by an unambiguous start of it; LookupError says what went wrong."""
    run = get_run(store, ref)
    if run is not None:
        return run
    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = store.query("SELECT id FROM lab_runs WHERE id LIKE ? ESCAPE '\\' ORDER BY started_ts DESC",
                       (escaped + "%",))
    if not rows:
        raise LookupError(f"no lab run {ref!r}; `llmcore-tui lab list` shows the latest runs")
    if len(rows) > 1:
        shown = ", ".join(r["id"] for r in rows[:5])
        raise LookupError(f"{ref!r} matches {len(rows)} runs ({shown}{', ...' if len(rows) > 5 else ''})")
    run = get_run(store, rows[0]["id"])
    assert run is not None
    return run


def run_metrics(store: Store, run_id: str) -> dict[str, list[tuple[int, float | None]]]:
    """Every metric of a run: ``{key: [(step, value), ...]}`` in step order (None: non-finite)."""
    series: dict[str, list[tuple[int, float | None]]] = {}
    for key, step, value in store.conn.execute(
            "SELECT key, step, value FROM lab_metrics WHERE run_id = ? ORDER BY key, step, rowid", (run_id,)):
        series.setdefault(key, []).append((step, value))
    return series


def run_tables(store: Store, run_id: str) -> list[protocol.Table]:
    return [protocol.Table(r["name"], [str(c) for c in _loads(r["columns_json"]) or []], _loads(r["rows_json"]) or [])
            for r in store.query("SELECT * FROM lab_tables WHERE run_id = ? ORDER BY rowid", (run_id,))]


def load_run(store: Store, run_id: str) -> protocol.LiveRun:
    """A recorded run as a :class:`~labs.protocol.LiveRun`: config, metric series, tables, headline,
    declared charts, log tail and error (LookupError when there is no such run)."""
    run = get_run(store, run_id)
    if run is None:
        raise LookupError(f"no lab run {run_id!r}")
    live = protocol.LiveRun(run.lab)
    live.started, live.config, live.charts = True, dict(run.config), run.charts
    live.series = run_metrics(store, run.id)
    live.tables = {table.name: table for table in run_tables(store, run.id)}
    live.headline = run.headline
    live.logs.extend(run.log_tail.splitlines())
    if run.error:
        live.error = protocol.Error(run.error)
    return live


# -- summaries and comparisons ---------------------------------------------------------------------

@dataclass(frozen=True)
class SeriesSummary:
    points: int
    first: float | None
    last: float | None
    low: float | None
    high: float | None


def summarize(series: Sequence[tuple[int, float | None]]) -> SeriesSummary:
    values = [v for _, v in series if v is not None]
    return SeriesSummary(len(series), values[0] if values else None, values[-1] if values else None,
                         min(values) if values else None, max(values) if values else None)


@dataclass(frozen=True)
class Comparison:
    runs: list[RunRecord]
    headline: dict[str, list[Any]]  # key -> one value per run (None where a run lacks it)
    config: dict[str, list[Any]]  # only the settings that differ between the runs
    final: dict[str, list[float | None]]  # the last value of each metric, per run


def compare(store: Store, run_ids: Sequence[str]) -> Comparison:
    """Headline numbers, differing settings and final metric values of several runs, side by side."""
    runs = []
    for run_id in run_ids:
        run = get_run(store, run_id)
        if run is None:
            raise LookupError(f"no lab run {run_id!r}")
        runs.append(run)
    headline: dict[str, list[Any]] = {}
    for key in _union(run.headline or {} for run in runs):
        headline[key] = [(run.headline or {}).get(key) for run in runs]
    config: dict[str, list[Any]] = {}
    for key in _union(run.config for run in runs):
        values = [run.config.get(key) for run in runs]
        if any(v != values[0] for v in values):
            config[key] = values
    finals = [{k: summarize(v).last for k, v in run_metrics(store, run.id).items()} for run in runs]
    final = {key: [f.get(key) for f in finals] for key in _union(finals)}
    return Comparison(runs, headline, config, final)


def _union(dicts: Any) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


_PREFIX_RANK = {"eval": 0, "charts": 1, "losses": 2}


def informative_keys(series: dict[str, Sequence[tuple[int, float | None]]], n: int | None = None) -> list[str]:
    """Metric keys worth a chart first: ones that change over several steps, eval/ and charts/
    before losses/ before the rest; constant or single-point series next, empty ones last."""
    def rank(key: str) -> tuple[int, int, str]:
        values = [v for _, v in series[key] if v is not None]
        moving = len(values) >= 2 and max(values) != min(values)
        return (0 if moving else 1 if values else 2, _PREFIX_RANK.get(key.split("/", 1)[0], 3), key)

    keys = sorted(series, key=rank)
    return keys if n is None else keys[:n]
