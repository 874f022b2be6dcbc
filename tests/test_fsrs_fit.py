"""Fitting FSRS-6 to the learner's history: a history simulated from known parameters, the
minimum, the child process, ``llmcore-tui optimize`` (prompt, --yes, --dry-run, --reset)."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import fsrs
import pytest
from typer.testing import CliRunner

from llmcore_tui.cli.commands import app
from llmcore_tui.cli.optimize import optimize
from llmcore_tui.core import fsrs_fit
from llmcore_tui.core.fsrs_fit import MIN_REVIEWS, Comparison, FitReport, NotEnoughReviews, Review, Scores
from llmcore_tui.core.srs import AGAIN, EASY, GOOD, HARD, NewItem, Srs, stored_parameters
from llmcore_tui.core.store import Store

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
DAY = 86_400.0
DEFAULT = list(fsrs.scheduler.DEFAULT_PARAMETERS)
# a learner who forgets much faster than the population: initial stabilities a quarter of the
# defaults, memories that grow more slowly with each recall (w8), a steeper forgetting curve (w20);
# studying on the default schedule, they recall far less often than the defaults predict
TRUE = [*DEFAULT[:20], 0.4]
TRUE[0:4] = [0.05, 0.2, 0.5, 2.0]
TRUE[8] = 0.8
CHANGED = [0, 1, 2, 3, 8, 20]

if "optimize" not in {c.name for c in app.registered_commands}:  # until cli/commands.py registers it
    app.command("optimize")(optimize)


def simulate(store: Store, cards: int, days: int, seed: int = 0, parameters: list[float] = TRUE) -> None:
    """A learner whose memory follows ``parameters``, studying on the app's default schedule (as a new
    learner does, before any fit): cards introduced over the first half of ``days``, each review late
    by 0-60 % of its interval, recalled with the retrievability the TRUE memory model gives at that
    moment (tracked by a scheduler of its own), and taking 3-20 s."""
    rng = random.Random(seed)
    srs = Srs(store)  # the app's scheduling: default parameters
    memory = fsrs.Scheduler(parameters=parameters, enable_fuzzing=False)
    truth: dict[str, fsrs.Card] = {}
    end = T0 + days * DAY
    for i in range(cards):
        card_id = f"sim-{i:03d}"
        item: NewItem | str = NewItem(card_id, "card", "mdp", 1)
        now = T0 + rng.uniform(0, days / 2) * DAY
        while now < end:
            when = datetime.fromtimestamp(now, timezone.utc)
            if card_id not in truth:
                truth[card_id] = fsrs.Card(due=when)
                rating = rng.choices((AGAIN, HARD, GOOD, EASY), (0.2, 0.1, 0.6, 0.1))[0]
            elif rng.random() < memory.get_card_retrievability(truth[card_id], when):
                rating = rng.choices((HARD, GOOD, EASY), (0.15, 0.75, 0.10))[0]
            else:
                rating = AGAIN
            truth[card_id] = memory.review_card(truth[card_id], fsrs.Rating(rating), review_datetime=when)[0]
            result = srs.rate(item, rating, now, duration_ms=rng.randint(3000, 20000))
            item = result.item_id
            now = result.due_ts + (result.due_ts - now) * rng.uniform(0, 0.6)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "p.db")
    yield store
    store.close()


def distance(parameters: list[float] | tuple[float, ...]) -> float:
    """How far from the true parameters, over the ones the simulation changed, each relative to its true value."""
    return sum(abs(parameters[i] - TRUE[i]) / TRUE[i] for i in CHANGED)


@pytest.mark.slow
def test_the_fit_beats_the_defaults_on_a_history_simulated_from_known_parameters(store):
    simulate(store, cards=200, days=150)
    history = fsrs_fit.load_history(store)
    assert fsrs_fit.check_enough(history) >= MIN_REVIEWS
    steps = []
    report = fsrs_fit.fit(history, steps.append, retention=False)  # the real child process
    assert [p.step for p in steps] == [1, 2, 3] and steps[0].steps == 3
    print(f"\n{len(history)} reviews, {report.cross_day} cross-day, {report.cards} cards")
    for name, c in (("in-sample", report.in_sample), ("held-out", report.held_out)):
        print(f"{name}: log-loss {c.default.log_loss:.4f} -> {c.fitted.log_loss:.4f}, "
              f"RMSE(bins) {c.default.rmse_bins:.4f} -> {c.fitted.rmse_bins:.4f} ({c.default.reviews} reviews, "
              f"gain {c.gain:+.1f} s.e.)")
    print(f"distance to the truth: default {distance(DEFAULT):.2f}, fitted {distance(report.parameters):.2f}")
    # Seeds 0-2 gave: in-sample gain 6.4-6.6 standard errors, log-loss -0.041..-0.051, RMSE(bins)
    # 0.10-0.12 -> 0.03-0.05; held-out (cards the fit never saw) gain 2.6-3.6, RMSE 0.10-0.13 -> 0.05-0.08.
    sample, held = report.in_sample, report.held_out
    assert sample.fitted.log_loss < sample.default.log_loss - 0.02
    assert sample.fitted.rmse_bins < 0.6 * sample.default.rmse_bins
    assert sample.gain > 4  # far beyond the noise of this many reviews
    assert held.gain > 1.5 and held.fitted.rmse_bins < 0.8 * held.default.rmse_bins  # it generalises
    assert distance(report.parameters) < 0.8 * distance(DEFAULT)  # toward the truth
    fitted_cards, scored_cards = fsrs_fit.held_out_split(history)
    cards = fsrs_fit.by_card(history)
    assert report.held_out.cards == len(scored_cards)
    assert report.held_out.default.reviews == sum(fsrs_fit.cross_day(cards[c]) for c in scored_cards)
    assert report.optimal_retention is None and report.retention_note == "not asked for"


def history_of(cards: int, reviews_per_card: int, gap_days: float = 2.0) -> list[Review]:
    return [Review(f"c{c}", GOOD, T0 + c + r * gap_days * DAY, 5000) for c in range(cards) for r in range(reviews_per_card)]


def test_below_the_minimum_the_fit_is_refused_saying_how_many_and_why():
    history = history_of(10, 60)  # 590 cross-day reviews
    with pytest.raises(NotEnoughReviews) as refused:
        fsrs_fit.fit(history, command=["false"])  # refused before any process starts
    message = str(refused.value)
    assert "590 of your 600 card reviews" in message and f"at least {MIN_REVIEWS}" in message
    assert "default parameters" in message
    same_day = [Review("c", GOOD, T0 + i * 600, None) for i in range(800)]  # reviews minutes apart teach nothing
    with pytest.raises(NotEnoughReviews, match="0 of your 800"):
        fsrs_fit.check_enough(same_day)


def test_only_the_first_64_reviews_of_a_card_and_gaps_of_a_day_count():
    history = history_of(1, 100) + [Review("c0", GOOD, T0 + 0.5 * DAY, None)]  # 12 h after the first review
    assert fsrs_fit.cross_day(fsrs_fit.by_card(history)["c0"]) == 62


def test_the_history_is_card_reviews_still_in_effect(store):
    srs = Srs(store, fuzz=False)
    srs.rate(NewItem("a", "card", "mdp", 1), GOOD, T0, duration_ms=4000)
    srs.rate("a", GOOD, T0 + 3 * DAY, duration_ms=3000)
    srs.rate("a", AGAIN, T0 + 9 * DAY)
    srs.undo(T0 + 9 * DAY + 5)  # the Again is taken back: neither it nor the undo row counts
    srs.rate(NewItem("quiz:q1", "quiz", "mdp", 1), AGAIN, T0)  # a quiz miss: not a card review
    assert fsrs_fit.load_history(store) == [Review("a", GOOD, T0, 4000), Review("a", GOOD, T0 + 3 * DAY, 3000)]


def test_the_held_out_cards_are_a_fixed_fifth_of_the_deck_by_reviews():
    history = history_of(20, 41)  # 40 cross-day reviews a card
    fitted, scored = fsrs_fit.held_out_split(history)
    assert len(fitted) == 16 and len(scored) == 4 and sorted(fitted + scored) == sorted(f"c{i}" for i in range(20))
    assert fsrs_fit.held_out_split(list(reversed(history))) == (fitted, scored)  # the same split every time
    assert scored != [f"c{i}" for i in range(16, 20)]  # not simply the newest cards
    request = fsrs_fit.worker_input(history)
    assert len(request["reviews"]) == 820 and len(request["fit_cards"]) == 16


def test_a_failing_child_is_a_clear_error(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("import sys\nprint('{\"step\": 1, \"steps\": 3, \"text\": \"x\"}')\n"
                      "print('ValueError: no luck', file=sys.stderr)\nsys.exit(1)\n")
    seen = []
    with pytest.raises(fsrs_fit.FitError, match=r"exit 1\): ValueError: no luck"):
        fsrs_fit.fit(history_of(20, 41), seen.append, command=["python", str(script)])
    assert seen == [fsrs_fit.Progress(1, 3, "x")]


# -- the command ------------------------------------------------------------------------------

FITTED = tuple(TRUE)


def canned(history, on_progress=None, **_) -> FitReport:
    """Stands in for the child process where the fit itself is not under test."""
    fsrs_fit.check_enough(history)
    if on_progress:
        on_progress(fsrs_fit.Progress(1, 3, "held-out check"))
    return canned_report(len(history))


def canned_report(reviews: int) -> FitReport:
    return FitReport(FITTED, reviews, 800, 20,
                     Comparison(Scores(0.40, 0.05, 800), Scores(0.35, 0.02, 800), 20, 0.01),
                     Comparison(Scores(0.41, 0.06, 160), Scores(0.37, 0.03, 160), 4, 0.01), 0.85, "simulated")


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run ``llmcore-tui --db ... ARGS`` on a database holding enough history; the fit is canned."""
    db = tmp_path / "p.db"
    with Store(db) as store:
        srs = Srs(store, fuzz=False)
        for c in range(20):
            srs.rate(NewItem(f"c{c}", "card", "mdp", 1), GOOD, T0 + c)
            for r in range(1, 41):
                srs.rate(f"c{c}", GOOD, T0 + c + r * 2 * DAY)
    monkeypatch.setattr(fsrs_fit, "fit", canned)
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, ["--db", str(db), "optimize", *args], input=input)

    run.db = db  # type: ignore[attr-defined]
    return run


