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
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from textual.app import App, SystemCommand
from textual import work
from textual.binding import Binding
from textual.screen import Screen

from llmcore_tui.core.course import Course
from llmcore_tui.tui.screens.help import HelpScreen
from llmcore_tui.tui.screens.today import TodayScreen

_T0 = float(os.environ.get("LLMCORE_BENCH_T0", "0") or 0)


@dataclass(frozen=True)
class ScreenEntry:
    """One screen of the app: its key, the mode it runs in, where it lives, and its words for the
    key's tooltip and the command palette. Bindings, the open action and the palette come from here."""

    key: str
    mode: str
    module: str  # under llmcore_tui.tui.screens
    screen: str  # the class in that module
    title: str
    tooltip: str
    palette: str


SCREENS: tuple[ScreenEntry, ...] = (
    ScreenEntry("t", "today", "today", "TodayScreen", "Today", "Today's plan",
                "Today's plan: the day you are on, what is owed, the next steps with their keys"),
    ScreenEntry("r", "review", "review", "ReviewScreen", "Review", "Review due and new cards",
                "Review due and new cards (space reveals, 1-4 rate, u undoes)"),
    ScreenEntry("m", "roadmap", "roadmap", "RoadmapScreen", "Roadmap", "The 14-day roadmap",
                "The 14-day plan and the status of each day"),
    ScreenEntry("l", "labs", "labs", "LabsScreen", "Labs", "Run the labs and watch their metrics live",
                "Run a lab (toy or full preset), watch its metrics, compare runs"),
    ScreenEntry("k", "quiz", "quiz", "QuizScreen", "Quiz", "Quiz on today's module (ctrl+o picks another)",
                "Quiz on today's module; misses come back in Review"),
    ScreenEntry("s", "stats", "stats", "StatsScreen", "Stats", "Retention, review heatmap, forecast, mastery by module",
                "True retention vs desired, 12-week review heatmap, 14-day forecast, mastery by module"),
    ScreenEntry("c", "calc", "calc", "CalcScreen", "Calculator", "Memory calculator: KV cache, weights, ZeRO, LoRA",
                "KV cache, weights, ZeRO training memory and LoRA by preset"),
)
SCREENS_BY_MODE = {entry.mode: entry for entry in SCREENS}


class LlmcoreApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "llmcore-tui"
    SUB_TITLE = "14 days to LLM post-training"
    MODES = {"today": TodayScreen}
    DEFAULT_MODE = "today"

    # the screens' own keys fill the footer; the seven screen keys are on Today and in Help (?),
    # so that no footer is cut at 80 columns (tests/test_layout.py)
    BINDINGS = [
        *(Binding(s.key, f"open('{s.mode}')", s.title, id=f"go.{s.mode}", tooltip=s.tooltip, show=False)
          for s in SCREENS),
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
    def action_open(self, mode: str) -> None:
        """Switch to a screen, importing it on first use (markdown, FSRS and charts load only then)."""
        if mode not in self._modes:
            import importlib

            entry = SCREENS_BY_MODE[mode]
            module = importlib.import_module(f"llmcore_tui.tui.screens.{entry.module}")
            self.add_mode(mode, getattr(module, entry.screen))
        self.switch_mode(mode)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for entry in SCREENS:
            yield SystemCommand(entry.title, entry.palette, partial(self.action_open, entry.mode))
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
        course = Course(self.course.store.reopen(), None, self.course.content_root, clock=self.course.clock,
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
