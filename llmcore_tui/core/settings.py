"""User settings, stored in the ``settings`` table, with defaults and validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmcore_tui.core.store import Store
from llmcore_tui.i18n import N_


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    help: str
    kind: type
    low: float | None = None
    high: float | None = None


SETTINGS: tuple[Setting, ...] = (  # help texts are msgids: the CLI shows them through _()
    Setting("new_per_day", 20, N_("new cards introduced per study day"), int, 0, 500),
    Setting("day_start_hour", 4, N_("hour (local time) at which a new study day begins, like Anki's 4 am"), int, 0, 23),
    Setting("desired_retention", 0.9, N_("FSRS target probability of recall at review time"), float, 0.7, 0.99),
    Setting("learn_ahead_minutes", 20, N_("show learning cards this early when nothing else is due"), int, 0, 1440),
    Setting("quiz_pass_threshold", 0.8, N_("fraction of a day's quiz to answer right to pass it"), float, 0.0, 1.0),
    Setting("timezone", "", N_("IANA time zone for day boundaries (empty: the system's)"), str),
    Setting("theme", "textual-dark", N_("the TUI's colour theme"), str),
    Setting("lang", "", N_("language of the app and its cards: en or zh (empty: the locale's; --lang overrides)"), str),
)
BY_KEY = {s.key: s for s in SETTINGS}


def coerce(key: str, raw: Any) -> Any:
    """The typed, validated value for a setting; ValueError with a readable message otherwise."""
    if key not in BY_KEY:
        raise ValueError(f"no setting named {key!r}; settings are: {', '.join(BY_KEY)}")
    spec = BY_KEY[key]
    try:
        value = spec.kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a {spec.kind.__name__}, got {raw!r}") from None
    if spec.low is not None and not (spec.low <= value <= spec.high):  # type: ignore[operator]
        raise ValueError(f"{key} must be between {spec.low:g} and {spec.high:g}, got {value}")
    if key == "lang" and value not in ("", "en", "zh"):
        raise ValueError("lang must be en or zh")
    if key == "timezone" and value:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
    return value


class Settings:
    def __init__(self, store: Store):
        self.store = store

    def get(self, key: str) -> Any:
        return self.store.get_setting(key, BY_KEY[key].default)

    def set(self, key: str, value: Any) -> Any:
        value = coerce(key, value)
        self.store.set_setting(key, value)
        return value

    def all(self) -> dict[str, Any]:
        return {s.key: self.get(s.key) for s in SETTINGS}
