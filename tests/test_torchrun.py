"""The parallel lab under torchrun: one machine (--standalone) and two "nodes" on the loopback
interface, each giving the numbers of the run that starts its own ranks. Rank 0 alone speaks;
a rank that fails ends the run at once, saying why."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labs import parallel as par
from labs._runtime import LabUsageError, make_config, run_in_process

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT_S = 150

# headline values that come from clocks; everything else must match the self-launched run
TIMED = {"pp_bubble_max_deviation", "pp_wall_bubble_max_deviation", "pp_gpipe_idle_at_max_m",
         "pp_1f1b_idle_at_max_m", "wall_s"}
PIPELINE_TIMED_COLUMNS = {"idle_measured", "idle_min", "idle_spread", "idle_wall_clock"}


def clean_env() -> dict[str, str]:
    """This test's environment without any launcher variables it may itself run under."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                        "LLMCORE_LAB_PARENT")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def torchrun(*launcher_args: str, lab_args: tuple[str, ...] = ("--toy", "--json"), out: Path | None = None,
             no_python: tuple[str, ...] = ()) -> subprocess.Popen:
    """torchrun (as ``python -m torch.distributed.run``, so the venv's torch) on ``-m labs parallel``."""
    target = [*no_python, "-m", "labs", "parallel", *lab_args] if no_python else ["-m", "labs", "parallel", *lab_args]
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher_args, *(["--no-python"] if no_python else []),
           *target, *(["--out", str(out)] if out else [])]
    return subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, list[dict], str]:
    stdout, stderr = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    return proc.returncode, [json.loads(line) for line in stdout.splitlines() if line.strip()], stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tables(events: list[dict]) -> dict[str, list[list]]:
    return {e["name"]: e for e in events if e["event"] == "table"}


def assert_same_numbers(launched: list[dict], own: list[dict]) -> None:
    """Counts exactly, timing-free floats to 1e-6, clock-derived values not at all."""
    assert [e["event"] for e in launched].count("start") == 1, "only rank 0 may write the stream"
    assert [e["event"] for e in launched].count("summary") == 1
    head = next(e for e in launched if e["event"] == "summary")["headline"]
    want = next(e for e in own if e["event"] == "summary")["headline"]
    assert head.keys() == want.keys()
    for key in want.keys() - TIMED:
        if isinstance(want[key], int):
            assert head[key] == want[key], key
        else:
            assert head[key] == pytest.approx(want[key], abs=1e-6), key
    got, expected = tables(launched), tables(own)
    assert got.keys() == expected.keys()
    for name, table in expected.items():
        keep = [i for i, c in enumerate(table["columns"]) if c not in PIPELINE_TIMED_COLUMNS]
        assert got[name]["columns"] == table["columns"]
        assert [[row[i] for i in keep] for row in got[name]["rows"]] == [[row[i] for i in keep] for row in table["rows"]]


@pytest.fixture(scope="module")
def self_launched(tmp_path_factory) -> list[dict]:
    return run_in_process("parallel", toy=True, out_dir=tmp_path_factory.mktemp("self"))


@pytest.mark.lab
def test_standalone_torchrun_gives_the_self_launched_numbers(self_launched, tmp_path):
    t0 = time.monotonic()
    code, events, stderr = finish(torchrun("--standalone", "--nproc-per-node", "8", out=tmp_path))
    assert code == 0, stderr[-3000:]
    assert_same_numbers(events, self_launched)
    assert "started by torchrun" in " ".join(e.get("text", "") for e in events)
    assert (tmp_path / "pipeline_timelines.json").exists()
    # all eight ranks opened the same --out folder; only rank 0 wrote to its events file
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == len(events)
    print(f"standalone torchrun, 8 ranks: {time.monotonic() - t0:.1f} s")


@pytest.mark.lab
def test_two_nodes_on_loopback_give_the_self_launched_numbers(self_launched, tmp_path):
    """Two torchrun launches meet at a c10d rendezvous on 127.0.0.1, four ranks each."""
    t0 = time.monotonic()
    port = free_port()
    nodes = [torchrun("--nnodes", "2", "--node-rank", str(i), "--nproc-per-node", "4", "--rdzv-backend", "c10d",
                      "--rdzv-endpoint", f"127.0.0.1:{port}", out=tmp_path / f"node{i}") for i in (0, 1)]
    finished = [finish(node) for node in nodes]
    for code, _, stderr in finished:
        assert code == 0, stderr[-3000:]
    streams = [events for _, events, _ in finished]
    # the c10d rendezvous picks which launch holds global rank 0; that one alone writes events
    speaking = [events for events in streams if events]
    assert len(speaking) == 1, [len(events) for events in streams]
    assert_same_numbers(speaking[0], self_launched)
    assert "started by torchrun" in " ".join(e.get("text", "") for e in speaking[0])
    print(f"two-node torchrun on loopback, 2 x 4 ranks: {time.monotonic() - t0:.1f} s")


@pytest.mark.lab
def test_a_world_that_does_not_match_the_mesh_is_a_usage_error():
    code, events, stderr = finish(torchrun("--standalone", "--nproc-per-node", "2"))  # the toy needs 8
    assert code != 0
    assert "the launcher started 2 processes but tp*pp*dp = 2*2*2 = 8" in stderr
    assert all(e["event"] == "error" for e in events)


@pytest.mark.lab
def test_one_failing_rank_fails_the_run_fast_and_says_why():
    """Rank 1 loses MASTER_PORT; rank 0 would wait at the rendezvous until torchrun stops it."""
    t0 = time.monotonic()
    shell = 'if [ "$RANK" = 1 ]; then unset MASTER_PORT; fi; exec "$0" "$@"'
    code, events, stderr = finish(torchrun("--standalone", "--nproc-per-node", "2", no_python=(
        "sh", "-c", shell, sys.executable), lab_args=("--toy", "--json", "--set", "pp=1", "--set", "dp=1")))
    assert code != 0
    assert "MASTER_PORT is not" in stderr  # the usage error of rank 1, whose exit ends the run
    assert [e["message"] for e in events if e["event"] == "error"], "the failing rank's error reaches the stream"
    assert not any(e["event"] == "summary" for e in events)
    assert time.monotonic() - t0 < 60  # not the toy's 150 s process-group timeout


def test_a_launch_that_does_not_fit_the_mesh_is_refused_before_the_rendezvous(monkeypatch):
    for key, value in {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(LabUsageError, match=r"started 4 processes but tp\*pp\*dp = 2\*2\*2 = 8"):
        make_config(par, toy=True, seed=None, device=None)
    cfg = make_config(par, toy=True, seed=None, device=None, assignments=["dp=1"])
    assert cfg.tp * cfg.pp * cfg.dp == 4


def test_a_rank_other_than_0_leaves_no_run_folder_of_its_own(tmp_path, monkeypatch):
    """Under a launcher, only rank 0's run gets a folder under output/labs when --out is not given."""
    import io

    from labs._runtime import main

    monkeypatch.chdir(tmp_path)
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)
    assert main(["mdp", "--toy", "--json"], io.StringIO()) == 0
    assert not (tmp_path / "output").exists()
    monkeypatch.setenv("RANK", "0")
    assert main(["mdp", "--toy", "--json"], io.StringIO()) == 0
    assert len(list((tmp_path / "output" / "labs").iterdir())) == 1
