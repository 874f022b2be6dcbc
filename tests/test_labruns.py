"""The lab runtime: runs a fake lab as a child process and checks what is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmcore_tui.core import labruns
from llmcore_tui.core.labruns import LabRunError, LabRunner
from llmcore_tui.core.store import Store

FAKE = Path(__file__).resolve().parent / "fake_lab" / "fake.py"
FAKE_COMMAND = [sys.executable, str(FAKE)]


def alive(pid: int) -> bool:
    """Is the process still there? A zombie (dead, not yet reaped by whoever adopted it) is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def logged_pid(text: str, label: str) -> int:
    for line in text.splitlines():
        if line.startswith(label + " "):
            return int(line.split()[1])
    raise AssertionError(f"no {label!r} line in {text!r}")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "progress.db")
    yield store
    store.close()


@pytest.fixture
def runner(store: Store, tmp_path: Path) -> LabRunner:
    return LabRunner(store, root=tmp_path, command=FAKE_COMMAND, grace_s=1.0)


def run_fake(runner: LabRunner, *assignments: str, toy: bool = True) -> labruns.RunHandle:
    handle = runner.start("mdp", toy=toy, assignments=assignments)
    assert handle.wait(30), "the fake lab did not finish"
    return handle


def test_a_successful_run_is_recorded_with_metrics_tables_and_headline(runner, store, tmp_path):
    handle = runner.start("mdp", toy=True, seed=3)
    events = list(handle.events())
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert {"metric", "progress", "log", "table", "summary", "stderr"} <= set(kinds)
    assert events[-1]["status"] == "succeeded" and handle.status == "succeeded" and handle.exit_code == 0

    run = labruns.get_run(store, handle.run_id)
    assert run.status == "succeeded" and run.exit_code == 0 and run.error is None
    assert run.lab == "mdp" and run.day == 1 and run.preset == "toy"
    assert run.headline == {"final_return": 100.0, "steps": 10, "solved": True}
    assert run.config["seed"] == 3 and run.config["steps"] == 10  # the resolved config of the start event
    assert run.ended_ts >= run.started_ts and run.pid == handle.pid
    assert Path(run.out_dir) == tmp_path / "output" / "labs" / handle.run_id
    assert "done: all steps ran" in run.log_tail

    metrics = labruns.run_metrics(store, handle.run_id)
    assert set(metrics) == {"losses/loss", "charts/return", "charts/constant", "eval/accuracy", "eval/missing"}
    assert metrics["charts/return"] == [(s, float(s * s)) for s in range(1, 11)]
    assert metrics["eval/missing"][0] == (1, None)  # non-finite / null values are kept as NULL
    tables = labruns.run_tables(store, handle.run_id)
    assert [(t.name, t.columns, t.rows) for t in tables] == [("sweep", ["x", "y"], [[1, 2.0], [2, 4.0]])]


def test_a_succeeded_run_passes_the_day_lab_criterion(course, tmp_path):
    runner = LabRunner(course.store, root=tmp_path, command=FAKE_COMMAND)
    day1 = course.day_statuses()[0]
    assert not next(c for c in day1.criteria if c.name == "lab").met
    run_fake(runner)
    day1 = course.day_statuses()[0]
    assert next(c for c in day1.criteria if c.name == "lab").met


def test_on_event_callback_gets_every_event(runner):
    seen: list[dict] = []
    handle = runner.start("mdp", on_event=seen.append)
    assert handle.wait(30)
    assert seen[0]["event"] == "start" and seen[-1] == {
        "event": "end", "run_id": handle.run_id, "status": "succeeded", "exit_code": 0, "error": None,
        "headline": handle.headline}
    with pytest.raises(RuntimeError):
        next(handle.events())


def test_a_crash_is_failed_with_the_exception_and_traceback(runner, store):
    handle = run_fake(runner, "mode=crash")
    run = labruns.get_run(store, handle.run_id)
    assert run.status == "failed" and run.exit_code == 1
    assert run.error == "the lab exited with code 1: RuntimeError: the fake lab crashed on purpose"
    assert "Traceback (most recent call last)" in run.log_tail
    assert len(labruns.run_metrics(store, handle.run_id)["losses/loss"]) == 3  # what it did before is kept


