"""In-process event bus: the queue, the model manager and the generation engine publish typed events; the
WebSocket layer subscribes. Nobody else talks to sockets."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import msgspec

from core.events.types import EventData


class Event(msgspec.Struct):
    """The wire format: `{"event": "job_progress", "timestamp": "...Z", "data": {...}}`."""

    event: str
    timestamp: str
    data: EventData


def utc_timestamp() -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2024-01-01T12:00:00.000Z."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp(data: EventData) -> Event:
    return Event(data.name, utc_timestamp(), data)


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out: subscribers must not block (they enqueue into their own bounded buffers)."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def publish(self, data: EventData) -> None:
        message = stamp(data)
        for subscriber in list(self._subscribers):
            subscriber(message)
