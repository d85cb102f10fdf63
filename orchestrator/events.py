"""In-process event bus: the queue, the model manager and the runners publish; the WebSocket layer
subscribes. Nobody else talks to sockets."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import msgspec


class Event(msgspec.Struct):
    event: str
    timestamp: str
    data: dict[str, Any]


def utc_timestamp() -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2024-01-01T12:00:00.000Z."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out: subscribers must not block (they enqueue into their own bounded buffers)."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        message = Event(event, utc_timestamp(), data)
        for subscriber in list(self._subscribers):
            subscriber(message)
