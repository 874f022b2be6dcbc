"""Pilot tests of the Labs screen with the fake lab: launch, live charts, crash, cancel, app exit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from llmcore_tui.core import labruns
from llmcore_tui.core.labruns import LabRunner
from llmcore_tui.tui.app import LlmcoreApp
from llmcore_tui.tui.screens.labs import LabsScreen
from tests.test_labruns import FAKE_COMMAND, alive, wait_gone

SIZE = (140, 44)


@pytest.fixture
def app(course, tmp_path: Path) -> LlmcoreApp:
    app = LlmcoreApp(course)
    app.lab_runner = LabRunner(course.store, root=tmp_path, command=FAKE_COMMAND, grace_s=1.0)  # type: ignore[attr-defined]
    return app


async def wait_for(pilot, predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the Labs screen")
        await pilot.pause(0.05)


async def open_labs(app: LlmcoreApp, pilot) -> LabsScreen:
    screen = LabsScreen()
    await app.push_screen(screen)
    await pilot.pause()
    return screen


def notifications(app: LlmcoreApp) -> list[tuple[str, str]]:
    return [(n.severity, n.message) for n in app._notifications]


def log_pid(screen: LabsScreen, label: str) -> int | None:
    for line in list(screen.live.logs if screen.live else []):
        if isinstance(line, str) and line.startswith(label + " "):
            return int(line.split()[1])
    return None


async def start_hanging_lab(app: LlmcoreApp, pilot) -> tuple[LabsScreen, labruns.RunHandle, int]:
    """Open Labs, press t on a lab that spawns a grandchild and runs until killed."""
    screen = await open_labs(app, pilot)
    await pilot.press("t")
    await wait_for(pilot, lambda: screen.active is not None and log_pid(screen, "grandchild") is not None)
    grandchild = log_pid(screen, "grandchild")
    assert alive(screen.active.pid) and alive(grandchild)
    return screen, screen.active, grandchild


async def test_the_days_lab_comes_first_and_enter_runs_its_toy_preset(app, course, monkeypatch):
    monkeypatch.setenv("FAKE_LAB_SET", "delay=0.1")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_labs(app, pilot)
        assert screen.selected_lab() == "mdp"  # day 1 of the roadmap
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.last_handle is not None)
        assert screen.last_handle.preset == "toy"
        await wait_for(pilot, lambda: len(screen.series.get("charts/return", [])) >= 3)
        assert screen.chart_keys == ["Loss per step", "Return against accuracy"]  # what the lab declares
        bar = screen.query_one("#labs-progress")
        assert bar.total == 10 and 0 < bar.progress
        await wait_for(pilot, lambda: screen.last_handle.done and screen.active is None)
        handle = screen.last_handle
        assert handle.status == "succeeded"
        await pilot.pause()
        assert bar.progress == 10
        assert screen.series["charts/return"][-1] == (10, 100.0)
        await wait_for(pilot, lambda: ("information", "mdp succeeded.") in notifications(app))
        run = labruns.get_run(course.store, handle.run_id)
        assert run.status == "succeeded" and run.headline["final_return"] == 100.0
        # the lab table shows the new status; the day's lab criterion is met
        assert "succeeded" in str(screen.query_one("#labs-table").get_row("mdp")[2])
        assert next(c for c in course.day_statuses()[0].criteria if c.name == "lab").met

        # n cycles the charts; h reloads the recorded run; x needs an earlier run
        first = list(screen.chart_keys)
        await pilot.press("n")
        assert screen.chart_keys != first
        await pilot.press("h")
        assert screen.shown_run == handle.run_id and not screen.showing_live
        assert len(screen.series["losses/loss"]) == 10
        await pilot.press("x")
        assert screen.compared == []
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.last_handle is not handle and screen.last_handle.done)
        await pilot.pause(0.3)
        await pilot.press("x")
        assert screen.compared == [screen.last_handle.run_id, handle.run_id]


async def test_a_crashing_lab_shows_its_error_and_the_app_keeps_running(app, course, monkeypatch):
    monkeypatch.setenv("FAKE_LAB_SET", "mode=crash")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_labs(app, pilot)
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.last_handle is not None and screen.last_handle.done
                       and screen.active is None)
        message = "mdp failed: the lab exited with code 1: RuntimeError: the fake lab crashed on purpose"
        await wait_for(pilot, lambda: ("error", message) in notifications(app))
        assert screen.query_one("#labs-panel").display
        assert "crashed on purpose" in str(screen.query_one("#labs-panel").content)
        assert labruns.get_run(course.store, screen.last_handle.run_id).status == "failed"
        await pilot.press("m")  # the app still answers
        assert app.current_mode == "roadmap"


async def test_cancel_kills_the_lab_and_its_children(app, course, monkeypatch):
    monkeypatch.setenv("FAKE_LAB_SET", "mode=hang,delay=0.05,grandchild=1,ignore_term=1")
    async with app.run_test(size=SIZE) as pilot:
        screen, handle, grandchild = await start_hanging_lab(app, pilot)
        await wait_for(pilot, lambda: len(screen.series.get("losses/loss", [])) >= 3)
        await pilot.press("t")  # one run at a time
        assert screen.last_handle is handle
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.active is None)
        assert handle.status == "cancelled"
        with pytest.raises(ProcessLookupError):
            os.kill(handle.pid, 0)
        assert wait_gone(grandchild)
        assert labruns.get_run(course.store, handle.run_id).status == "cancelled"
        await wait_for(pilot, lambda: ("warning", "mdp cancelled.") in notifications(app))  # notify is a message


async def test_review_keeps_working_while_a_lab_runs(app, course, monkeypatch):
    monkeypatch.setenv("FAKE_LAB_SET", "mode=hang,delay=0.05,charts=0")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_labs(app, pilot)
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.active is not None)
        await wait_for(pilot, lambda: len(screen.series.get("eval/accuracy", [])) >= 2)
        assert screen.chart_keys[0] == "eval/accuracy"  # no charts declared: the moving metrics, eval/ first
        await pilot.press("r", "space", "3")  # review a card in another mode
        await pilot.pause()
        assert course.store.query("SELECT item_id, rating FROM reviews") == [{"item_id": "mdp-one", "rating": 3}]
        seen = len(screen.live.series.get("losses/loss", []))
        await pilot.pause(0.5)
        assert len(screen.live.series.get("losses/loss", [])) > seen  # still following the lab
        await app.switch_mode("today")
        assert app.screen is screen
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.active is None)


async def test_quitting_the_app_cancels_a_running_lab(app, course, monkeypatch):
    monkeypatch.setenv("FAKE_LAB_SET", "mode=hang,delay=0.05,grandchild=1")
    async with app.run_test(size=SIZE) as pilot:
        _, handle, grandchild = await start_hanging_lab(app, pilot)
    assert handle.wait(5)
    assert not alive(handle.pid) and wait_gone(grandchild)
    assert handle.status == "cancelled"
    assert not labruns.active_runs()
