"""The FSRS fit, in a child process: ``python -m llmcore_tui.workers.fsrs_fit IN.json OUT.json``.

The only place that imports torch and ``fsrs.Optimizer``. Reads the history that
:func:`llmcore_tui.core.fsrs_fit.worker_input` wrote, fits twice (on 80 % of the cards for the
held-out check, then on every card), scores the default and the fitted parameters, asks fsrs for
the optimal desired retention, and writes the report that ``FitReport.from_json`` reads. Progress
goes to stdout as JSON lines ``{"step", "steps", "text"}``.

Scoring replays each card's reviews with a plain (float) scheduler, exactly as the optimizer
does: the first 64 reviews of a card; a review a day or more after the previous one is scored by
the recall the parameters predicted for that moment against whether it was recalled (any rating
but Again). Log-loss is the mean binary cross-entropy; RMSE (bins) groups the predictions into
20 equal bins of predicted recall and takes the root of the size-weighted mean squared gap
between each bin's mean prediction and its observed recall rate (a calibration error).

Exit codes: 0 written; 1 the fit failed (message on stderr); 2 a bad command line or input.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import sys
import threading
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmcore_tui.core.fsrs_fit import DAY_S, MAX_SEQ
from llmcore_tui.core.labruns import PARENT_ENV

BINS = 20
EPS = 1e-6


def die_with_parent() -> None:
    """Started by the app (``LLMCORE_LAB_PARENT`` set), our stdin is a pipe the app never writes:
    end-of-file means the app is gone (even after ``kill -9``), and the fit stops with it."""
    if not os.environ.pop(PARENT_ENV, ""):
        return

    def watch() -> None:  # os.read, not sys.stdin: a daemon thread blocked on a buffered file aborts the exit
        while os.read(0, 65536):
            pass
        os.killpg(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def say(step: int, steps: int, text: str) -> None:
    print(json.dumps({"step": step, "steps": steps, "text": text}), flush=True)


def review_logs(rows: list[list[Any]]) -> list[Any]:
    import fsrs

    return [fsrs.ReviewLog(card_id=int(card), rating=fsrs.Rating(int(rating)),
                           review_datetime=datetime.fromtimestamp(float(ts), timezone.utc),
                           review_duration=None if ms is None else int(ms))
            for card, rating, ts, ms in rows]


def histories(logs: list[Any]) -> dict[int, list[Any]]:
    cards: dict[int, list[Any]] = {}
    for log in logs:
        cards.setdefault(log.card_id, []).append(log)
    return {card: sorted(reviews, key=lambda r: r.review_datetime) for card, reviews in cards.items()}


def predictions(parameters: list[float], cards: dict[int, list[Any]]) -> list[tuple[float, int]]:
    """(predicted recall, recalled) for every scored review, replayed as the optimizer does."""
    import fsrs

    scheduler = fsrs.Scheduler(parameters=parameters, enable_fuzzing=False)
    out = []
    for card_id, reviews in cards.items():
        card = fsrs.Card(card_id=card_id, due=reviews[0].review_datetime)
        for review in reviews[:MAX_SEQ]:
            when = review.review_datetime
            if card.last_review is not None and (when - card.last_review).total_seconds() >= DAY_S:
                predicted = float(scheduler.get_card_retrievability(card, current_datetime=when))
                out.append((predicted, int(review.rating != fsrs.Rating.Again)))
            card, _ = scheduler.review_card(card, review.rating, review_datetime=when)
    return out


def losses(pairs: list[tuple[float, int]]) -> list[float]:
    """Each review's binary cross-entropy (predictions clipped away from 0 and 1)."""
    return [-math.log(min(max(p, EPS), 1 - EPS) if y else 1 - min(max(p, EPS), 1 - EPS)) for p, y in pairs]


def scores(pairs: list[tuple[float, int]]) -> dict[str, float | int]:
    n = len(pairs)
    bins: dict[int, list[tuple[float, int]]] = {}
    for p, y in pairs:
        bins.setdefault(min(int(p * BINS), BINS - 1), []).append((p, y))
    squared = sum(len(b) * (sum(p for p, _ in b) / len(b) - sum(y for _, y in b) / len(b)) ** 2 for b in bins.values())
    return {"log_loss": sum(losses(pairs)) / n, "rmse_bins": math.sqrt(squared / n), "reviews": n}


