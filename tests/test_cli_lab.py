"""``llmcore-tui lab ...`` through CliRunner, with the fake lab (and the real mdp lab for --set errors)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmcore_tui.cli import app as root_app
from llmcore_tui.cli import lab as lab_cli
from llmcore_tui.core import labruns
from llmcore_tui.core.store import Store

FAKE = Path(__file__).resolve().parent / "fake_lab" / "fake.py"
runner = CliRunner()


def cli():
    """The root app with ``lab`` mounted (a no-op once cli/__init__.py mounts it)."""
    if not any(group.name == "lab" for group in root_app.registered_groups):
        root_app.add_typer(lab_cli.app, name="lab")
    return root_app


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(labruns, "default_root", lambda: tmp_path)  # output/labs/ under tmp_path
    monkeypatch.setenv(labruns.COMMAND_ENV, f"{sys.executable} {FAKE}")
    return tmp_path / "progress.db"


def invoke(db: Path, *args: str):
    return runner.invoke(cli(), ["--db", str(db), "lab", *args])


def runs_in(db: Path) -> list[dict]:
    store = Store(db)
    try:
        return store.query("SELECT id, status, preset, error FROM lab_runs ORDER BY started_ts")
    finally:
        store.close()


def test_help_lists_the_lab_commands():
    result = runner.invoke(cli(), ["lab", "--help"])
    assert result.exit_code == 0
    for command in ("list", "runs", "run", "show", "compare"):
        assert command in result.output


def test_run_records_the_run_and_prints_the_summary(db):
    result = invoke(db, "run", "mdp", "--toy", "--seed", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "lab mdp (day 1, toy)" in out
    assert "[100%] 10/10" in out and "done: all steps ran" in out
    assert "summary:" in out and "final_return  100" in out
    [run] = runs_in(db)
    assert (run["status"], run["preset"]) == ("succeeded", "toy")
    assert f"run {run['id']}: succeeded" in out


def test_a_failing_lab_exits_1_with_its_error(db):
    result = invoke(db, "run", "mdp", "--set", "mode=crash")
    assert result.exit_code == 1
    assert "failed: the lab exited with code 1: RuntimeError: the fake lab crashed on purpose" in result.stderr
    assert [r["status"] for r in runs_in(db)] == ["failed"]


def test_json_passes_the_event_stream_through(db):
    result = invoke(db, "run", "mdp", "--toy", "--json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "summary"
    assert events[1]["event"] == "charts" and events[1]["charts"][0]["title"] == "Loss per step"
    assert sum(e["event"] == "metric" for e in events) == 10
    assert "succeeded" in result.stderr


def test_unknown_lab_and_malformed_set_are_usage_errors(db):
    result = invoke(db, "run", "nope")
    assert result.exit_code == 2 and "no lab named 'nope'" in result.stderr
    result = invoke(db, "run", "mdp", "--set", "gamma")
    assert result.exit_code == 2 and "--set expects key=value" in result.stderr
    assert runs_in(db) == []


def test_a_bad_set_value_of_the_real_lab_exits_2_and_records_nothing(db, monkeypatch):
    monkeypatch.delenv(labruns.COMMAND_ENV)  # the real `python -m labs mdp`: it refuses before any work
    result = invoke(db, "run", "mdp", "--set", "gamma=abc")
    assert result.exit_code == 2
    assert "error: --set gamma=abc: expected a float" in result.stderr
    assert runs_in(db) == []


def test_list_shows_labs_by_day_with_the_last_status(db):
    result = invoke(db, "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["day", "lab", "title", "last"]
    assert lines[2].split()[:2] == ["1", "mdp"] and lines[2].endswith("never run")
    invoke(db, "run", "mdp", "--toy")
    [run] = runs_in(db)
    mdp = invoke(db, "list").stdout.splitlines()[2]
    assert "succeeded" in mdp and run["id"] in mdp and "(toy)" in mdp


def test_show_prints_config_headline_metrics_and_the_log_of_a_failure(db):
    invoke(db, "run", "mdp", "--toy")
    invoke(db, "run", "mdp", "--set", "mode=crash")
    ok, bad = runs_in(db)
    result = invoke(db, "show", ok["id"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "status: succeeded (exit 0)" in out and "mode=succeed" in out and "steps=10" in out
    assert "final_return  100" in out
    assert any(line.split()[:4] == ["charts/return", "10", "1", "100"] for line in out.splitlines())
    assert "table sweep:" in out and "log tail:" not in out
    assert "charts:\n  Loss per step: It falls as 1/step." in out

    result = invoke(db, "show", bad["id"][:-1])  # an unambiguous start of the id is enough
    assert result.exit_code == 0
    assert "status: failed (exit 1)" in result.stdout and "log tail:" in result.stdout
    assert "RuntimeError: the fake lab crashed on purpose" in result.stdout

    data = json.loads(invoke(db, "show", ok["id"], "--json").stdout)
    assert data["run"]["headline"]["final_return"] == 100.0 and len(data["metrics"]["losses/loss"]) == 10
    assert [c["title"] for c in data["run"]["charts"]] == ["Loss per step", "Return against accuracy", "The sweep"]

    result = invoke(db, "show", "nope")
    assert result.exit_code == 2 and "no lab run 'nope'" in result.stderr


def test_compare_puts_headlines_side_by_side(db):
    invoke(db, "run", "mdp", "--toy")
    invoke(db, "run", "mdp", "--toy", "--set", "steps=5")
    a, b = runs_in(db)
    result = invoke(db, "compare", a["id"], b["id"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.split() == ["final_return", "100", "25"] for line in lines)
    assert any(line.split() == ["steps", "10", "5"] for line in lines)  # in the headline and the settings
    assert "settings that differ:" in result.stdout
    assert invoke(db, "compare", a["id"]).exit_code == 2


def test_runs_lists_recorded_runs_newest_first(db):
    assert "no runs yet" in invoke(db, "runs").stdout
    invoke(db, "run", "mdp", "--toy")
    invoke(db, "run", "mdp", "--set", "mode=error")
    lines = invoke(db, "runs", "mdp").stdout.splitlines()
    assert lines[2].split()[1] == "failed" and "LabFailure: the fake lab gave up" in lines[2]
    assert lines[3].split()[1] == "succeeded"
    assert invoke(db, "runs", "nope").exit_code == 2


def test_run_files_go_beside_the_database_not_where_one_stands(tmp_path, monkeypatch):
    """Issue 17 item 8: `--db` elsewhere takes the run files with it; `lab run` and `lab show` say where."""
    root, stand, elsewhere = tmp_path / "root", tmp_path / "stand", tmp_path / "elsewhere"
    for folder in (root, stand, elsewhere):
        folder.mkdir()
    monkeypatch.setattr(labruns, "default_root", lambda: root)
    monkeypatch.setenv(labruns.COMMAND_ENV, f"{sys.executable} {FAKE}")
    monkeypatch.chdir(stand)
    db = elsewhere / "progress.db"
    result = invoke(db, "run", "mdp", "--toy")
    assert result.exit_code == 0, result.output
    [run] = runs_in(db)
    folder = elsewhere / "llmcore-output" / "labs" / run["id"]
    assert (folder / "stderr.txt").is_file()
    assert f"files: {folder}" in result.stdout
    assert not (stand / "output").exists() and not (root / "output").exists()
    shown = invoke(db, "show", run["id"]).stdout
    assert f"files: {folder}\n" in shown


class _FakeInfo:
    day = 5


class _FakeHandle:
    lab, preset, run_id, info = "sft", "toy", "sft-1", _FakeInfo()


def test_progress_shows_only_the_current_steps_metrics(capsys):
    """Issue 17 item 7: a sweep's second sub-run does not print the first one's eval score."""
    reporter = lab_cli._Reporter(_FakeHandle())  # not a TTY here: a line every 10 %
    reporter.event({"event": "start", "total_steps": 20})
    for step in range(1, 11):  # sub-run 1: loss every step, an eval score at its end
        reporter.event({"event": "metric", "step": step, "values": {"losses/loss": 3.0 - 0.1 * step}})
        if step == 10:
            reporter.event({"event": "metric", "step": step, "values": {"eval/gold_score": 0.5933}})
        reporter.event({"event": "progress", "done": step, "total": 20})
    for step in range(1, 11):  # sub-run 2 restarts its steps; its own eval comes at its end
        reporter.event({"event": "metric", "step": step, "values": {"losses/loss": 3.5 - 0.1 * step}})
        if step == 10:
            reporter.event({"event": "metric", "step": step, "values": {"eval/gold_score": 0.02}})
        reporter.event({"event": "progress", "done": 10 + step, "total": 20})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("[")]
    by_pct = {line.split("]")[0].strip(" ["): line for line in lines}
    assert "eval/gold_score=0.5933" in by_pct["50%"] and "losses/loss=2" in by_pct["50%"]
    for pct in ("60%", "70%", "80%", "90%"):
        assert "gold_score" not in by_pct[pct] and "losses/loss=" in by_pct[pct], by_pct[pct]
    assert "eval/gold_score=0.02" in by_pct["100%"]


def test_a_phase_without_metrics_shows_none_of_the_previous_phase(capsys):
    """DPO's beta sweep reports progress but no metrics after a log line: nothing stale is printed."""
    reporter = lab_cli._Reporter(_FakeHandle())
    reporter.event({"event": "start", "total_steps": 20})
    for step in range(1, 11):
        reporter.event({"event": "metric", "step": step, "values": {"losses/dpo": 1.0 / step,
                                                                    "eval/gold_score": 0.59}})
        reporter.event({"event": "progress", "done": step, "total": 20})
    for j in range(1, 3):
        reporter.event({"event": "log", "text": f"beta sweep: beta={j / 10}"})
        reporter.event({"event": "progress", "done": 10 + 5 * j, "total": 20})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("[")]
    by_pct = {line.split("]")[0].strip(" ["): line for line in lines}
    assert "eval/gold_score=0.59" in by_pct["50%"]  # the main run's own score
    assert by_pct["75%"].split() == ["[", "75%]", "15/20"] and by_pct["100%"].split() == ["[100%]", "20/20"]
