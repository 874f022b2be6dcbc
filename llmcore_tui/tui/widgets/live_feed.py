"""A run's events on their way to the Labs screen, folded by the protocol's one decoder.

The runner's reader thread hands each event to :meth:`LiveFeed.receive` (a deque append, safe
from any thread); the screen's timer calls :meth:`LiveFeed.drain` on the UI thread, which
decodes them with ``labs.protocol.decode`` into the feed's :class:`~labs.protocol.LiveRun` (the
charts, progress and headline read it) and returns them for the log. The feed also keeps what
the log showed, so switching back to the running lab replays it.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from labs.protocol import Error, Event, Log, LiveRun, Other, ProtocolError, Table, decode

TRANSCRIPT_EVENTS = 1000
SHOWN_IN_LOG = (Log, Table, Error, Other)  # metrics and progress are charted, not logged


class LiveFeed:
    """The run started on the Labs screen: its raw events in, its :class:`LiveRun` out."""

    def __init__(self, lab: str, preset: str) -> None:
        self.lab = lab
        self.preset = preset
        self.run = LiveRun(lab)
        self.out_dir: str | None = None  # known once the child has started
        self._inbox: deque[Any] = deque()  # appended by the reader thread, drained by the UI
        self.transcript: deque[Event] = deque(maxlen=TRANSCRIPT_EVENTS)

    def receive(self, event: Any) -> None:
        """The runner's ``on_event`` callback (called from its reader thread)."""
        self._inbox.append(event)

    def drain(self) -> list[Event]:
        """Decode and fold everything received since the last call; returns the new events."""
        events: list[Event] = []
        while self._inbox:
            raw = self._inbox.popleft()
            try:
                event = decode(raw) if isinstance(raw, dict) else raw
            except ProtocolError as exc:  # the recorder keeps the run going; so does the screen
                event = Other("malformed", {"text": f"{json.dumps(raw, default=str)[:200]} ({exc})"})
            self.run.apply(event)
            events.append(event)
        self.transcript.extend(e for e in events if isinstance(e, SHOWN_IN_LOG))
        return events