def test_an_error_event_fails_the_run_with_its_message(runner, store):
    handle = run_fake(runner, "mode=error")
    run = labruns.get_run(store, handle.run_id)
    assert (run.status, run.error) == ("failed", "LabFailure: the fake lab gave up")
    assert "Traceback: fake" in run.log_tail


def test_malformed_output_fails_the_run(runner, store):
    handle = run_fake(runner, "mode=malformed")
    run = labruns.get_run(store, handle.run_id)
    assert run.status == "failed" and run.exit_code == 0
    assert run.error == "the lab printed a line that is not a JSON event: this line is not JSON"


def test_a_malformed_event_is_recorded_and_the_run_goes_on_to_fail_at_its_end(runner, store):
    handle = run_fake(runner, "mode=badevent")
    run = labruns.get_run(store, handle.run_id)
    assert run.status == "failed" and run.exit_code == 0
    assert run.error == ("the lab printed a line that is not a JSON event: "
                         '{"event": "metric", "step": 2, "values": {"losses/speed": "fast"}} '
                         "(metric value 'fast' is not a number)")
    assert len(labruns.run_metrics(store, handle.run_id)["losses/loss"]) == 10  # it ran to the end
    assert run.headline is not None and "[not an event]" in run.log_tail


def test_the_declared_charts_are_recorded_and_the_run_loads_back_as_a_live_run(runner, store):
    handle = run_fake(runner)
    live = labruns.load_run(store, handle.run_id)
    assert [c.title for c in live.charts] == ["Loss per step", "Return against accuracy", "The sweep"]
    assert live.charts[0].log_y and live.charts[2].reference == ("x",)
    assert live.missing_series() == [] and live.succeeded
    assert live.config["steps"] == 10 and live.headline == {"final_return": 100.0, "steps": 10, "solved": True}
    loss, = live.chart_lines(live.charts[0])
    assert loss.xs == [float(s) for s in range(1, 11)] and loss.ys[0] == 1.0
    ret, = live.chart_lines(live.charts[1])  # return paired with accuracy by step
    assert ret.xs[:2] == [0.1, 0.2] and ret.ys[:2] == [1.0, 4.0]
    sweep, ref = live.chart_lines(live.charts[2])
    assert (sweep.xs, sweep.ys, ref.reference) == ([1.0, 2.0], [2.0, 4.0], True)
    assert "done: all steps ran" in live.logs and live.error is None
    # what the running handle showed is what was recorded
    shown = handle.live
    assert shown.charts == live.charts and shown.series == live.series and shown.done == 10
    with pytest.raises(LookupError):
        labruns.load_run(store, "no-such-run")


def test_handle_live_shows_a_running_run_and_its_snapshots_stay_put(runner):
    handle = runner.start("mdp", assignments=["mode=hang", "delay=0.02"])
    try:
        deadline = time.monotonic() + 20
        while len(handle.live.series.get("losses/loss", [])) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        first = handle.live
        assert first.started and len(first.charts) == 3 and not handle.done
        seen = len(first.series["losses/loss"])
        time.sleep(0.3)
        assert len(first.series["losses/loss"]) == seen  # a snapshot: the run went on without it
        assert len(handle.live.series["losses/loss"]) > seen
    finally:
        handle.cancel(0.5)
        assert handle.wait(10)
    assert handle.status == "cancelled"


def test_a_run_without_charts_and_a_failed_run_load_back_too(runner, store):
    plain = labruns.load_run(store, run_fake(runner, "charts=0").run_id)
    assert plain.charts == () and plain.succeeded
    failed = labruns.load_run(store, run_fake(runner, "mode=error").run_id)
    assert failed.error.message == "LabFailure: the fake lab gave up" and not failed.succeeded
    assert len(failed.charts) == 3 and failed.series["losses/loss"][-1] == (3, 1 / 3)


