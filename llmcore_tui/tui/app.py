"""The Textual app: a thin face over ``llmcore_tui.core.course.Course``.

Screens ask the course for what to show and send the user's intent back; they never touch
SQLite, FSRS or a lab directly. Nothing here imports torch: labs run as child processes.

A read-only database opens for browsing: the title says so, and an action that would write
is refused with a message instead of ending the app. SIGTERM and SIGHUP (the terminal closed)
cancel the running labs, record them, and end the app.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual import work
from textual.binding import Binding
from textual.screen import Screen

from llmcore_tui.core.course import Course
from llmcore_tui.tui.screens.help import HelpScreen
from llmcore_tui.tui.screens.today import TodayScreen

_T0 = float(os.environ.get("LLMCORE_BENCH_T0", "0") or 0)


class LlmcoreApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "llmcore-tui"
    SUB_TITLE = "14 days to LLM post-training"
    MODES = {"today": TodayScreen}
    DEFAULT_MODE = "today"

    # the screens' own keys fill the footer; the seven screen keys are on Today and in Help (?),
    # so that no footer is cut at 80 columns (tests/test_layout.py)
    BINDINGS = [
        Binding("t", "switch_mode('today')", "Today", id="go.today", tooltip="Today's plan", show=False),
        Binding("r", "review", "Review", id="go.review", tooltip="Review due and new cards", show=False),
        Binding("m", "roadmap", "Roadmap", id="go.roadmap", tooltip="The 14-day roadmap", show=False),
        Binding("l", "labs", "Labs", id="go.labs", tooltip="Run the labs and watch their metrics live", show=False),
        Binding("k", "quiz", "Quiz", id="go.quiz", tooltip="Quiz on today's module (ctrl+o picks another)", show=False),
        Binding("s", "stats", "Stats", id="go.stats", tooltip="Retention, review heatmap, forecast, mastery by module", show=False),
        Binding("c", "calc", "Calculator", id="go.calc", tooltip="Memory calculator: KV cache, weights, ZeRO, LoRA", show=False),
        Binding("question_mark,f1", "help", "Help", id="app.help", tooltip="Keys and how the course works"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit (everything is already saved)"),
    ]

    def __init__(self, course: Course, lang: str = "en"):
        super().__init__()
        self.course = course
        self.lang = lang
        self._theme_loaded = False
        self.first_paint_s: float | None = None

    @property
    def readonly(self) -> bool:
        return self.course.store.readonly

    def on_mount(self) -> None:
        saved = self.course.settings.get("theme")
        if saved in self.available_themes:
            self.theme = saved
        self._theme_loaded = True
        if self.course.store.created:  # a typo in --db must not look like lost progress
            self.notify(f"New progress database created at {self.course.store.path.resolve()}.", timeout=10)
        if self.readonly:
            self.sub_title = "read-only: browsing, nothing is saved"
            self.notify(f"{self.course.store.path} is read-only: you can browse, but ratings, quiz answers, "
                        "lab runs and settings are not saved.", severity="warning", timeout=12)

    def watch_theme(self, theme: str) -> None:
        if self._theme_loaded and not self.readonly and theme != self.course.settings.get("theme"):
            self.course.settings.set("theme", theme)

    async def run_action(self, action, default_namespace=None, namespaces=None) -> bool:  # type: ignore[override]
        """Every key binding goes through here: a write refused by a read-only database becomes a
        message, not the end of the app."""
        from llmcore_tui.core.store import ReadOnlyStoreError

        try:
            return await super().run_action(action, default_namespace, namespaces)
        except ReadOnlyStoreError as exc:
            self.notify(str(exc), severity="warning", timeout=8)
            return True

    def mark_first_paint(self) -> None:
        """Called by the Today screen after its first refresh (used by benchmarks/startup.py)."""
        if self.first_paint_s is None and _T0:
            self.first_paint_s = time.time() - _T0
            out = os.environ.get("LLMCORE_BENCH_OUT")
            if out:
                Path(out).write_text(f"{self.first_paint_s:.6f}\n")
            if os.environ.get("LLMCORE_BENCH_EXIT"):
                self.exit(0)

    # -- navigation -----------------------------------------------------------------------
    def action_review(self) -> None:
        self._open("review", "review", "ReviewScreen")  # markdown & FSRS load on first use

    def _open(self, mode: str, module: str, screen: str) -> None:
        """Switch to a screen's mode, importing the screen on first use (keeps start-up light)."""
        if mode not in self._modes:
            import importlib

            self.add_mode(mode, getattr(importlib.import_module(f"llmcore_tui.tui.screens.{module}"), screen))
        self.switch_mode(mode)

    def action_roadmap(self) -> None:
        self._open("roadmap", "roadmap", "RoadmapScreen")

    def action_labs(self) -> None:
        self._open("labs", "labs", "LabsScreen")

    def action_quiz(self) -> None:
        self._open("quiz", "quiz", "QuizScreen")

    def action_stats(self) -> None:
        self._open("stats", "stats", "StatsScreen")

    def action_calc(self) -> None:
        self._open("calc", "calc", "CalcScreen")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Today", "Today's plan: day of the roadmap, cards due, what to do next",
                            lambda: self.switch_mode("today"))
        yield SystemCommand("Review", "Review due and new cards (space reveals, 1-4 rate, u undoes)",
                            self.action_review)
        yield SystemCommand("Roadmap", "The 14-day plan and the status of each day",
                            self.action_roadmap)
        yield SystemCommand("Labs", "Run a lab (toy or full preset), watch its metrics, compare runs", self.action_labs)
        yield SystemCommand("Quiz", "Quiz on today's module; misses come back in Review", self.action_quiz)
        yield SystemCommand("Calculator", "KV cache, weights, ZeRO training memory and LoRA by preset", self.action_calc)
        yield SystemCommand("Stats", "True retention vs desired, 12-week review heatmap, 14-day forecast, mastery by module",
                            self.action_stats)
        yield SystemCommand("Export brief (HTML)", "Write brief.html (key ideas, mastery, lab evidence) to the current folder",
                            lambda: self.export_brief("html"))
        yield SystemCommand("Export brief (Markdown)", "Write brief.md to the current folder",
                            lambda: self.export_brief("md"))
        yield SystemCommand("Help", "Keys and how the course works", self.action_help)

    @work(thread=True, exclusive=True, exit_on_error=False, group="brief")
    def export_brief(self, fmt: str) -> None:
        """Write the technical brief next to where the app was started; report where, or why not."""
        from llmcore_tui.core.brief import BriefError, default_output, write_brief

        path = default_output(fmt).resolve()
        self.call_from_thread(self.notify, f"Writing {path.name}…", timeout=2)
        # its own connection: the UI thread may be in a transaction on the app's one
        course = Course.open(self.course.store.path, self.course.content_root, clock=self.course.clock,
                             cache_dir=self.course.cache_dir)
        from llmcore_tui.core.store import StoreError

        try:
            write_brief(course, path, fmt=fmt, lang=self.lang)
        except (BriefError, OSError, StoreError) as exc:
            self.call_from_thread(self.notify, f"Brief not written: {exc}", severity="error", timeout=10)
            return
        finally:
            course.close()
        self.call_from_thread(self.notify, f"Brief written to {path}", timeout=8)

    def on_unmount(self) -> None:
        self.course.close()


def run_app(db: Path, lang: str) -> int:
    """Open the course and run the TUI; returns the process exit code. Errors go to stderr."""
    import sys

    from llmcore_tui.cli.options import prepare_store
    from llmcore_tui.core import labruns
    from llmcore_tui.core.paths import cache_dir, content_root
    from llmcore_tui.core.store import StoreError

    try:
        course = Course.open(db, content_root(), cache_dir=cache_dir())
        prepare_store(course.store)  # says so when the database is new; marks runs a killed app left running
    except (StoreError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    app = LlmcoreApp(course, lang)

    def on_signal(signum: int) -> None:  # the labs are cancelled and recorded by now
        import threading

        app.exit(return_code=128 + signum)
        # a terminal that is gone can leave the app unable to finish: end it regardless
        threading.Timer(5.0, os._exit, args=(128 + signum,)).start()

    labruns.install_signal_handlers(then=on_signal)
    app.run()
    return app.return_code or 0