def stored(db):
    with Store(db) as store:
        return stored_parameters(store)


def test_optimize_reports_both_figures_and_switches_only_when_asked(cli):
    result = cli(input="n\n")
    assert result.exit_code == 0, result.output
    assert "in-sample" in result.output and "held-out" in result.output
    assert "0.4000" in result.output and "5.00%" in result.output and "0.3700" in result.output
    assert "Suggested desired retention: 0.85 (now 0.90)" in result.output
    assert "better than the defaults (4.0 standard errors)" in result.output
    assert "kept the default parameters" in result.output
    assert stored(cli.db) is None

    result = cli("--dry-run")
    assert result.exit_code == 0 and "Switch" not in result.output and stored(cli.db) is None

    result = cli(input="y\n")
    assert result.exit_code == 0, result.output
    fit = stored(cli.db)
    assert fit is not None and fit.parameters == FITTED and fit.reviews == 820 and fit.cross_day == 800
    with Store(cli.db) as store:
        assert Srs(store).scheduler.parameters == FITTED  # the scheduler uses them from now on


def test_optimize_yes_switches_and_reset_returns_to_the_defaults(cli):
    assert cli("--yes").exit_code == 0 and stored(cli.db) is not None
    assert "fitted on" in cli("--dry-run").output  # says which parameters are in use
    result = cli("--reset")
    assert result.exit_code == 0 and "default FSRS-6 parameters" in result.output
    assert stored(cli.db) is None
    with Store(cli.db) as store:
        assert list(Srs(store).scheduler.parameters) == DEFAULT
    assert cli("--reset", "--yes").exit_code == 2  # --reset takes no other option


def test_optimize_refuses_below_the_minimum_with_exit_1(tmp_path):
    result = CliRunner().invoke(app, ["--db", str(tmp_path / "p.db"), "optimize", "--yes"])
    assert result.exit_code == 1
    assert "not enough reviews" in result.output and f"at least {MIN_REVIEWS}" in result.output
    assert "Traceback" not in result.output