def comparison(default: list[float], fitted: list[float], cards: dict[int, list[Any]]) -> dict[str, Any]:
    """Both parameter sets scored on the same reviews, and the standard error of the mean
    per-review difference in log-loss (paired: the same reviews, so most noise cancels)."""
    before, after = predictions(default, cards), predictions(fitted, cards)
    diffs = [a - b for a, b in zip(losses(after), losses(before))]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    return {"default": scores(before), "fitted": scores(after), "cards": len(cards), "difference_se": se}


def optimal_retention(logs: list[Any], parameters: list[float]) -> tuple[float | None, str]:
    """fsrs's optimal desired retention, from the cards whose every review has a duration."""
    from fsrs import Optimizer

    cards = histories(logs)
    timed = [log for reviews in cards.values() if all(r.review_duration is not None for r in reviews) for log in reviews]
    if len(timed) < 512:
        return None, (f"fsrs needs at least 512 reviews with a recorded duration (whole cards), "
                      f"and {len(timed)} have one")
    retention = Optimizer(timed).compute_optimal_retention(parameters)
    return float(retention), (f"the retention in 0.70-0.95 that fsrs's simulation finds cheapest in review time "
                              f"per card remembered, from {len(timed)} timed reviews")


def missing_packages() -> list[str]:
    import importlib.util

    return [name for name in ("torch", "pandas", "tqdm") if importlib.util.find_spec(name) is None]


def run(request: dict[str, Any]) -> dict[str, Any]:
    import fsrs

    default = list(fsrs.scheduler.DEFAULT_PARAMETERS)
    logs = review_logs(request["reviews"])
    fit_cards = set(request["fit_cards"])
    steps = 4 if request.get("retention", True) else 3
    say(1, steps, f"held-out check: fitting on {len(fit_cards)} of the cards")
    part = [log for log in logs if log.card_id in fit_cards]
    part_fit = [float(p) for p in fsrs.Optimizer(part).compute_optimal_parameters()]
    say(2, steps, "fitting on every card")
    fitted = [float(p) for p in fsrs.Optimizer(logs).compute_optimal_parameters()]
    say(3, steps, "scoring the default and the fitted parameters")
    cards = histories(logs)
    others = {card: reviews for card, reviews in cards.items() if card not in fit_cards}
    report = {
        "parameters": fitted, "reviews": len(logs), "cards": len(cards),
        "cross_day": sum(1 for reviews in cards.values() for a, b in zip(reviews[:MAX_SEQ], reviews[1:MAX_SEQ])
                         if (b.review_datetime - a.review_datetime).total_seconds() >= DAY_S),
        "in_sample": comparison(default, fitted, cards),
        "held_out": comparison(default, part_fit, others),
        "optimal_retention": None, "retention_note": "not asked for",
    }
    if request.get("retention", True):
        say(4, steps, "simulating review time against desired retention")
        report["optimal_retention"], report["retention_note"] = optimal_retention(logs, fitted)
    return report


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m llmcore_tui.workers.fsrs_fit IN.json OUT.json", file=sys.stderr)
        return 2
    die_with_parent()
    missing = missing_packages()
    if missing:  # fsrs's optimizer would say only that it "is not installed"
        print(f"the FSRS fit needs torch, pandas and tqdm; missing: {', '.join(missing)} (`make run` installs them)",
              file=sys.stderr)
        return 1
    try:
        request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {argv[0]}: {exc}", file=sys.stderr)
        return 2
    try:
        report = run(request)
    except Exception as exc:  # the traceback for whoever reads stderr.txt; the parent shows the last line
        traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out = Path(argv[1])
    out.with_suffix(".tmp").write_text(json.dumps(report), encoding="utf-8")
    out.with_suffix(".tmp").replace(out)  # whole or absent
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
