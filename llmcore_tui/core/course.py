"""The course as the learner sees it: content + progress store + roadmap + scheduler.

This is the one object the CLI and the TUI talk to; it has no UI and no torch imports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from llmcore_tui.core import roadmap
from llmcore_tui.core.clock import Clock, day_bounds, local_zone, study_date
from llmcore_tui.core.content import ADVANCED_TAG, Deck, DeckSummary, load_deck, load_summary
from llmcore_tui.core.roadmap import Criterion, DayStatus
from llmcore_tui.core.settings import Settings
from llmcore_tui.core.srs import NewItem, ReviewQueue, Srs, introduced_ids, introduced_since
from llmcore_tui.core.store import Store
from llmcore_tui.i18n import _, ngettext, pick


@dataclass
class SharedReviewQueue(ReviewQueue):
    """A review queue that respects other instances on the same database.

    A new card is introduced in the store by its first rating (one transaction, as before).
    Before showing the next item this queue drops, from the front of its new cards, every card
    that has been introduced since the queue was built (by another app or command on the same
    database), and re-reads how many new cards today still allows, so two instances neither
    show the same new card twice nor exceed ``new_per_day`` together.
    """

    new_limit: Callable[[], int] | None = None  # new cards still allowed today, read from the store

    def next(self, now: float) -> NewItem | dict[str, Any] | None:
        while self.new_items and self.srs.row(self.new_items[0].item_id) is not None:
            self.new_items.pop(0)
        if self.new_limit is not None:
            self.new_left = self.new_limit()
        return super().next(now)


class Course:
    """``deck`` may be given, or loaded on first use: start-up needs only the deck's summary."""

    def __init__(self, store: Store, deck: Deck | None, content_root: Path, clock: Clock | None = None,
                 fuzz: bool = True, cache_dir: Path | None = None, summary: DeckSummary | None = None):
        self.store = store
        self._deck = deck
        self.cache_dir = cache_dir
        self.summary = summary or (DeckSummary.of(deck) if deck is not None else
                                   load_summary(content_root / "cards", roadmap.MODULE_DAYS, cache_dir))
        self.content_root = content_root
        self.clock = clock or Clock()
        self.settings = Settings(store)
        self.fuzz = fuzz
        self._srs: Srs | None = None
        self._quiz_bank = None
        self._ensure_start_date()

    @classmethod
    def open(cls, db_path: Path, content_root: Path, clock: Clock | None = None, cache_dir: Path | None = None,
             fuzz: bool = True) -> "Course":
        store = Store(db_path)
        return cls(store, None, content_root, clock, fuzz, cache_dir)

    @property
    def deck(self) -> Deck:
        if self._deck is None:
            self._deck = load_deck(self.content_root / "cards", roadmap.MODULE_DAYS, self.cache_dir)
        return self._deck

    # -- time -----------------------------------------------------------------------------
    @property
    def tz(self):
        return local_zone(self.settings.get("timezone"))

    def now(self) -> float:
        return self.clock.now()

    def study_date(self, ts: float | None = None) -> date:
        return study_date(self.now() if ts is None else ts, self.settings.get("day_start_hour"), self.tz)

    def today_bounds(self) -> tuple[float, float]:
        return day_bounds(self.study_date(), self.settings.get("day_start_hour"), self.tz)

    def _ensure_start_date(self) -> None:
        if self.store.get_setting("start_date") is None:
            self.store.set_setting("start_date", self.study_date().isoformat())

    def day_start_after(self, ts: float, days: int) -> float:
        """Start of the study day ``days`` after the one ``ts`` falls in (where a review card is due)."""
        hour = self.settings.get("day_start_hour")
        return day_bounds(study_date(ts, hour, self.tz) + timedelta(days=days), hour, self.tz)[0]

    @property
    def start_date(self) -> date:
        return date.fromisoformat(self.store.get_setting("start_date"))

    def calendar_day(self) -> int:
        return roadmap.calendar_day(self.start_date, self.study_date())

    # -- scheduling -----------------------------------------------------------------------
    @property
    def srs(self) -> Srs:
        if self._srs is None:
            self._srs = Srs(self.store, self.settings.get("desired_retention"), self.fuzz, self.day_start_after)
        return self._srs

    def new_items(self, unlocked: set[int], introduced: set[str] | None = None) -> list[NewItem]:
        """Cards of unlocked days never reviewed, in curriculum order: every core card by day, then
        the advanced ones (tag ``advanced``) by day, file order within a day. Advanced cards come
        after the core ones so that they never hold back the next day's core."""
        introduced = introduced_ids(self.store) if introduced is None else introduced
        cards = [c for c in self.deck.cards if c.day in unlocked and c.id not in introduced]
        cards.sort(key=lambda c: (ADVANCED_TAG in c.tags, c.day))  # stable: keeps file order otherwise
        return [NewItem(c.id, "card", c.module, c.day) for c in cards]

    def new_left_today(self) -> int:
        start, _ = self.today_bounds()
        extra = int(self.store.get_setting(f"extra_new:{self.study_date().isoformat()}") or 0)
        return max(0, self.settings.get("new_per_day") + extra - introduced_since(self.store, start))

    def review_queue(self) -> ReviewQueue:
        statuses = self.day_statuses()
        unlocked = {s.day.number for s in statuses if s.unlocked}
        return SharedReviewQueue(self.srs, self.new_items(unlocked), self.new_left_today(),
                                 self.settings.get("learn_ahead_minutes") * 60, new_limit=self.new_left_today)

    # -- roadmap --------------------------------------------------------------------------
    def module_counts(self, now: float) -> dict[str, tuple[int, int]]:
        rows = self.store.conn.execute(
            "SELECT module, count(*), coalesce(sum(due_ts <= ?), 0) FROM srs_items WHERE kind = 'card' GROUP BY module",
            (now,),
        ).fetchall()
        return {m: (int(n), int(d)) for m, n, d in rows}

    def advanced_introduced(self) -> dict[str, int]:
        """Per module, how many of its advanced cards have been introduced."""
        ids = [i for module_ids in self.summary.advanced.values() for i in module_ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.store.conn.execute(
            f"SELECT module, count(*) FROM srs_items WHERE kind = 'card' AND item_id IN ({marks}) GROUP BY module", ids)
        return {m: int(n) for m, n in rows}

    def _labs_passed(self) -> set[str]:
        return {r[0] for r in self.store.conn.execute("SELECT DISTINCT lab FROM lab_runs WHERE status = 'succeeded'")}

    def quizzes_passed(self) -> set[str]:
        """Modules with a passed quiz sitting (the roadmap's quiz criterion; the brief counts them)."""
        return {r[0] for r in self.store.conn.execute("SELECT DISTINCT module FROM quiz_sittings WHERE passed = 1")}

    @property
    def quiz_bank(self):
        """All quizzes, parsed and validated on first use."""
        if self._quiz_bank is None:
            from llmcore_tui.core.quiz import load_bank

            self._quiz_bank = load_bank(self.content_root / "quizzes")
        return self._quiz_bank

    def quiz_modules(self) -> set[str]:
        """Modules that have a quiz. Before the bank is loaded this reads only the quiz files'
        front matter, so the Today screen does not pay for parsing every question."""
        if self._quiz_bank is not None:
            return set(self._quiz_bank.modules)
        from llmcore_tui.core.content import card_files, parse_front_matter

        modules = set()
        folder = self.content_root / "quizzes"
        for path in card_files(folder) if folder.is_dir() else []:
            with path.open(encoding="utf-8", errors="replace") as handle:
                head = [handle.readline().rstrip("\n") for _ in range(12)]
            meta, _, _ = parse_front_matter(head, str(path))
            if meta.get("module", ("", 0))[0]:
                modules.add(meta["module"][0])
        return modules

    COMPLETED_KEY = "days_completed"  # setting: {day number: ISO study date it was completed}

    def day_statuses(self, counts: dict[str, tuple[int, int]] | None = None) -> list[DayStatus]:
        from labs.registry import labs_for_day

        now = self.now()
        counts = self.module_counts(now) if counts is None else counts
        totals = self.summary.totals
        advanced_in = self.advanced_introduced()
        labs_passed = self._labs_passed()
        quizzes_passed = self.quizzes_passed()
        quiz_modules = self.quiz_modules()
        calendar = self.calendar_day()
        completed: dict[str, str] = dict(self.store.get_setting(self.COMPLETED_KEY) or {})
        newly_completed = False
        statuses: list[DayStatus] = []
        for day in roadmap.DAYS:
            done_on = completed.get(str(day.number))
            unlocked = day.number <= calendar or bool(statuses and statuses[-1].done) or done_on is not None
            criteria: list[Criterion] = []
            total = totals.get(day.module, 0)
            introduced, due = counts.get(day.module, (0, 0))
            title = pick(day.title)  # the criteria are worded in the interface language
            if total:
                core = self.summary.core_total(day.module)
                extra = total - core
                extra_in = advanced_in.get(day.module, 0)
                core_in = min(introduced - extra_in, core)
                detail = _("{done}/{total} {module} cards introduced").format(done=core_in, total=core, module=title)
                if extra:
                    detail += " " + _("(+{done}/{total} advanced)").format(done=extra_in, total=extra)
                criteria.append(Criterion("cards", core_in >= core, detail))
                if done_on is None:  # old cards falling due later do not reopen a completed day
                    criteria.append(Criterion("reviews", due == 0, _("no {module} reviews due").format(module=title)
                                              if due == 0 else ngettext("{n} {module} review due", "{n} {module} reviews due",
                                                                        due).format(n=due, module=title)))
            for lab in labs_for_day(day.number):
                criteria.append(Criterion("lab", lab.name in labs_passed, (
                    _("lab {lab} succeeded") if lab.name in labs_passed else _("lab {lab} not yet run successfully"))
                    .format(lab=lab.name), lab.name))
            for quiz in (day.module, *roadmap.EXTRA_QUIZZES.get(day.number, ())):
                if quiz in quiz_modules:
                    passed = quiz in quizzes_passed
                    name = title if quiz == day.module else _(roadmap.EXTRA_QUIZ_TITLES.get(quiz, quiz))
                    criteria.append(Criterion("quiz", passed, (_("{quiz} quiz passed") if passed
                                                               else _("{quiz} quiz not passed yet")).format(quiz=name), quiz))
            if day.module == "brief":
                exported = self.store.get_setting("brief_exported_ts") is not None
                criteria.append(Criterion("brief", exported, _("brief exported") if exported else _("brief not exported yet")))
            if done_on is None and unlocked and all(c.met for c in criteria):
                done_on = self.study_date().isoformat()
                completed[str(day.number)] = done_on
                newly_completed = True
            statuses.append(DayStatus(day, unlocked, tuple(criteria), done_on))
        if newly_completed:
            self._record_completed(completed)
        return statuses

    def _record_completed(self, completed: dict[str, str]) -> None:
        import sqlite3

        try:
            self.store.set_setting(self.COMPLETED_KEY, completed)
        except sqlite3.OperationalError:  # a read-only database: the day shows done, unrecorded
            pass

    def learn_more_today(self, extra: int = 10) -> int:
        """Raise today's new-card limit by ``extra`` (catching up); returns today's new limit."""
        key = f"extra_new:{self.study_date().isoformat()}"
        total = int(self.store.get_setting(key) or 0) + extra
        self.store.set_setting(key, total)
        return self.settings.get("new_per_day") + total

    def today(self):
        """Today's plan (``core.plan``): focus day, what is owed, the next actions with their keys."""
        from llmcore_tui.core import plan

        return plan.build(self)

    def close(self) -> None:
        self.store.close()
