"""The smoke run (core/smoke.py and ``llmcore-tui smoke``): with the fake lab, and once with every real lab."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labs.registry import LABS
from llmcore_tui.cli import app as root_app
from llmcore_tui.cli.smoke import smoke as smoke_command
from llmcore_tui.core import labruns, smoke
from llmcore_tui.core.labruns import LabRunError
from llmcore_tui.core.store import Store

FAKE = Path(__file__).resolve().parent / "fake_lab" / "fake.py"
REPO = Path(__file__).resolve().parents[1]
FAKE_HEADLINE = {"final_return": 100.0, "steps": 10, "solved": True}  # the fake lab's toy summary
cli_runner = CliRunner()


def fake_command(tmp_path: Path, **per_lab: str) -> list[str]:
    """A command that runs the fake lab, with ``--set`` settings of its own for some labs:
    ``fake_command(tmp_path, gae="mode=crash")`` (several settings: comma-separated)."""
    wrapper = tmp_path / "per_lab_fake.py"
    settings = {lab: [s for s in value.split(",") if s] for lab, value in per_lab.items()}
    wrapper.write_text(
        "import os, sys\n"
        f"SETTINGS = {settings!r}\n"
        "extra = [a for s in SETTINGS.get(sys.argv[1], []) for a in ('--set', s)]\n"
        f"os.execv(sys.executable, [sys.executable, {str(FAKE)!r}, *sys.argv[1:], *extra])\n")
    return [sys.executable, str(wrapper)]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "progress.db")
    yield store
    store.close()


def run(store: Store, tmp_path: Path, labs, command=None, **kwargs) -> smoke.SmokeReport:
    kwargs.setdefault("grace_s", 0.5)
    return smoke.run_smoke(store, labs, root=tmp_path, command=command or fake_command(tmp_path), **kwargs)


# -- choosing labs ------------------------------------------------------------------------------

def test_resolve_labs_takes_all_or_the_named_ones_in_registry_order():
    assert smoke.resolve_labs(None) == [info.name for info in LABS]
    assert smoke.resolve_labs("gae, mdp,,gae") == ["mdp", "gae"]
    assert smoke.resolve_labs(["td_learning", "mdp"]) == ["mdp", "td_learning"]
    with pytest.raises(LabRunError) as err:
        smoke.resolve_labs("mdp,nope,zilch")
    assert "unknown labs nope, zilch" in str(err.value)
    assert "labs are: " + ", ".join(info.name for info in LABS) in str(err.value)
    with pytest.raises(LabRunError, match="no labs given"):
        smoke.resolve_labs(" , ")


# -- running --------------------------------------------------------------------------------------

def test_every_lab_succeeds_is_recorded_and_reported(store, tmp_path):
    report = run(store, tmp_path, "gae,mdp,td_learning")
    assert report.ok and [r.lab for r in report.labs] == ["mdp", "td_learning", "gae"]
    for result in report.labs:
        assert (result.status, result.run_status, result.exit_code) == ("succeeded", "succeeded", 0)
        assert result.headline == FAKE_HEADLINE and result.error is None and result.log_tail == []
        assert 0 < result.seconds < 30 and not result.timed_out
    assert report.totals() | {"wall_seconds": 0, "lab_seconds": 0} == {
        "labs": 3, "succeeded": 3, "failed": 0, "timed_out": 0, "wall_seconds": 0, "lab_seconds": 0}

    # recorded as ordinary toy runs of each lab: the Labs screen and `lab runs` show them
    runs = {r.lab: r for r in labruns.list_runs(store)}
    assert set(runs) == {"mdp", "td_learning", "gae"}
    for result in report.labs:
        record = runs[result.lab]
        assert (record.id, record.status, record.preset) == (result.run_id, "succeeded", "toy")
        assert Path(record.out_dir) == tmp_path / "output" / "labs" / record.id == Path(result.out_dir)

    # the reports, under <root>/output/smoke_reports/ by default
    folder = tmp_path / "output" / "smoke_reports"
    assert report.json_path.parent == folder and report.md_path.parent == folder
    assert report.json_path.name.startswith("smoke_") and report.md_path.stem == report.json_path.stem
    data = json.loads(report.json_path.read_text())
    assert data["ok"] is True and data["preset"] == "toy" and data["jobs"] == 2 and data["timeout_s"] == 600
    assert data["totals"]["labs"] == 3 and data["totals"]["succeeded"] == 3 and data["totals"]["failed"] == 0
    assert [lab["lab"] for lab in data["labs"]] == ["mdp", "td_learning", "gae"]
    assert data["labs"][0] | {"seconds": 0} == {
        "lab": "mdp", "day": 1, "title": LABS[0].title, "status": "succeeded", "run_status": "succeeded",
        "seconds": 0, "run_id": runs["mdp"].id, "exit_code": 0, "headline": FAKE_HEADLINE, "error": None,
        "timed_out": False, "log_tail": [], "out_dir": runs["mdp"].out_dir}
    assert data["environment"]["cpus"] == os.cpu_count()
    md = report.md_path.read_text()
    assert md.startswith(f"# Smoke run {report.started}")
    assert "**all labs succeeded** · 3 succeeded, 0 failed" in md
    assert "| 1 | mdp | succeeded |" in md and "final_return=100, steps=10, solved=true |" in md
    assert "## " not in md  # no failure sections


def test_at_most_jobs_labs_run_at_once_and_updates_come_on_the_callers_thread(store, tmp_path):
    labs = ["mdp", "td_learning", "advantage", "gae"]
    seen: list[smoke.SmokeUpdate] = []
    threads: set[int] = set()
    running, most = set(), 0

    def on_update(update: smoke.SmokeUpdate) -> None:
        nonlocal most
        threads.add(threading.get_ident())
        seen.append(update)
        if update.kind == "start":
            running.add(update.lab)
            most = max(most, len(running))
        elif update.kind == "end":
            running.discard(update.lab)

    report = run(store, tmp_path, labs, command=fake_command(tmp_path, **{lab: "delay=0.05" for lab in labs}),
                 on_update=on_update, write=False)
    assert report.ok and most == 2 and threads == {threading.get_ident()}
    assert report.json_path is None and not (tmp_path / "output" / "smoke_reports").exists()
    ends = [u for u in seen if u.kind == "end"]
    assert [u.finished for u in ends] == [1, 2, 3, 4] and all(u.total == 4 for u in seen)
    assert {u.lab for u in ends} == set(labs) and all(u.result is not None and u.result.lab == u.lab for u in ends)
    for lab in labs:
        kinds = [u.kind for u in seen if u.lab == lab]
        assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) <= {"progress"}
    assert any(u.progress[1] == 10 and 0 < u.progress[0] <= 10 for u in seen if u.kind == "progress")

    seen.clear()
    running.clear()
    most = 0
    run(store, tmp_path, ["mdp", "gae"], jobs=1, on_update=on_update, write=False)
    assert most == 1 and [u.kind for u in seen if u.kind != "progress"] == ["start", "end", "start", "end"]


def test_a_failing_lab_is_reported_with_its_error_and_log_tail(store, tmp_path):
    report = run(store, tmp_path, "mdp,gae,td_learning",
                 command=fake_command(tmp_path, gae="mode=crash", td_learning="mode=error"))
    assert not report.ok and [r.lab for r in report.failed] == ["td_learning", "gae"]
    mdp, td, gae = report.labs
    assert mdp.ok and mdp.headline == FAKE_HEADLINE
    assert (gae.status, gae.run_status, gae.exit_code, gae.headline) == ("failed", "failed", 1, None)
    assert gae.error == "the lab exited with code 1: RuntimeError: the fake lab crashed on purpose"
    assert "Traceback (most recent call last):" in gae.log_tail and gae.log_tail[-1].startswith("RuntimeError")
    assert td.error == "LabFailure: the fake lab gave up" and "Traceback: fake" in td.log_tail
    assert len(gae.log_tail) <= smoke.LOG_TAIL_LINES

    assert {r.lab: r.status for r in labruns.list_runs(store)} == {
        "mdp": "succeeded", "td_learning": "failed", "gae": "failed"}
    data = json.loads(report.json_path.read_text())
    assert data["ok"] is False and data["totals"]["failed"] == 2 and data["totals"]["succeeded"] == 1
    assert data["labs"][2]["log_tail"] == gae.log_tail and data["labs"][2]["error"] == gae.error
    md = report.md_path.read_text()
    assert "**2 of 3 labs failed** · 1 succeeded, 2 failed" in md
    assert "| 4 | gae | failed | " in md
    section = md.split("## gae: failed", 1)[1]
    assert f"- error: {gae.error}" in section and f"- run: {gae.run_id} (exit code 1)" in section
    assert "```\n" in section and "RuntimeError: the fake lab crashed on purpose" in section


def test_a_lab_past_its_timeout_is_cancelled_and_counted_failed(store, tmp_path):
    command = fake_command(tmp_path, mdp="mode=hang,delay=0.05,ignore_term=1", gae="delay=0.05")
    report = run(store, tmp_path, "mdp,gae", command=command, timeout_s=1.5)
    mdp, gae = report.labs
    assert gae.ok and not gae.timed_out  # the other lab is not disturbed
    assert (mdp.status, mdp.run_status, mdp.timed_out) == ("failed", "cancelled", True)
    assert mdp.error == "timed out after 1.5 s and was cancelled"
    assert 1.5 <= mdp.seconds < 10  # SIGTERM is ignored: SIGKILL after the 0.5 s grace period
    assert mdp.exit_code == -9 and any(line.startswith("pid ") for line in mdp.log_tail)
    record = labruns.get_run(store, mdp.run_id)  # not "cancelled by the user"
    assert (record.status, record.error) == ("failed", mdp.error)
    assert report.totals()["timed_out"] == 1
    assert "| 1 | mdp | failed (timed out) |" in report.md_path.read_text()


def test_a_lab_that_cannot_start_is_failed_and_the_others_run(store, tmp_path):
    report = run(store, tmp_path, "mdp,gae", command=[str(tmp_path / "no-such-program")])
    assert [(r.status, r.run_status, r.run_id) for r in report.labs] == [("failed", "not started", None)] * 2
    assert "cannot start the lab" in report.labs[0].error
    assert labruns.list_runs(store) == []


def test_a_rejected_lab_is_failed_with_the_usage_error(store, tmp_path):
    report = run(store, tmp_path, "mdp,gae", command=fake_command(tmp_path, mdp="steps=abc"))
    mdp, gae = report.labs
    assert (mdp.status, mdp.run_status, mdp.exit_code, mdp.log_tail) == ("failed", "rejected", 2, [])
    assert mdp.error == "--set steps=abc: expected a int" and gae.ok
    assert [r.lab for r in labruns.list_runs(store)] == ["gae"]  # a rejected run leaves no row


def test_an_exception_cancels_the_running_labs(store, tmp_path):
    def on_update(update: smoke.SmokeUpdate) -> None:
        if update.kind == "progress":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(store, tmp_path, "mdp,gae", command=fake_command(tmp_path, mdp="mode=hang,delay=0.05",
                                                             gae="mode=hang,delay=0.05"), on_update=on_update)
    assert sorted(r.status for r in labruns.list_runs(store)) == ["cancelled", "cancelled"]
    assert labruns.active_runs() == []
    assert not (tmp_path / "output" / "smoke_reports").exists()


def test_bad_arguments_are_refused_before_anything_starts(store, tmp_path):
    for kwargs in ({"jobs": 0}, {"timeout_s": 0}):
        with pytest.raises(ValueError):
            run(store, tmp_path, "mdp", **kwargs)
    with pytest.raises(LabRunError):
        run(store, tmp_path, "mdp,nope")
    assert labruns.list_runs(store) == []


def test_reports_never_overwrite_each_other(tmp_path):
    report = smoke.SmokeReport([], "2026-03-02T10:00:00", 0.0, 2, 600.0, True, {})
    first = smoke.write_reports(report, tmp_path, when=1_000_000.0)
    second = smoke.write_reports(report, tmp_path, when=1_000_000.0)
    assert first != second and all(p.exists() for p in (*first, *second))
    assert second[0].stem == first[0].stem + "-2"


# -- the command ------------------------------------------------------------------------------------

def cli():
    """The root app with ``smoke`` registered (a no-op once cli/__init__.py registers it)."""
    if not any(command.name == "smoke" for command in root_app.registered_commands):
        root_app.command("smoke")(smoke_command)
    return root_app


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(labruns, "default_root", lambda: tmp_path)  # output/ under tmp_path
    return tmp_path / "progress.db"


def invoke(db: Path, monkeypatch: pytest.MonkeyPatch, *args: str, **per_lab: str):
    monkeypatch.setenv(labruns.COMMAND_ENV, " ".join(fake_command(db.parent, **per_lab)))
    return cli_runner.invoke(cli(), ["--db", str(db), "smoke", *args])


def statuses(db: Path) -> list[dict]:
    store = Store(db)
    try:
        return store.query("SELECT lab, status FROM lab_runs ORDER BY started_ts")
    finally:
        store.close()


def test_cli_runs_the_labs_prints_a_line_each_and_the_report_paths(db, monkeypatch):
    result = invoke(db, monkeypatch, "--labs", "gae,mdp", "--jobs", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "smoke: 2 labs (mdp, gae), toy preset, 1 at a time, timeout 600 s" in out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert [line.split()[:3] for line in lines] == [["[1/2]", "mdp", "succeeded"], ["[2/2]", "gae", "succeeded"]]
    assert "final_return=100, steps=10, solved=true" in lines[0]
    assert "all labs succeeded" in out
    md = Path(out.split("report: ", 1)[1].split()[0])
    js = Path(out.split("json:", 1)[1].split()[0])
    assert md.parent == js.parent == db.parent / "output" / "smoke_reports" and md.exists() and js.exists()
    assert json.loads(js.read_text())["totals"]["succeeded"] == 2
    assert [r["status"] for r in statuses(db)] == ["succeeded"] * 2


def test_cli_exits_1_when_a_lab_fails_and_writes_to_out(db, monkeypatch, tmp_path):
    result = invoke(db, monkeypatch, "--labs", "mdp,gae", "--out", str(tmp_path / "reports"), "--timeout", "1.5",
                    mdp="mode=crash", gae="mode=hang,delay=0.05")
    assert result.exit_code == 1, result.output
    assert "mdp          failed" in result.stderr and "RuntimeError: the fake lab crashed on purpose" in result.stderr
    assert "gae          failed (timed out)" in result.stderr and "timed out after 1.5 s" in result.stderr
    assert "2 of 2 labs failed" in result.stdout
    [md] = (tmp_path / "reports").glob("smoke_*.md")
    assert f"report: {md}" in result.stdout and "## mdp: failed" in md.read_text()


def test_cli_refuses_unknown_labs_with_the_list_of_labs(db, monkeypatch):
    result = invoke(db, monkeypatch, "--labs", "mdp,nope")
    assert result.exit_code == 2
    assert "unknown lab nope; labs are: " + ", ".join(info.name for info in LABS) in result.stderr
    assert not (db.parent / "output").exists()


# -- every real lab, once -----------------------------------------------------------------------------

@pytest.mark.lab
def test_smoke_runs_every_registered_lab_in_toy_mode(tmp_path, monkeypatch):
    """One run of all labs, two at a time (what CI affords on two cores); every lab succeeds."""
    present = [info.name for info in LABS if (REPO / "labs" / f"{info.name}.py").is_file()
               or (REPO / "labs" / info.name / "__init__.py").is_file()]
    missing = [info.name for info in LABS if info.name not in present]
    assert not missing, f"labs registered without a labs/<name>.py or labs/<name>/: {', '.join(missing)}"
    monkeypatch.setattr(labruns, "default_root", lambda: tmp_path)
    monkeypatch.delenv(labruns.COMMAND_ENV, raising=False)
    # the SFT model cache the alignment labs share (keyed by recipe, so never stale): the one of the
    # checkout, which the labs' own tests fill, so dpo/ppo/grpo need not train SFT again here
    if not os.environ.get("LLMCORE_LAB_CHECKPOINTS"):
        monkeypatch.setenv("LLMCORE_LAB_CHECKPOINTS", str(REPO / "output" / "labs" / "_checkpoints"))
    db = tmp_path / "progress.db"
    result = cli_runner.invoke(cli(), ["--db", str(db), "smoke", "--labs", ",".join(present), "--jobs", "2"])
    print(result.stdout, result.stderr)
    assert result.exit_code == 0, result.output
    [js] = (tmp_path / "output" / "smoke_reports").glob("smoke_*.json")
    [md] = (tmp_path / "output" / "smoke_reports").glob("smoke_*.md")
    data = json.loads(js.read_text())
    assert [lab["lab"] for lab in data["labs"]] == present and data["jobs"] == 2
    assert data["ok"] and data["totals"]["succeeded"] == len(present) and data["totals"]["failed"] == 0
    for lab in data["labs"]:
        assert lab["status"] == "succeeded", (lab["lab"], lab["error"], lab["log_tail"])
        assert lab["headline"], f"{lab['lab']} reported no headline numbers"
        assert f"| {lab['lab']} | succeeded |" in md.read_text()
    assert {r["lab"]: r["status"] for r in statuses(db)} == dict.fromkeys(present, "succeeded")
