"""Study days: a day starts at a configurable local hour (default 4 am), not at midnight."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone, tzinfo


def local_zone(name: str = "") -> tzinfo:
    if name:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    return datetime.now().astimezone().tzinfo or timezone.utc


def study_date(ts: float, day_start_hour: int, tz: tzinfo) -> date:
    """The study day a moment belongs to: 02:00 with a 4 am start still counts as yesterday."""
    return (datetime.fromtimestamp(ts, tz) - timedelta(hours=day_start_hour)).date()


def day_bounds(day: date, day_start_hour: int, tz: tzinfo) -> tuple[float, float]:
    """[start, end) timestamps of a study day, correct across daylight-saving changes."""
    start = datetime(day.year, day.month, day.day, day_start_hour, tzinfo=tz)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, day_start_hour, tzinfo=tz)
    return start.timestamp(), end.timestamp()


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class Clock:
    """Wall time, replaceable in tests."""

    def __init__(self, fixed: float | None = None):
        self.fixed = fixed

    def now(self) -> float:
        return self.fixed if self.fixed is not None else time.time()

    def advance(self, seconds: float) -> None:
        if self.fixed is None:
            raise RuntimeError("only a fixed clock can be advanced")
        self.fixed += seconds
