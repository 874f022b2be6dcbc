"""Start-up and review-loop latency on a large history.

Builds a course of 50,000 cards and a database with 50,000 scheduled items and 500,000
reviews, then measures

1. process start → first rendered Today screen, for the real ``llmcore-tui`` in a
   pseudo-terminal (median of several runs after one warm-up that fills the content cache);
2. rating key → next card shown, driving the Review screen with Textual's Pilot.

Targets (issue 2): first screen < 0.6 s; rating to next card < 30 ms.

    .venv/bin/python benchmarks/startup.py [--cards 50000] [--reviews 500000] [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import pty
import random
import select
import signal
import sqlite3
import statistics
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llmcore_tui.core.roadmap import DAYS  # noqa: E402
from llmcore_tui.core.store import Store  # noqa: E402


def build_content(root: Path, n_cards: int) -> None:
    cards = root / "cards"
    cards.mkdir(parents=True)
    days = [d for d in DAYS if d.number <= 13]
    per_module = n_cards // len(days)
    for day in days:
        lines = [f"---\nmodule: {day.module}\nday: {day.number}\ntitle.en: {day.title['en']}\ntitle.zh: {day.title['zh']}\n---\n"]
        for i in range(per_module):
            lines.append(
                f"## {day.module.replace('_', '-')}-{i}\ntags: bench\n\n### front.en\nQuestion {i} about $\\gamma^{{k}} r_{{t+k}}$?\n\n"
                f"### back.en\nAnswer {i}: the discounted reward.\n\n### front.zh\n问题 {i}？\n\n### back.zh\n答案 {i}。\n"
            )
        (cards / f"{day.number:02d}-{day.module}.md").write_text("\n".join(lines), encoding="utf-8")
    (root / "quizzes").mkdir()


def build_database(path: Path, n_items: int, n_reviews: int, now: float) -> None:
    Store(path).close()  # schema
    days = [d for d in DAYS if d.number <= 13]
    per_module = n_items // len(days)
    cards = [(f"{d.module.replace('_', '-')}-{i}", d.module, d.number) for d in days for i in range(per_module)]
    rng = random.Random(0)
    conn = sqlite3.connect(path)
    items = []
    for card_id, module, day in cards:
        due = now + rng.uniform(-3, 60) * 86400
        fsrs_json = json.dumps({"card_id": 1, "state": 2, "step": None, "stability": 12.0, "difficulty": 5.0,
                                "due": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(due)),
                                "last_review": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 86400))})
        items.append((card_id, "card", module, day, due, 2, 12.0, 5.0, 10, 1, fsrs_json, now - 90 * 86400, now - 86400))
    conn.executemany("INSERT INTO srs_items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", items)
    ids = [i[0] for i in items]
    batch = []
    for r in range(n_reviews):
        batch.append((ids[r % len(ids)], rng.choice((1, 2, 3, 3, 3, 4)), now - rng.uniform(1, 90) * 86400, 4000, None, "{}", None))
        if len(batch) == 50_000:
            conn.executemany("INSERT INTO reviews(item_id, rating, reviewed_ts, duration_ms, state_before, state_after, undoes) VALUES (?,?,?,?,?,?,?)", batch)
            batch.clear()
    if batch:
        conn.executemany("INSERT INTO reviews(item_id, rating, reviewed_ts, duration_ms, state_before, state_after, undoes) VALUES (?,?,?,?,?,?,?)", batch)
    conn.execute("INSERT INTO settings VALUES ('start_date', ?)", (json.dumps(time.strftime("%Y-%m-%d", time.gmtime(now - 20 * 86400))),))
    conn.commit()
    conn.close()


def first_paint(db: Path, content: Path, cache: Path) -> float:
    out = Path(tempfile.mktemp())
    env = dict(os.environ, LLMCORE_CONTENT=str(content), TERM="xterm-256color", XDG_CACHE_HOME=str(cache),
               LLMCORE_BENCH_OUT=str(out), LLMCORE_BENCH_EXIT="1")
    env["LLMCORE_BENCH_T0"] = repr(time.time())
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(sys.executable, [sys.executable, "-m", "llmcore_tui", "--db", str(db)], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not out.exists():
            ready, _, _ = select.select([fd], [], [], 0.01)
            if ready:
                try:
                    os.read(fd, 65536)
                except OSError:
                    break
    finally:
        try:
            os.waitpid(pid, 0) if out.exists() else os.kill(pid, signal.SIGKILL)
        except (ChildProcessError, ProcessLookupError):
            pass
        os.close(fd)
    if not out.exists():
        raise RuntimeError("the app did not paint its first screen within 60 s")
    value = float(out.read_text())
    out.unlink()
    return value


async def rating_latency(db: Path, content: Path, ratings: int) -> list[float]:
    from llmcore_tui.core.course import Course
    from llmcore_tui.tui.app import LlmcoreApp

    course = Course.open(db, content)
    app = LlmcoreApp(course)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("r")
        await pilot.pause()
        for _ in range(ratings):
            await pilot.press("space")
            await pilot.pause()
            before = app.screen.current_id
            await pilot.press("3")
            await pilot.pause()
            if app.screen.current_id == before:
                raise RuntimeError("the next card was not shown")
        # measured inside the app: from the rating key's handler to the next card's first paint
        return [ms / 1000 for ms in app.screen.latencies_ms]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", type=int, default=50_000)
    parser.add_argument("--reviews", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--ratings", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        content, db, cache = tmp_path / "content", tmp_path / "progress.db", tmp_path / "cache"
        t0 = time.perf_counter()
        build_content(content, args.cards)
        build_database(db, args.cards, args.reviews, time.time())
        print(f"built {args.cards} cards, {args.reviews} reviews in {time.perf_counter() - t0:.1f} s "
              f"(database {db.stat().st_size / 2**20:.0f} MiB)")

        warm = first_paint(db, content, cache)
        print(f"first paint, cold content cache: {warm:.3f} s")
        times = [first_paint(db, content, cache) for _ in range(args.runs)]
        print(f"first paint (process start → Today screen): median {statistics.median(times):.3f} s, "
              f"min {min(times):.3f}, max {max(times):.3f} over {args.runs} runs  [target < 0.6 s]")

        samples = asyncio.run(rating_latency(db, content, args.ratings))
        ms = sorted(s * 1000 for s in samples)
        print(f"rating → next card: median {statistics.median(ms):.1f} ms, p90 {ms[int(0.9 * len(ms))]:.1f} ms, "
              f"max {ms[-1]:.1f} ms over {len(ms)} ratings  [target < 30 ms]")


if __name__ == "__main__":
    main()
