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
from llmcore_tui.i18n import N_, Localized, _


class ReviewScreen(Localized, Screen):
    BINDINGS = [
        Binding("space", "reveal", N_("Reveal"), id="review.reveal", tooltip=N_("Show the answer")),
        Binding("1", "rate(1)", N_("Again"), id="review.again", show=False),
        Binding("2", "rate(2)", N_("Hard"), id="review.hard", show=False),
        Binding("3", "rate(3)", N_("Good"), id="review.good", show=False),
        Binding("4", "rate(4)", N_("Easy"), id="review.easy", show=False),
        Binding("u", "undo", N_("Undo"), id="review.undo", tooltip=N_("Take back the last rating")),
        Binding("z", "toggle_lang", "EN/中文", id="review.lang", tooltip=N_("Switch the card language")),
        Binding("r", "refresh", N_("Refresh"), id="review.refresh", tooltip=N_("Look again for due and new cards")),
        Binding("escape", "app.switch_mode('today')", N_("Back"), id="review.back"),
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
                yield Button(f"{rating} {_(name)}", id=f"rate-{rating}", variant="primary" if rating == 3 else "default")
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
            return "*" + _("{item} is no longer in the course files; rate it to let it go, or undo.").format(item=item_id) + "*"
        return render_math(card.text(side, lang))

    def _quiz_text(self, question_id: str, side: str, lang: str) -> str:
        """A quiz question missed in a sitting: front = question (and choices), back = answer."""
        import random

        from llmcore_tui.core.quiz import draw

        question = self.course.quiz_bank.by_id.get(question_id)
        if question is None:
            return "*" + _("{item} is no longer in the course files; rate it to let it go, or undo.").format(
                item=f"quiz:{question_id}") + "*"
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
            meta.update(_("{n} reviewed this session").format(n=self.reviewed))
            empty.display = True
            empty.update(_("Nothing more to review right now. 🎉") + f"\n\n{self._next_due_text()}\n\n"
                         + _("Press [b]r[/b] to look again, [b]t[/b] for Today, or [b]u[/b] to undo the last rating."))
            return
        empty.display = False
        front.display = True
        item_id = self.current_id
        kind = _("new") if isinstance(self.current, NewItem) else (
            _("learning") if self.current["state"] in (1, 3) else _("review"))
        module = self.current.module if isinstance(self.current, NewItem) else self.current["module"]
        meta.update(f"{module} · {kind} · {item_id} · " + _("{n} reviewed this session").format(n=self.reviewed))
        front.update(Markdown(self._card_text("front")))
        back.display = self.revealed
        bar.display = self.revealed
        if self.revealed:
            back.update(Markdown(self._card_text("back")))
            labels = interval_labels(self.course.srs, item_id, self.course.now())
            for rating, name in RATING_NAMES.items():
                self.query_one(f"#rate-{rating}", Button).label = f"{rating} {_(name)} · {labels[rating]}"

    def _next_due_text(self) -> str:
        from datetime import datetime

        now = self.course.now()
        due = next_due_ts(self.course.store, now)
        if due is None:
            return _("No card is scheduled yet.")
        hours = (due - now) / 3600
        when = datetime.fromtimestamp(due, self.course.tz)
        wait = (_("{n} min").format(n=f"{hours * 60:.0f}") if hours < 1 else
                _("{n} h").format(n=f"{hours:.0f}") if hours < 48 else _("{n} days").format(n=f"{hours / 24:.0f}"))
        return _("The next card comes {when} (in {wait}).").format(when=when.strftime(_("%a %d %b %H:%M")), wait=wait)

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
            self.notify(_("Reveal the answer first (space)."), severity="warning", timeout=2)
            return
        started = time.perf_counter()
        duration_ms = int((time.monotonic() - self.shown_at) * 1000)
        try:
            self.queue.rate(self.current, rating, self.course.now(), duration_ms)
        except Exception as exc:  # the rating was not stored: say so, stay on the card
            self.notify(_("Could not save the rating: {error}").format(error=exc), severity="error", timeout=8)
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
            self.notify(_("Nothing to undo."), timeout=2)
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
        self.notify(_("Undid the last rating of {item}.").format(item=item_id), timeout=2)

    def action_toggle_lang(self) -> None:
        """The cards' language, for this session; the interface keeps its language (the stored
        ``lang`` setting chooses both at the next start, so this key does not write it)."""
        app = self.app
        app.lang = "zh" if app.lang == "en" else "en"  # type: ignore[attr-defined]
        self.render_card()