def test_an_exit_without_summary_fails_the_run(runner, store):
    handle = run_fake(runner, "mode=nosummary")
    assert (handle.status, handle.error) == ("failed", "the lab ended without a summary")


def test_a_usage_error_is_rejected_and_not_recorded(runner, store):
    handle = run_fake(runner, "steps=abc")
    assert handle.status == "rejected" and handle.exit_code == 2
    assert handle.error == "--set steps=abc: expected a int"
    assert store.scalar("SELECT count(*) FROM lab_runs") == 0
    assert not handle.out_dir.exists()


def test_unknown_labs_and_malformed_assignments_are_refused_before_starting(runner, store):
    with pytest.raises(LabRunError, match="no lab named 'nope'"):
        runner.start("nope")
    with pytest.raises(LabRunError, match="key=value"):
        runner.start("mdp", assignments=["gamma"])
    with pytest.raises(LabRunError, match="cannot start"):
        LabRunner(store, root=runner.root, command=["/no/such/python"]).start("mdp")
    assert store.scalar("SELECT count(*) FROM lab_runs") == 0


def test_metrics_are_committed_while_the_lab_runs(runner, store, tmp_path):
    handle = runner.start("mdp", assignments=["mode=hang", "delay=0.01"])
    try:
        other = Store(tmp_path / "progress.db")  # what another process (or a killed app) would see
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not other.scalar("SELECT count(*) FROM lab_metrics"):
            time.sleep(0.1)
        assert other.scalar("SELECT count(*) FROM lab_metrics") > 0
        assert other.scalar("SELECT status FROM lab_runs WHERE id = ?", (handle.run_id,)) == "running"
        other.close()
    finally:
        handle.cancel()
        handle.wait(10)


@pytest.mark.parametrize("ignore_term", [0, 1])
def test_cancel_kills_the_whole_process_group(runner, store, ignore_term):
    handle = runner.start("mdp", assignments=["mode=hang", "delay=0.02", "grandchild=1", f"ignore_term={ignore_term}"])
    lines: list[str] = []
    for event in handle.events():
        if event["event"] == "log":
            lines.append(event["text"])
        if event["event"] == "metric":  # the grandchild is logged before the first metric
            break
    grandchild = logged_pid("\n".join(lines), "grandchild")
    assert logged_pid("\n".join(lines), "pid") == handle.pid
    assert alive(handle.pid) and alive(grandchild)
    started = time.monotonic()
    assert handle.cancel()
    assert handle.wait(10)
    if ignore_term:  # SIGTERM is ignored: SIGKILL after the 1 s grace period
        assert time.monotonic() - started >= 0.9
    with pytest.raises(ProcessLookupError):
        os.kill(handle.pid, 0)  # reaped by the runner
    assert wait_gone(grandchild), "the grandchild outlived the cancel"
    run = labruns.get_run(store, handle.run_id)
    assert (run.status, run.error) == ("cancelled", "cancelled by the user")
    assert labruns.run_metrics(store, handle.run_id)["losses/loss"]
    assert not handle.cancel()  # already over


def test_cancel_all_stops_every_run_of_the_process(runner, store):
    handles = [runner.start("mdp", assignments=["mode=hang", "delay=0.05"]) for _ in range(2)]
    assert {h.run_id for h in labruns.active_runs()} >= {h.run_id for h in handles}
    labruns.cancel_all(grace_s=0.5)
    assert all(h.status == "cancelled" for h in handles)
    assert not labruns.active_runs()


def test_stale_running_rows_are_marked_failed_when_listed(store, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "mdp-live-1"])
    try:
        with store.transaction() as conn:
            for run_id, pid, ts in [("mdp-dead-1", dead.pid, 1.0), ("mdp-nopid-1", None, 2.0),
                                    ("mdp-recycled-1", os.getpid(), 3.0), ("mdp-live-1", live.pid, 4.0)]:
                conn.execute("INSERT INTO lab_runs(id, lab, day, preset, status, started_ts, pid)"
                             " VALUES (?, 'mdp', 1, 'toy', 'running', ?, ?)", (run_id, ts, pid))
        runs = {r.id: r for r in labruns.list_runs(store)}
        for run_id in ("mdp-dead-1", "mdp-nopid-1", "mdp-recycled-1"):
            assert (runs[run_id].status, runs[run_id].error) == ("failed", labruns.INTERRUPTED)
        assert runs["mdp-live-1"].status == "running"  # its pid still runs that lab
        assert [r.id for r in labruns.list_runs(store)][:2] == ["mdp-live-1", "mdp-recycled-1"]
    finally:
        live.kill()
        live.wait()


