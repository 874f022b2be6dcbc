"""FSRS-6 parameters fitted to the learner's own reviews (``llmcore-tui optimize``, Stats ``o``).

FSRS-6's default parameters are a population average. The ``fsrs`` package's optimizer fits the
21 parameters to one learner's review log by gradient descent (log-loss of the predicted recall
against what happened). It needs torch, so the fit runs in a child process,
``python -m llmcore_tui.workers.fsrs_fit IN.json OUT.json``, started like a lab (its own process
group, from :mod:`llmcore_tui.core.labruns`' spawner; it exits when our end of its stdin closes,
so it dies with this process). This module is what the CLI and the TUI import, and it stays
light: it reads the history, checks that there is enough of it, starts the child, relays its
progress, and parses its result. Nothing is switched here: the caller asks the learner first
and then stores the fit (:func:`llmcore_tui.core.srs.store_parameters`).

**What the fit reads.** Card reviews still in effect (an undone rating, and the undo row itself,
do not count, as in :mod:`llmcore_tui.core.stats`), our ratings 1-4 being fsrs's Again..Easy,
``duration_ms`` its review duration. Quiz questions are left out: one enters the scheduler only
when it is answered wrongly, so its history holds the misses and none of the hits.

**The minimum,** :data:`MIN_REVIEWS` = 640 reviews that came a day or more after the card's
previous review ("cross-day" reviews). Only those carry information about forgetting: the
optimizer scores nothing else (a same-day learning step says nothing about a curve measured in
days). It takes its gradient steps on mini-batches of 512 of them and, below one batch, returns
the default parameters unchanged, so 512 is the floor for any fit at all (it is also the
package's own floor for the optimal retention). The held-out check fits a second time on 80 %
of the history, which must itself reach 512: 512 / 0.8 = 640. Even then 21 parameters move
only a little (5 epochs of 2 mini-batches: 10 Adam steps from the defaults), which keeps a small
history from being over-fitted; the held-out figures say whether the fit generalises.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcore_tui.core.labruns import PARENT_ENV, spawn_child
from llmcore_tui.core.srs import StoredParameters
from llmcore_tui.core.stats import review_in_effect_sql
from llmcore_tui.core.store import Store

MIN_REVIEWS = 640  # cross-day reviews; why: the module docstring
BATCH = 512  # the optimizer's mini-batch: below it, fsrs returns the defaults unfitted
HELD_OUT_SHARE = 0.2  # cards holding about this share of the cross-day reviews are scored, not fitted
MAX_SEQ = 64  # the optimizer reads the first 64 reviews of each card
DAY_S = 86_400
WORKER = "llmcore_tui.workers.fsrs_fit"


class FitError(RuntimeError):
    """The fit could not be done: too little history, or the child process failed."""


class NotEnoughReviews(FitError):
    pass


@dataclass(frozen=True)
class Review:
    card: str
    rating: int  # 1 Again .. 4 Easy
    ts: float
    duration_ms: int | None


@dataclass(frozen=True)
class Progress:
    step: int
    steps: int
    text: str


@dataclass(frozen=True)
class Scores:
    """How well one parameter set predicts recall on a set of reviews (lower is better for both)."""

    log_loss: float  # mean binary cross-entropy of predicted recall against recalled (rating > Again)
    rmse_bins: float  # predictions binned by value; RMSE of mean predicted vs observed recall, weighted by bin size
    reviews: int  # the cross-day reviews scored


@dataclass(frozen=True)
class Comparison:
    default: Scores
    fitted: Scores
    cards: int  # the cards whose reviews were scored
    difference_se: float  # standard error of the mean per-review log-loss difference, fitted - default

    @property
    def gain(self) -> float:
        """How much lower the fitted log-loss is, in standard errors (2 or more: a clear gain)."""
        return (self.default.log_loss - self.fitted.log_loss) / self.difference_se if self.difference_se else 0.0


@dataclass(frozen=True)
class FitReport:
    parameters: tuple[float, ...]  # fitted on every card
    reviews: int
    cross_day: int
    cards: int
    in_sample: Comparison  # the full fit, scored on the reviews it was fitted to
    held_out: Comparison  # fitted on 80 % of the cards, scored on the others
    optimal_retention: float | None  # fsrs's suggestion for the desired retention (never applied here)
    retention_note: str  # why there is none, or how it was found

    def stored(self, now: float) -> StoredParameters:
        return StoredParameters(self.parameters, now, self.reviews, self.cross_day)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FitReport:
        def comparison(d: dict[str, Any]) -> Comparison:
            return Comparison(Scores(**d["default"]), Scores(**d["fitted"]), int(d["cards"]), float(d["difference_se"]))

        return cls(tuple(float(p) for p in data["parameters"]), int(data["reviews"]), int(data["cross_day"]),
                   int(data["cards"]), comparison(data["in_sample"]), comparison(data["held_out"]),
                   data["optimal_retention"], str(data["retention_note"]))


# -- the history ------------------------------------------------------------------------------

def load_history(store: Store) -> list[Review]:
    """Every card review still in effect, oldest first within each card."""
    rows = store.conn.execute(
        "SELECT r.item_id, r.rating, r.reviewed_ts, r.duration_ms FROM reviews r "
        f"JOIN srs_items s ON s.item_id = r.item_id WHERE s.kind = 'card' AND {review_in_effect_sql()} "
        "ORDER BY r.item_id, r.reviewed_ts, r.id")
    return [Review(item_id, int(rating), float(ts), None if ms is None else int(ms)) for item_id, rating, ts, ms in rows]


def by_card(history: Iterable[Review]) -> dict[str, list[Review]]:
    cards: dict[str, list[Review]] = {}
    for review in history:
        cards.setdefault(review.card, []).append(review)
    for reviews in cards.values():
        reviews.sort(key=lambda r: r.ts)
    return cards


def cross_day(reviews: list[Review]) -> int:
    """One card's reviews (oldest first) that the optimizer learns from: among its first 64, those a
    whole day (24 h) or more after the previous one."""
    head = reviews[:MAX_SEQ]
    return sum(1 for before, after in zip(head, head[1:]) if after.ts - before.ts >= DAY_S)


def check_enough(history: list[Review]) -> int:
    """The number of cross-day reviews; NotEnoughReviews, saying how many and why, below the minimum."""
    cards = by_card(history)
    count = sum(cross_day(reviews) for reviews in cards.values())
    if count < MIN_REVIEWS:
        raise NotEnoughReviews(
            f"not enough reviews to fit FSRS to your history: {count} of your {len(history)} card reviews came a "
            f"day or more after the card's previous review, and the fit needs at least {MIN_REVIEWS} of those. "
            f"Only such reviews show how fast you forget; the optimizer fits its 21 parameters in batches of "
            f"{BATCH} of them and a second fit on 80% of them checks the first. Until then the default "
            "parameters (a population average) stay in use.")
    return count


def held_out_split(history: list[Review]) -> tuple[list[str], list[str]]:
    """(cards to fit, cards to score): the cards in a fixed pseudo-random order (by a hash of the
    id, so a rerun splits alike and both parts look like the whole deck); the first ones until they
    hold 80 % of the cross-day reviews are fitted, the rest scored. The scored part always has
    some cross-day reviews, and with the minimum met the fitted part still reaches one batch."""
    cards = by_card(history)
    order = sorted(cards, key=lambda c: (zlib.crc32(c.encode()), c))
    total = sum(cross_day(cards[c]) for c in order)
    fitted: list[str] = []
    seen = 0
    for card in order:
        if seen >= (1 - HELD_OUT_SHARE) * total or seen + cross_day(cards[card]) >= total:
            break
        fitted.append(card)
        seen += cross_day(cards[card])
    return fitted, order[len(fitted):]


# -- the child process --------------------------------------------------------------------------

def worker_input(history: list[Review], retention: bool = True) -> dict[str, Any]:
    """What the child reads: cards as small integers (fsrs wants int ids), the held-out split."""
    ids = {card: i + 1 for i, card in enumerate(sorted(by_card(history)))}
    fitted, _ = held_out_split(history)
    return {"reviews": [[ids[r.card], r.rating, r.ts, r.duration_ms] for r in history],
            "fit_cards": sorted(ids[c] for c in fitted), "retention": retention}


def worker_command() -> list[str]:
    return [sys.executable, "-m", WORKER]


def fit(history: list[Review], on_progress: Callable[[Progress], None] | None = None, *,
        cancelled: Callable[[], bool] = lambda: False, command: list[str] | None = None,
        retention: bool = True) -> FitReport:
    """Fit in a child process and return its report; blocks, polling ``cancelled`` (then FitError).

    ``retention=False`` skips the optimal retention (a simulation of some seconds), for tests;
    ``command`` replaces ``python -m llmcore_tui.workers.fsrs_fit``.
    """
    check_enough(history)
    with tempfile.TemporaryDirectory(prefix="llmcore-fsrs-fit-") as tmp:
        folder = Path(tmp)
        (folder / "in.json").write_text(json.dumps(worker_input(history, retention)), encoding="utf-8")
        argv = [*(command or worker_command()), str(folder / "in.json"), str(folder / "out.json")]
        try:
            with open(folder / "stderr.txt", "wb") as stderr:
                # stdin stays open and unused: the child takes its end-of-file as this process's death
                proc = spawn_child(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                              start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1", **{PARENT_ENV: str(os.getpid())}))
        except OSError as exc:
            raise FitError(f"cannot start the fit ({' '.join(argv[:3])}): {exc}") from None
        try:
            _follow(proc, on_progress, cancelled)
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # its own process group: nothing of it stays behind
                except ProcessLookupError:
                    pass
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        if cancelled():
            raise FitError("the fit was cancelled")
        if proc.returncode != 0:
            lines = (folder / "stderr.txt").read_text(encoding="utf-8", errors="replace").strip().splitlines()
            raise FitError(f"the fit failed (exit {proc.returncode})" + (f": {lines[-1]}" if lines else ""))
        return FitReport.from_json(json.loads((folder / "out.json").read_text(encoding="utf-8")))


def _follow(proc: subprocess.Popen, on_progress: Callable[[Progress], None] | None,
            cancelled: Callable[[], bool]) -> None:
    """Relay the child's progress lines (JSON ``{"step", "steps", "text"}``) until it closes stdout."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    while not cancelled():
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            try:
                progress = Progress(**json.loads(line))
            except (ValueError, TypeError):
                continue  # not a progress line (a library's chatter): the result file is what counts
            if on_progress is not None:
                on_progress(progress)


