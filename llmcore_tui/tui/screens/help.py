"""Help: the keys of each screen and how the course works."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from llmcore_tui.i18n import N_, Localized, _

# one msgid per section: a change to one section leaves the other translations in place
HELP_SECTIONS = (
    N_("[b]llmcore-tui[/b] — 14 days of RL foundations, alignment and systems, by recall and by running the "
       "algorithms."),
    N_("""[b]Everywhere[/b]
  t  Today          r  Review          m  Roadmap
  l  Labs           k  Quiz            s  Stats           c  Calculator
  ctrl+p  command palette (every screen, theme, keys)
  ?  this help      q  quit — every rating is saved the moment you make it"""),
    N_("""[b]Review[/b]
  space  reveal the answer
  1 Again · 2 Hard · 3 Good · 4 Easy — the button shows when you will see the card next
  u  undo the last rating        z  switch English / 中文
  escape  back to Today"""),
    N_("""[b]Labs[/b]
  t or enter  run the toy preset    f  full preset    c  cancel the run
  h  headline of a finished run     x  compare runs   n  next chart
  escape  back to Today"""),
    N_("""[b]Roadmap[/b]
  arrows  move between days; the panel shows what the day asks for"""),
    N_("""[b]Today[/b]
  enter  start reviewing    +  ten more new cards today (catching up)    e  export the brief"""),
    N_("""[b]How it works[/b]
  New cards come from the days you have unlocked, in course order, up to a daily limit (llmcore-tui settings set new_per_day N).
  FSRS schedules each review for the moment you are about to forget; a review card is due for its whole study day, which starts at 4 am local time (setting day_start_hour).
  A day is done when its cards are introduced, none of its reviews are due, its lab has succeeded once and its quiz is passed. A done day stays done.
  Miss a day and the calendar moves on: Today names the earliest unfinished day and what it still owes, and + lets you catch up."""),
)


def help_text() -> str:
    return "\n\n".join(_(section) for section in HELP_SECTIONS) + "\n"


class HelpScreen(Localized, ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", N_("Close"), id="help.close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_text())

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss(result)
