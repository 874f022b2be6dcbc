"""Writing a lab run into the progress store: its row, its metrics in small batches, its tables and
charts, and its end. Every write to ``lab_runs``, ``lab_metrics`` and ``lab_tables`` is here.

- ``lab_runs``: one row per run, inserted when the child starts (status ``running``, its pid),
  finished with ``succeeded`` / ``failed`` / ``cancelled``, the exit code, the headline, the
  charts the lab declared, a readable error and the last lines of its log and stderr;
- ``lab_metrics``: every metric, committed in small batches (every 0.5 s or 200 values), so a
  killed app loses at most one batch;
- ``lab_tables``: the tables a lab reports (the latest one of each name).

A :class:`RunRecorder` is used by one thread (the run's reader) on its own connection. It does
not decode anything: it is handed typed events (``labs.protocol``) and reads the run's
:class:`~labs.protocol.LiveRun` for the row. :func:`mark_stale` marks the rows that a killed app
left ``running``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labs import protocol
from llmcore_tui.core.store import Store, now_ts

FLUSH_SECONDS = 0.5  # metrics are committed at least this often ...
FLUSH_METRICS = 200  # ... or as soon as this many are waiting
INTERRUPTED = "interrupted: the app stopped while the lab ran"

# ids of the runs this process is writing now: mark_stale leaves them alone
_RECORDING: set[str] = set()
_RECORDING_LOCK = threading.Lock()


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


class RunRecorder:
    """The writer of one run. ``live`` is the run so far; ``log_tail`` its log and stderr tail, as text."""

    def __init__(self, writer: Store, run_id: str, live: protocol.LiveRun, log_tail: Callable[[str], str]):
        self.writer = writer
        self.run_id = run_id
        self.live = live
        self.log_tail = log_tail
        self._metrics: list[tuple[str, int, str, float | None]] = []
        self._tables: dict[str, protocol.Table] = {}
        self._row_dirty = False
        self.last_flush = time.monotonic()

    def insert(self, lab: str, day: int | None, preset: str, requested: dict[str, Any], out_dir: Path,
               pid: int) -> None:
        """The ``running`` row, before the caller hears of the run."""
        with self.writer.transaction() as conn:
            conn.execute(
                "INSERT INTO lab_runs(id, lab, day, preset, config_json, status, started_ts, out_dir, pid)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (self.run_id, lab, day, preset, json.dumps(requested), now_ts(), str(out_dir), pid),
            )
        with _RECORDING_LOCK:
            _RECORDING.add(self.run_id)

    def record(self, event: protocol.Event) -> None:
        """Take one event (already applied to ``live``); commit when a batch is full."""
        if isinstance(event, protocol.Metric):
            self._metrics.extend((self.run_id, event.step, key, value) for key, value in event.values.items())
            if len(self._metrics) >= FLUSH_METRICS:
                self.flush()
        elif isinstance(event, protocol.Table):
            self._tables[event.name] = event
        elif isinstance(event, (protocol.Start, protocol.Log, protocol.Summary, protocol.Charts)):
            self._row_dirty = True

    def _row(self) -> tuple[str | None, str | None, str | None]:
        live = self.live
        charts = [chart.to_json() for chart in live.charts] if live.charts else None
        return _dumps(live.config if live.started else None), _dumps(live.headline), _dumps(charts)

    def flush(self, final: bool = False) -> None:
        """Commit what is waiting. A busy database keeps the batch for the next flush, unless ``final``."""
        self.last_flush = time.monotonic()
        if not (self._metrics or self._tables or self._row_dirty or final):
            return
        try:
            with self.writer.transaction() as conn:
                if self._metrics:
                    conn.executemany("INSERT INTO lab_metrics(run_id, step, key, value) VALUES (?, ?, ?, ?)",
                                     self._metrics)
                for table in self._tables.values():
                    conn.execute("DELETE FROM lab_tables WHERE run_id = ? AND name = ?", (self.run_id, table.name))
                    conn.execute("INSERT INTO lab_tables(run_id, name, columns_json, rows_json) VALUES (?, ?, ?, ?)",
                                 (self.run_id, table.name, json.dumps(table.columns), json.dumps(table.rows)))
                if self._row_dirty:
                    config, headline, charts = self._row()
                    conn.execute(
                        "UPDATE lab_runs SET config_json = coalesce(?, config_json), headline_json = ?,"
                        " charts_json = coalesce(?, charts_json), log_tail = ? WHERE id = ?",
                        (config, headline, charts, self.log_tail(""), self.run_id),
                    )
        except sqlite3.OperationalError:
            if final:
                raise
            return
        self._metrics, self._tables, self._row_dirty = [], {}, False

    def finish(self, status: str, exit_code: int, error: str | None, detail: str = "") -> None:
        """The last write of a run that ran: everything waiting, then its end."""
        self._row_dirty = False
        self.flush(final=True)
        config, headline, charts = self._row()
        with self.writer.transaction() as conn:
            conn.execute(
                "UPDATE lab_runs SET status = ?, ended_ts = ?, exit_code = ?, headline_json = ?, error = ?,"
                " log_tail = ?, config_json = coalesce(?, config_json), charts_json = coalesce(?, charts_json)"
                " WHERE id = ?",
                (status, now_ts(), exit_code, headline, error, self.log_tail(detail), config, charts, self.run_id),
            )

    def discard(self) -> None:
        """A run that never started (the lab refused its arguments): no trace of it is kept."""
        with self.writer.transaction() as conn:
            for table in ("lab_metrics", "lab_tables"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (self.run_id,))
            conn.execute("DELETE FROM lab_runs WHERE id = ?", (self.run_id,))

    def close(self) -> None:
        with _RECORDING_LOCK:
            _RECORDING.discard(self.run_id)
        self.writer.close()


# -- rows a stopped app left behind ------------------------------------------------------------

def _pid_runs(pid: int | None, run_id: str) -> bool:
    """Is ``pid`` still the lab of ``run_id``? (A recycled pid runs something else.)"""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return True  # no /proc here: trust the pid
    if state in ("Z", "X"):
        return False  # dead, waiting to be reaped
    return not cmdline or run_id.encode() in cmdline  # empty for a moment after exec


def mark_stale(store: Store) -> list[str]:
    """Runs left 'running' by an app that stopped: mark them failed. Returns their ids (none
    are marked, and none returned, on a read-only database)."""
    if store.readonly:
        return []
    rows = store.query("SELECT id, pid FROM lab_runs WHERE status = 'running'")
    with _RECORDING_LOCK:
        mine = set(_RECORDING)
    stale = [r["id"] for r in rows if r["id"] not in mine and not _pid_runs(r["pid"], r["id"])]
    if stale:
        with store.transaction() as conn:
            conn.executemany("UPDATE lab_runs SET status = 'failed', error = ? WHERE id = ? AND status = 'running'",
                             [(INTERRUPTED, run_id) for run_id in stale])
    return stale
