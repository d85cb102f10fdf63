"""In-process event bus: the queue, the model manager and the generation engine publish typed events; the
WebSocket layer subscribes. Nobody else talks to sockets.

Every published event gets a sequence number (`seq`), increasing for the life of the server and across restarts:
the first is the server's start time in milliseconds, each event adds one, so a number from before a restart is
below every number of the running server (core/events/replay.py tells a reconnecting client what it missed)."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable

import msgspec

from core.events.types import EventData


class Event(msgspec.Struct):
    """The wire format: `{"event": "job_progress", "timestamp": "...Z", "data": {...}}`."""

    event: str
    timestamp: str
    data: EventData
    seq: int = 0  # increasing per server (see the module's docstring); 0 only for events made outside a bus


def utc_timestamp() -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2024-01-01T12:00:00.000Z."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp(data: EventData, seq: int = 0) -> Event:
    return Event(data.name, utc_timestamp(), data, seq)


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out: subscribers must not block (they enqueue into their own bounded buffers)."""

    def __init__(self, first_seq: int | None = None) -> None:
        self._subscribers: list[Subscriber] = []
        self.first_seq = time.time_ns() // 1_000_000 if first_seq is None else first_seq
        self._numbers = itertools.count(self.first_seq)
        self.last_seq = self.first_seq - 1  # the number of the latest event published (none yet: first - 1)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def current(self, data: EventData) -> Event:
        """An event for one client that is not published (the status sent on connect, a gap): it carries the
        latest published number, which is where that client stands."""
        return stamp(data, self.last_seq)

    def publish(self, data: EventData) -> None:
        self.last_seq = next(self._numbers)
        message = stamp(data, self.last_seq)
        for subscriber in list(self._subscribers):
            subscriber(message)