# -- reporting ----------------------------------------------------------------------------------

def report_lines(report: FitReport, desired_retention: float) -> list[str]:
    """The figures, as the CLI prints them and the Stats screen shows them (plain text)."""
    def rows(c: Comparison) -> list[str]:
        return [f"  {name:<20} {s.log_loss:>8.4f} {100 * s.rmse_bins:>10.2f}%" for name, s in
                (("default parameters", c.default), ("fitted parameters", c.fitted))]

    held = report.held_out
    lines = [
        f"FSRS-6 fitted to {report.reviews} reviews of {report.cards} cards "
        f"({report.cross_day} a day or more after the card's previous review).",
        f"  {'':<20} {'log-loss':>8} {'RMSE (bins)':>11}",
        f"in-sample: the fit on every card, scored on the reviews it was fitted to "
        f"({report.in_sample.default.reviews} reviews; flatters the fit)",
        *rows(report.in_sample),
        f"held-out: fitted on 80% of the cards (a fixed draw), scored on the other {held.cards} "
        f"({held.default.reviews} reviews the fit never saw)",
        *rows(held),
        f"  log-loss gain of the fit: {report.in_sample.gain:+.1f} standard errors in-sample, "
        f"{held.gain:+.1f} held-out",
        "Lower is better for both. RMSE (bins): predictions grouped by predicted recall; the gap between "
        "mean predicted and observed recall per group, weighted by group size.",
    ]
    if report.optimal_retention is not None:
        lines.append(f"Suggested desired retention: {report.optimal_retention:.2f} (now {desired_retention:.2f}); "
                     f"{report.retention_note}. Not applied: `llmcore-tui settings set desired_retention "
                     f"{report.optimal_retention:.2f}` applies it.")
    else:
        lines.append(f"No suggested desired retention: {report.retention_note}.")
    return lines


def verdict(report: FitReport) -> str:
    """One line for the question before switching: do the fitted parameters predict the held-out
    cards better than the defaults, by more than the noise of that many reviews?"""
    gain = report.held_out.gain
    if gain >= 2:
        return f"On the held-out cards the fit predicts recall better than the defaults ({gain:.1f} standard errors)."
    if gain <= -2:
        return (f"On the held-out cards the fit predicts recall WORSE than the defaults ({-gain:.1f} standard errors); "
                "keep the defaults.")
    return (f"On the held-out cards the fit and the defaults are within noise of each other ({gain:+.1f} standard "
            "errors): switching changes little until there is more history.")
