"""Quiz: one question at a time — answer, see why, and get the score at the end.

Choice questions take letters (``B``, ``A,C``), numeric ones a number with or without a unit,
recall questions reveal a model answer and ask for a self-grade (y / p / n). Every answer is
stored as it is given; a miss comes back in Review as ``quiz:<id>`` (see core/quizrun.py).
"""

from __future__ import annotations

from rich.markdown import Markdown
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from llmcore_tui.core.mathtext import render_math
from llmcore_tui.core.quiz import Grade
from llmcore_tui.core.quizrun import QuizSitting, bank_of
from llmcore_tui.i18n import N_, Localized, _, ngettext, pick

LETTERS = "ABCDEFGH"
KINDS = {"single": N_("single choice"), "multiple": N_("multiple choice"), "numeric": N_("numeric"),
         "parametric": N_("numeric"), "recall": N_("recall")}


class ModulePicker(Localized, ModalScreen[str | None]):
    """Choose the module to quiz on."""

    BINDINGS = [Binding("escape", "dismiss(None)", N_("Cancel"), id="quiz.pick.cancel")]
    DEFAULT_CSS = """
    ModulePicker { align: center middle; }
    ModulePicker > OptionList { width: 60; height: auto; max-height: 80%; border: round $accent; }
    """

    def __init__(self, modules: list[tuple[str, str]], current: str | None):
        super().__init__()
        self.modules = modules
        self.current = current

    def compose(self) -> ComposeResult:
        yield OptionList(*[Option(label, id=module) for module, label in self.modules], id="quiz-modules")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        ids = [m for m, _label in self.modules]
        options.highlighted = ids.index(self.current) if self.current in ids else 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class QuizScreen(Localized, Screen):
    BINDINGS = [
        Binding("enter,space", "next", N_("Next"), id="quiz.next", tooltip=N_("Reveal the model answer, or go on")),
        Binding("y", "self_grade('yes')", N_("Knew it"), id="quiz.yes", tooltip=N_("Recall: I had it")),
        Binding("p", "self_grade('partly')", N_("Partly"), id="quiz.partly", tooltip=N_("Recall: I had part of it")),
        Binding("n", "self_grade('no')", N_("Missed"), id="quiz.no", tooltip=N_("Recall: I did not have it")),
        Binding("ctrl+o", "pick_module", N_("Module"), id="quiz.module", tooltip=N_("Quiz another module")),
        Binding("ctrl+n", "restart", N_("New sitting"), id="quiz.restart", tooltip=N_("Start this module's quiz again")),
        Binding("escape", "back", N_("Back"), id="quiz.back"),
    ]
    DEFAULT_CSS = """
    QuizScreen #quiz-body { height: 1fr; padding: 0 1; }
    QuizScreen #quiz-meta { color: $text-muted; }
    QuizScreen #quiz-feedback { margin-top: 1; }
    QuizScreen #quiz-input { dock: bottom; margin: 0 1 1 1; }
    """

    def __init__(self, module: str | None = None, seed: int | None = None, limit: int | None = None):
        super().__init__()
        self.module = module
        self.seed = seed
        self.limit = limit
        self.sitting: QuizSitting | None = None
        self.state = "empty"  # answer | reveal | feedback | done | empty
        self.last: Grade | None = None

    @property
    def course(self):
        return self.app.course  # type: ignore[attr-defined]

    @property
    def lang(self) -> str:
        return getattr(self.app, "lang", "en")

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="quiz-body"):
            yield Static(id="quiz-meta")
            yield Static(id="quiz-question")
            yield Static(id="quiz-feedback")
        yield Input(id="quiz-input")
        yield Footer()

    def on_mount(self) -> None:
        self.start(self.module)

    # -- flow -----------------------------------------------------------------------------
    def start(self, module: str | None) -> None:
        try:
            self.sitting = QuizSitting(self.course, module, seed=self.seed, limit=self.limit)
        except ValueError as exc:
            self.sitting = None
            self.state = "empty"
            self.query_one("#quiz-meta", Static).update("")
            self.query_one("#quiz-question", Static).update(_("No quiz to take: {reason}").format(reason=exc))
            self.query_one("#quiz-feedback", Static).update("")
            self.query_one("#quiz-input", Input).display = False
            self.refresh_bindings()
            return
        self.module = self.sitting.module
        self.last = None
        self.state = "answer"
        self.render_question()

    def render_question(self) -> None:
        sitting = self.sitting
        assert sitting is not None
        lang = self.lang
        meta = self.query_one("#quiz-meta", Static)
        question = self.query_one("#quiz-question", Static)
        feedback = self.query_one("#quiz-feedback", Static)
        entry = self.query_one("#quiz-input", Input)
        title = pick(sitting.title) or sitting.module
        so_far = sitting.summary()
        if self.state == "done":
            result = sitting.result or so_far
            meta.update(f"{sitting.module} · " + _("day {n}").format(n=sitting.day) + f" · {title}")
            verdict = _("passed ✓") if result.passed else _("not passed yet")
            question.update(Markdown(
                "## " + _("Score: {score} — {verdict}").format(score=f"{result.score:.0%}", verdict=verdict) + "\n\n"
                + _("{correct} of {total} fully right (partly right answers count in part); the pass mark is "
                    "{threshold}.").format(correct=result.correct, total=result.total,
                                           threshold=f"{result.threshold:.0%}") + "\n\n"
                + (_("The sitting is saved. Missed questions come back in Review (**r**).")
                   if result.correct < result.total else _("The sitting is saved.")) + "\n\n"
                + _("**ctrl+n** sits this quiz again, **ctrl+o** picks another module, **escape** goes back.")))
            feedback.update("")
            entry.display = False
            self.set_focus(None)
            self.refresh_bindings()
            return
        shown = sitting.current if self.state != "feedback" else sitting.questions[sitting.index - 1]
        assert shown is not None
        number = sitting.index + (0 if self.state == "feedback" else 1)
        meta.update(f"{sitting.module} · {title} · " + _("question {n} of {total} · {right} right so far · {kind}").format(
            n=number, total=sitting.total, right=so_far.correct, kind=_(KINDS.get(shown.kind, shown.kind))))
        text = shown.text_for(lang)
        choices = shown.choices_for(lang)
        if choices:
            text += "\n\n" + "\n".join(f"- **{LETTERS[i]}** {c}" for i, c in enumerate(choices))
        question.update(Markdown(render_math(text)))
        if self.state == "feedback":
            feedback.update(Markdown(self._feedback_text(self.last)))
            entry.display = False
            self.set_focus(None)
        elif self.state == "reveal":
            feedback.update(Markdown(render_math(
                "**" + _("Model answer:") + f"** {shown.model_answer_for(lang)}\n\n"
                + _("How did you do? **y** knew it · **p** partly · **n** missed it"))))
            entry.display = False
            self.set_focus(None)
        elif shown.kind == "recall":
            feedback.update(Markdown(_("Answer in your head (or on paper), then press **space** to see the model answer.")))
            entry.display = False
            self.set_focus(None)
        else:
            feedback.update("")
            entry.display = True
            entry.value = ""
            if shown.kind == "single":
                entry.placeholder = _("one letter A-{last}, then Enter").format(last=LETTERS[len(choices) - 1])
            elif shown.kind == "multiple":
                entry.placeholder = _("every right letter (A-{last}), e.g. A,C; then Enter").format(
                    last=LETTERS[len(choices) - 1])
            elif shown.unit_hint:
                entry.placeholder = _("a number in {unit} (other units welcome), {tolerance}; then Enter").format(
                    unit=shown.unit_hint, tolerance=shown.tolerance_hint)
            else:
                entry.placeholder = _("a number (other units welcome), {tolerance}; then Enter").format(
                    tolerance=shown.tolerance_hint)
            entry.focus()
        self.refresh_bindings()

    def _feedback_text(self, grade: Grade | None) -> str:
        if grade is None:
            return ""
        lang = self.lang
        if grade.correct:
            head = "### ✓ " + _("Right")
        elif grade.score > 0:
            head = "### ◐ " + _("Partly right ({score}) — the answer: {answer}").format(
                score=f"{grade.score:.0%}", answer=grade.expected_for(lang))
        else:
            head = "### ✗ " + _("Not quite — the answer: {answer}").format(answer=grade.expected_for(lang))
        tail = "" if grade.correct else "\n\n*" + _("This question will come back in Review.") + "*"
        more = (_("**Enter** to see your score.") if self.sitting and self.sitting.done
                else _("**Enter** for the next question."))
        return render_math(f"{head}\n\n{grade.explanation_for(lang)}{tail}\n\n{more}")

    def submit(self, given: object) -> None:
        sitting = self.sitting
        if sitting is None or sitting.current is None:
            return
        try:
            grade = sitting.answer(given, self.course.now())
        except Exception as exc:  # not stored: say so and stay on the question
            self.notify(_("Could not save the answer: {error}").format(error=exc), severity="error", timeout=8)
            return
        if not grade.valid:
            self.query_one("#quiz-feedback", Static).update(f"⚠ {grade.feedback_for(self.lang)}")
            self.notify(grade.feedback_for(self.lang), severity="warning", timeout=3)
            return
        self.last = grade
        self.state = "feedback"
        self.render_question()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.state == "answer" and event.value.strip():
            self.submit(event.value.strip())

    # -- actions --------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "self_grade":
            return self.state == "reveal"
        if action == "next":
            recall = self.sitting is not None and self.sitting.current is not None \
                and self.sitting.current.kind == "recall"
            return self.state == "feedback" or (self.state == "answer" and recall)
        if action == "restart":
            return self.sitting is not None
        return True

    def action_next(self) -> None:
        sitting = self.sitting
        if sitting is None:
            return
        if self.state == "answer" and sitting.current is not None and sitting.current.kind == "recall":
            self.state = "reveal"
        elif self.state == "feedback":
            if sitting.done:
                try:
                    sitting.finish(self.course.now())
                except Exception as exc:
                    self.notify(_("Could not save the sitting: {error}").format(error=exc), severity="error", timeout=8)
                    return
                self.state = "done"
            else:
                self.state = "answer"
        else:
            return
        self.render_question()

    def action_self_grade(self, verdict: str) -> None:
        if self.state == "reveal":
            self.submit(verdict)

    def action_pick_module(self) -> None:
        bank = bank_of(self.course)
        modules = []
        for module in bank.modules:
            info = bank.info(module)
            title = (pick(info.title) if info else "") or module
            day = _("day {n}").format(n=info.day) if info else ""
            count = len(bank.for_module(module))
            modules.append((module, f"{day:>6} · {title} (" + ngettext("{n} question", "{n} questions", count).format(
                n=count) + ")"))
        if not modules:
            self.notify(_("There are no quizzes in the course files."), severity="warning")
            return

        def chosen(module: str | None) -> None:
            if module:
                self.start(module)

        self.app.push_screen(ModulePicker(modules, self.module), chosen)

    def action_restart(self) -> None:
        if self.sitting is not None:
            self.seed = None
            self.start(self.sitting.module)

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            self.app.switch_mode("today")