def test_find_run_accepts_a_unique_prefix(runner, store):
    handle = run_fake(runner)
    assert labruns.find_run(store, handle.run_id[:-2]).id == handle.run_id
    with pytest.raises(LookupError, match="no lab run"):
        labruns.find_run(store, "zzz")
    other = run_fake(runner)
    with pytest.raises(LookupError, match="matches 2 runs"):
        labruns.find_run(store, "mdp-")
    assert labruns.latest_runs(store)["mdp"].id == other.run_id


def test_compare_puts_headlines_settings_and_final_metrics_side_by_side(runner, store):
    a = run_fake(runner)
    b = run_fake(runner, "steps=5")
    result = labruns.compare(store, [a.run_id, b.run_id])
    assert [r.id for r in result.runs] == [a.run_id, b.run_id]
    assert result.headline["final_return"] == [100.0, 25.0]
    assert result.headline["solved"] == [True, True]
    assert result.config == {"steps": [10, 5]}
    assert result.final["charts/return"] == [100.0, 25.0]
    with pytest.raises(LookupError):
        labruns.compare(store, [a.run_id, "nope"])


def test_informative_keys_prefer_moving_eval_and_chart_series():
    series = {
        "losses/loss": [(1, 1.0), (2, 0.5)],
        "charts/constant": [(1, 1.0), (2, 1.0)],
        "eval/accuracy": [(1, 0.1), (2, 0.9)],
        "charts/return": [(1, 1.0), (2, 4.0)],
        "other": [(1, 3.0), (2, 2.0)],
        "eval/single": [(1, 0.3)],
    }
    assert labruns.informative_keys(series, 3) == ["eval/accuracy", "charts/return", "losses/loss"]
    assert labruns.informative_keys(series)[-2:] == ["eval/single", "charts/constant"]  # flat ones last


def test_stderr_and_the_resolved_config_are_kept(runner, store):
    handle = run_fake(runner, "mode=crash")
    stderr = (Path(labruns.get_run(store, handle.run_id).out_dir) / "stderr.txt").read_text()
    assert "RuntimeError: the fake lab crashed on purpose" in stderr
    assert json.loads(store.scalar("SELECT config_json FROM lab_runs WHERE id = ?", (handle.run_id,)))["mode"] == "crash"


def test_runs_folder_is_beside_the_database_in_one_place(tmp_path, monkeypatch):
    """Issue 17 item 8: run files (and the labs' model cache) live beside the database."""
    monkeypatch.setattr(labruns, "default_root", lambda: tmp_path / "root")
    monkeypatch.delenv(labruns.CHECKPOINTS_ENV, raising=False)
    (tmp_path / "data").mkdir()
    store = Store(tmp_path / "data" / "progress.db")
    try:
        assert labruns.runs_folder(store) == tmp_path / "data" / "llmcore-output" / "labs"
        assert labruns.runs_folder(store, tmp_path / "chosen") == tmp_path / "chosen" / "output" / "labs"
        runner = LabRunner(store, command=FAKE_COMMAND, grace_s=1.0)
        handle = run_fake(runner)
        assert handle.status == "succeeded"
        assert handle.out_dir == tmp_path / "data" / "llmcore-output" / "labs" / handle.run_id
        assert Path(labruns.get_run(store, handle.run_id).out_dir) == handle.out_dir
        assert not (tmp_path / "root" / "output").exists()
    finally:
        store.close()
    memory = Store(":memory:")
    try:
        assert labruns.runs_folder(memory) == (tmp_path / "root" / "output" / "labs").resolve()
    finally:
        memory.close()
