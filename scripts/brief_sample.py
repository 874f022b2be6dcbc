"""A sample technical brief from a simulated learner, and its screenshot in headless Chromium.

Builds a throwaway progress database on the shipped course: seven study days of reviews
(FSRS, seeded random ratings through the real review queue), a quiz sitting per opened module,
and real ``--toy`` runs of a few labs (child processes, as the app runs them; their times are
then moved onto the simulated days). Exports the brief as HTML and, with ``--screenshot``,
photographs it with headless Chromium (the image in docs/brief-screenshot.png comes from here):

    .venv/bin/python scripts/brief_sample.py --out /tmp/brief-sample.html \\
        --screenshot docs/brief-screenshot.png

Nothing is written outside --out, --screenshot and a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llmcore_tui.core import roadmap  # noqa: E402
from llmcore_tui.core.brief import write_brief  # noqa: E402
from llmcore_tui.core.clock import Clock  # noqa: E402
from llmcore_tui.core.course import Course  # noqa: E402
from llmcore_tui.core.srs import AGAIN, EASY, GOOD, HARD  # noqa: E402

DAY = 86400.0
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc).timestamp()  # day 1, 09:00 UTC
DAYS_DONE = 7


def simulate_reviews(course: Course, clock: Clock, rng: random.Random, day: int) -> int:
    """One study session on ``day``: everything due, then new cards, as the Review screen does."""
    clock.fixed = START + (day - 1) * DAY
    queue = course.review_queue()
    done = 0
    for _ in range(600):
        now = clock.now()
        item = queue.next(now)
        if item is None:
            break
        module = item.module if hasattr(item, "module") else item["module"]
        hard = roadmap.MODULE_DAYS.get(module, 1) / 14  # later modules are harder for this learner
        rating = rng.choices([AGAIN, HARD, GOOD, EASY], [0.08 + 0.25 * hard, 0.15, 0.6, 0.12])[0]
        queue.rate(item, rating, now, duration_ms=rng.randint(4000, 30000))
        clock.advance(rng.uniform(15, 60))
        done += 1
    return done


def simulate_quizzes(course: Course, rng: random.Random) -> None:
    from llmcore_tui.core.quiz import load_bank

    bank = load_bank(course.content_root / "quizzes")
    for day in range(1, DAYS_DONE):
        module = roadmap.BY_NUMBER[day].module
        questions = bank.for_module(module)[:8]
        if not questions:
            continue
        ts = START + (day - 1) * DAY + 6 * 3600
        skill = 0.95 - 0.07 * day
        sitting = uuid.uuid4().hex
        correct = 0
        with course.store.transaction() as conn:
            for i, q in enumerate(questions):
                ok = rng.random() < skill
                correct += ok
                conn.execute("INSERT INTO quiz_attempts(sitting, question_id, module, day, answer, correct, score,"
                             " attempted_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (sitting, q.id, module, day, "sample", int(ok), float(ok), ts + 30 * i))
            score = correct / len(questions)
            conn.execute("INSERT INTO quiz_sittings(id, module, day, started_ts, finished_ts, questions, correct,"
                         " score, passed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (sitting, module, day, ts, ts + 30 * len(questions), len(questions), correct, score,
                          int(score >= 0.8)))


def run_labs(course: Course, labs: list[str], root: Path) -> None:
    from labs.registry import BY_NAME
    from llmcore_tui.core.labruns import LabRunner

    runner = LabRunner(course.store, root=root)
    for lab in labs:
        print(f"running lab {lab} --toy ...", flush=True)
        handle = runner.start(lab, toy=True, seed=0)
        handle.wait()
        print(f"  {handle.status}", flush=True)
        run = course.store.query("SELECT started_ts, ended_ts FROM lab_runs WHERE id = ?", (handle.run_id,))[0]
        took = (run["ended_ts"] or run["started_ts"]) - run["started_ts"]
        day = BY_NAME[lab].day
        start = START + (day - 1) * DAY + 7 * 3600
        with course.store.transaction() as conn:
            conn.execute("UPDATE lab_runs SET started_ts = ?, ended_ts = ? WHERE id = ?",
                         (start, start + took, handle.run_id))


def screenshot(html: Path, png: Path, size: str = "1200,1600") -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no chromium on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", "--force-device-scale-factor=1", f"--window-size={size}",
                        f"--screenshot={png.resolve()}", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {png} ({png.stat().st_size // 1024} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("brief-sample.html"))
    parser.add_argument("--format", default="html")
    parser.add_argument("--lang", default="en", choices=["en", "zh"])
    parser.add_argument("--labs", default="mdp,td_learning", help="toy labs to run (comma-separated; '' for none)")
    parser.add_argument("--screenshot", type=Path, help="PNG to write with headless Chromium")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        clock = Clock(START)
        course = Course.open(Path(tmp) / "progress.db", REPO, clock=clock, fuzz=False, cache_dir=Path(tmp))
        try:
            course.settings.set("timezone", "UTC")
            course.settings.set("day_start_hour", 4)
            for day in range(1, DAYS_DONE + 1):
                print(f"day {day}: {simulate_reviews(course, clock, rng, day)} ratings", flush=True)
            simulate_quizzes(course, rng)
            labs = [lab for lab in args.labs.split(",") if lab]
            if labs:
                run_labs(course, labs, Path(tmp))
            clock.fixed = START + (DAYS_DONE - 1) * DAY + 11 * 3600
            write_brief(course, args.out, args.format, args.lang)
            print(f"wrote {args.out}")
        finally:
            course.close()
    if args.screenshot:
        screenshot(args.out, args.screenshot)


if __name__ == "__main__":
    main()
