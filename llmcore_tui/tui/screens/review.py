"""Review: one card at a time — recall, reveal, rate; undo when a finger slips."""

from __future__ import annotations

import time
from typing import Any

from rich.markdown import Markdown
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static

from llmcore_tui.core.mathtext import render_math
from llmcore_tui.core.srs import RATING_NAMES, NewItem, ReviewQueue, interval_labels, next_due_ts


class ReviewScreen(Screen):
    BINDINGS = [
        Binding("space", "reveal", "Reveal", id="review.reveal", tooltip="Show the answer"),
        Binding("1", "rate(1)", "Again", id="review.again", show=False),
        Binding("2", "rate(2)", "Hard", id="review.hard", show=False),
        Binding("3", "rate(3)", "Good", id="review.good", show=False),
        Binding("4", "rate(4)", "Easy", id="review.easy", show=False),
        Binding("u", "undo", "Undo", id="review.undo", tooltip="Take back the last rating"),
        Binding("z", "toggle_lang", "EN/中文", id="review.lang", tooltip="Switch the card language"),
        Binding("r", "refresh", "Refresh", id="review.refresh", tooltip="Look again for due and new cards"),
        Binding("escape", "app.switch_mode('today')", "Back", id="review.back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.queue: ReviewQueue | None = None
        self.current: NewItem | dict[str, Any] | None = None
        self.revealed = False
        self.shown_at = 0.0
        self.reviewed = 0
        self._by_id: dict[str, Any] = {}
        self.latencies_ms: list[float] = []  # rating key -> next card painted (benchmarks read it)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="review-body"):
            yield Static(id="card-meta")
            yield Static(id="card-front")
            yield Static(id="card-back")
            yield Static(id="review-empty")
        with Horizontal(id="rating-bar"):
            for rating, name in RATING_NAMES.items():
                yield Button(f"{rating} {name}", id=f"rate-{rating}", variant="primary" if rating == 3 else "default")
        yield Footer()

    def on_mount(self) -> None:
        self.start()

    def on_screen_resume(self) -> None:
        self.start()

    @property
    def course(self):
        return self.app.course  # type: ignore[attr-defined]

    def start(self) -> None:
        self._by_id = self.course.deck.by_id
        self.queue = self.course.review_queue()
        self.show_next()

    # -- showing --------------------------------------------------------------------------
    @property
    def current_id(self) -> str | None:
        if self.current is None:
            return None
        return self.current.item_id if isinstance(self.current, NewItem) else self.current["item_id"]

    def show_next(self) -> None:
        assert self.queue is not None
        self.current = self.queue.next(self.course.now())
        self.revealed = False
        self.shown_at = time.monotonic()
        self.render_card()

    def _card_text(self, side: str) -> str:
        item_id = self.current_id or ""
        lang = self.app.lang  # type: ignore[attr-defined]
        if item_id.startswith("quiz:"):
            return self._quiz_text(item_id[len("quiz:"):], side, lang)
        card = self._by_id.get(item_id)
        if card is None:
            return f"*{item_id} is no longer in the course files; rate it to let it go, or undo.*"
        return render_math(card.text(side, lang))

    def _quiz_text(self, question_id: str, side: str, lang: str) -> str:
        """A quiz question missed in a sitting: front = question (and choices), back = answer."""
        import random

        from llmcore_tui.core.quiz import draw

        question = self.course.quiz_bank.by_id.get(question_id)
        if question is None:
            return f"*quiz question {question_id} is no longer in the course files; rate it to let it go, or undo.*"
        shown = draw(question, random.Random(question_id))  # same numbers on front and back
        if side == "front":
            text = shown.text_for(lang)
            choices = shown.choices_for(lang)
            if choices:
                text += "\n\n" + "\n".join(f"- **{'ABCDEFGH'[i]}** {c}" for i, c in enumerate(choices))
            return render_math(text)
        answer = "答案" if lang == "zh" else "Answer"
        return render_math(f"**{answer}:** {shown.expected_for(lang)}\n\n{shown.explanation_for(lang)}")

    def render_card(self) -> None:
        front = self.query_one("#card-front", Static)
        back = self.query_one("#card-back", Static)
        empty = self.query_one("#review-empty", Static)
        meta = self.query_one("#card-meta", Static)
        bar = self.query_one("#rating-bar")
        if self.current is None:
            front.display = back.display = bar.display = False
            meta.update(f"{self.reviewed} reviewed this session")
            empty.display = True
            empty.update(f"Nothing more to review right now. 🎉\n\n{self._next_due_text()}\n\n"
                         "Press [b]r[/b] to look again, [b]t[/b] for Today, or [b]u[/b] to undo the last rating.")
            return
        empty.display = False
        front.display = True
        item_id = self.current_id
        kind = "new" if isinstance(self.current, NewItem) else ("learning" if self.current["state"] in (1, 3) else "review")
        module = self.current.module if isinstance(self.current, NewItem) else self.current["module"]
        meta.update(f"{module} · {kind} · {item_id} · {self.reviewed} reviewed this session")
        front.update(Markdown(self._card_text("front")))
        back.display = self.revealed
        bar.display = self.revealed
        if self.revealed:
            back.update(Markdown(self._card_text("back")))
            labels = interval_labels(self.course.srs, item_id, self.course.now())
            for rating, name in RATING_NAMES.items():
                self.query_one(f"#rate-{rating}", Button).label = f"{rating} {name} · {labels[rating]}"

    def _next_due_text(self) -> str:
        from datetime import datetime

        now = self.course.now()
        due = next_due_ts(self.course.store, now)
        if due is None:
            return "No card is scheduled yet."
        hours = (due - now) / 3600
        when = datetime.fromtimestamp(due, self.course.tz)
        wait = f"{hours * 60:.0f} min" if hours < 1 else (f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days")
        return f"The next card comes {when:%a %d %b %H:%M} (in {wait})."

    # -- actions --------------------------------------------------------------------------
    def action_refresh(self) -> None:
        """A fresh queue: cards that fell due since the screen opened, and today's new cards."""
        self.start()

    def action_reveal(self) -> None:
        if self.current is not None and not self.revealed:
            self.revealed = True
            self.render_card()

    def action_rate(self, rating: int) -> None:
        if self.current is None or self.queue is None:
            return
        if not self.revealed:
            self.notify("Reveal the answer first (space).", severity="warning", timeout=2)
            return
        started = time.perf_counter()
        duration_ms = int((time.monotonic() - self.shown_at) * 1000)
        try:
            self.queue.rate(self.current, rating, self.course.now(), duration_ms)
        except Exception as exc:  # the rating was not stored: say so, stay on the card
            self.notify(f"Could not save the rating: {exc}", severity="error", timeout=8)
            return
        self.reviewed += 1
        self.show_next()
        self.call_after_refresh(lambda: self.latencies_ms.append((time.perf_counter() - started) * 1000))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id and event.button.id.startswith("rate-"):
            self.action_rate(int(event.button.id.split("-")[1]))

    def action_undo(self) -> None:
        if self.queue is None:
            return
        item_id = self.queue.undo(self.course.now())
        if item_id is None:
            self.notify("Nothing to undo.", timeout=2)
            return
        self.reviewed = max(0, self.reviewed - 1)
        row = self.course.srs.row(item_id)
        if row is None:
            self.current = next((i for i in self.queue.new_items if i.item_id == item_id), None)
        else:
            self.current = row
        self.revealed = False
        self.shown_at = time.monotonic()
        self.render_card()
        self.notify(f"Undid the last rating of {item_id}.", timeout=2)

    def action_toggle_lang(self) -> None:
        app = self.app
        app.lang = "zh" if app.lang == "en" else "en"  # type: ignore[attr-defined]
        self.course.settings.set("lang", app.lang)  # type: ignore[attr-defined]
        self.render_card()
