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
from llmcore_tui.i18n import N_, _, localize_bindings, set_language
from llmcore_tui.tui.screens.help import HelpScreen
from llmcore_tui.tui.screens.today import TodayScreen

_T0 = float(os.environ.get("LLMCORE_BENCH_T0", "0") or 0)


@dataclass(frozen=True)
class ScreenEntry:
    """One screen of the app: its key, the mode it runs in, where it lives, and its words for the
    key's tooltip and the command palette. Bindings, the open action and the palette come from here.
    The words are msgids (English), translated where they are shown."""

    key: str
    mode: str
    module: str  # under llmcore_tui.tui.screens
    screen: str  # the class in that module
    title: str
    tooltip: str
    palette: str


SCREENS: tuple[ScreenEntry, ...] = (
    ScreenEntry("t", "today", "today", "TodayScreen", N_("Today"), N_("Today's plan"),
                N_("Today's plan: the day you are on, what is owed, the next steps with their keys")),
    ScreenEntry("r", "review", "review", "ReviewScreen", N_("Review"), N_("Review due and new cards"),
                N_("Review due and new cards (space reveals, 1-4 rate, u undoes)")),
    ScreenEntry("m", "roadmap", "roadmap", "RoadmapScreen", N_("Roadmap"), N_("The 14-day roadmap"),
                N_("The 14-day plan and the status of each day")),
    ScreenEntry("l", "labs", "labs", "LabsScreen", N_("Labs"), N_("Run the labs and watch their metrics live"),
                N_("Run a lab (toy or full preset), watch its metrics, compare runs")),
    ScreenEntry("k", "quiz", "quiz", "QuizScreen", N_("Quiz"), N_("Quiz on today's module (ctrl+o picks another)"),
                N_("Quiz on today's module; misses come back in Review")),
    ScreenEntry("s", "stats", "stats", "StatsScreen", N_("Stats"), N_("Retention, review heatmap, forecast, mastery by module"),
                N_("True retention vs desired, 12-week review heatmap, 14-day forecast, mastery by module")),
    ScreenEntry("c", "calc", "calc", "CalcScreen", N_("Calculator"), N_("Memory calculator: KV cache, weights, ZeRO, LoRA"),
                N_("KV cache, weights, ZeRO training memory and LoRA by preset")),
)
SCREENS_BY_MODE = {entry.mode: entry for entry in SCREENS}
# Textual's own words that this app shows (the footer's palette key, the palette's system commands)
TEXTUAL_WORDS = (
    N_("palette"), N_("Open the command palette"),
    N_("Theme"), N_("Change the current theme"), N_("Quit"), N_("Quit the application as soon as possible"),
    N_("Keys"), N_("Hide the keys and widget help panel"), N_("Show help for the focused widget and a summary of available keys"),
    N_("Minimize"), N_("Minimize the widget and restore to normal size"), N_("Maximize"), N_("Maximize the focused widget"),
    N_("Screenshot"), N_("Save an SVG 'screenshot' of the current screen"),
)


class LlmcoreApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "llmcore-tui"
    SUB_TITLE = N_("14 days to LLM post-training")
    MODES = {"today": TodayScreen}
    DEFAULT_MODE = "today"

    # the screens' own keys fill the footer; the seven screen keys are on Today and in Help (?),
    # so that no footer is cut at 80 columns (tests/test_layout.py)
    BINDINGS = [
        *(Binding(s.key, f"open('{s.mode}')", s.title, id=f"go.{s.mode}", tooltip=s.tooltip, show=False)
          for s in SCREENS),
        Binding("question_mark,f1", "help", N_("Help"), id="app.help", tooltip=N_("Keys and how the course works")),
        Binding("q", "quit", N_("Quit"), id="app.quit", tooltip=N_("Quit (everything is already saved)")),
    ]

    def __init__(self, course: Course, lang: str = "en"):
        """``lang`` is the interface language for the whole app, and the card language to start
        with (``z`` in Review switches the cards alone)."""
        set_language(lang)
        super().__init__()
        localize_bindings(self)
        self.sub_title = _(self.SUB_TITLE)
        self.course = course
        self.lang = lang  # the cards' language
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
            self.notify(_("New progress database created at {path}.").format(path=self.course.store.path.resolve()),
                        timeout=10)
        if self.readonly:
            self.sub_title = _("read-only: browsing, nothing is saved")
            self.notify(_("{path} is read-only: you can browse, but ratings, quiz answers, lab runs and settings "
                          "are not saved.").format(path=self.course.store.path), severity="warning", timeout=12)

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
        for command in super().get_system_commands(screen):
            yield SystemCommand(_(command.title), _(command.help), command.callback, command.discover)
        for entry in SCREENS:
            yield SystemCommand(_(entry.title), _(entry.palette), partial(self.action_open, entry.mode))
        yield SystemCommand(_("Export brief (HTML)"),
                            _("Write brief.html (key ideas, mastery, lab evidence) to the current folder"),
                            lambda: self.export_brief("html"))
        yield SystemCommand(_("Export brief (Markdown)"), _("Write brief.md to the current folder"),
                            lambda: self.export_brief("md"))
        yield SystemCommand(_("Help"), _("Keys and how the course works"), self.action_help)

    @work(thread=True, exclusive=True, exit_on_error=False, group="brief")
    def export_brief(self, fmt: str) -> None:
        """Write the technical brief next to where the app was started; report where, or why not."""
        from llmcore_tui.core.brief import BriefError, default_output, write_brief

        path = default_output(fmt).resolve()
        self.call_from_thread(self.notify, _("Writing {name}…").format(name=path.name), timeout=2)
        # its own connection: the UI thread may be in a transaction on the app's one
        course = Course(self.course.store.reopen(), None, self.course.content_root, clock=self.course.clock,
                        cache_dir=self.course.cache_dir)
        from llmcore_tui.core.store import StoreError

        try:
            write_brief(course, path, fmt=fmt, lang=self.lang)
        except (BriefError, OSError, StoreError) as exc:
            self.call_from_thread(self.notify, _("Brief not written: {error}").format(error=exc), severity="error",
                                  timeout=10)
            return
        finally:
            course.close()
        self.call_from_thread(self.notify, _("Brief written to {path}").format(path=path), timeout=8)

    def on_unmount(self) -> None:
        self.course.close()


def run_app(db: Path, lang: str | None) -> int:
    """Open the course and run the TUI; returns the process exit code. Errors go to stderr.
    The language: ``lang`` (--lang), else the stored ``lang`` setting, else the locale's."""
    import sys

    from llmcore_tui.cli.options import default_lang, prepare_store
    from llmcore_tui.core import labruns
    from llmcore_tui.core.paths import cache_dir, content_root
    from llmcore_tui.core.store import StoreError

    try:
        course = Course.open(db, content_root(), cache_dir=cache_dir())
        lang = lang or course.settings.get("lang") or default_lang()
        set_language(lang)
        prepare_store(course.store)  # says so when the database is new; marks runs a killed app left running
    except (StoreError, FileNotFoundError) as exc:
        print(_("error: {message}").format(message=exc), file=sys.stderr)
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
