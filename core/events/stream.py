"""Per-client event buffers with backpressure, fed by the event bus.

A slow or stalled client never slows generation or other clients: publishing only appends to bounded
in-memory buffers. Progress-like events are coalesced to the latest per key (they keep their place in the
order, with the newest data), previews are the first thing dropped when a buffer fills, and the events that
must arrive (status changes, job added/cancelled, model events) are never dropped: a client whose buffer of
those overflows is disconnected instead.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import cast

import anyio

from core.events.bus import Event, EventBus
from core.events.types import (
    EventData,
    JobPreview,
    JobProgress,
    JobTransferProgress,
    ModelLoadingProgress,
    ServerStatus,
)

# Event type -> how its coalescing key is formed; events not listed are never coalesced nor dropped.
COALESCED: dict[type[EventData], Callable[[EventData], Hashable]] = {
    JobProgress: lambda data: ("job_progress", data.job_key),
    JobTransferProgress: lambda data: ("job_transfer_progress", data.job_key),
    JobPreview: lambda data: ("job_preview", data.job_key),
    ModelLoadingProgress: lambda data: ("model_loading_progress", cast(ModelLoadingProgress, data).model_name),
    ServerStatus: lambda data: ("server_status",),
}
DROPPABLE: frozenset[type[EventData]] = frozenset({JobPreview})


class Subscription:
    def __init__(self, job_id: str | None = None, max_pending: int = 512) -> None:
        self.job_id = job_id
        self.max_pending = max_pending
        self._pending: OrderedDict[Hashable, Event] = OrderedDict()
        self._counter = itertools.count()
        self._wake = anyio.Event()
        self.overflowed = False
        self.dropped_previews = 0

    def wants(self, event: Event) -> bool:
        return self.job_id is None or event.data.job_key == self.job_id

    def offer(self, event: Event) -> None:
        """Called synchronously by the bus: never blocks, never raises."""
        if not self.wants(event) or self.overflowed:
            return
        key_of = COALESCED.get(type(event.data))
        key = key_of(event.data) if key_of else next(self._counter)
        self._pending[key] = event  # an existing coalescing key keeps its place, with the newest data
        if len(self._pending) > self.max_pending:
            self._shed()
        self._wake.set()

    def _shed(self) -> None:
        for key in [k for k, e in self._pending.items() if type(e.data) in DROPPABLE]:
            del self._pending[key]
            self.dropped_previews += 1
        if len(self._pending) > self.max_pending:
            self.overflowed = True  # the client is stuck: the transport closes it

    def prepend(self, events: list[Event]) -> None:
        """Put what a reconnecting client missed before what arrived since it subscribed (not filtered: the
        caller chose them for this client). One that also arrived meanwhile is sent once."""
        arrived, self._pending = self._pending, OrderedDict()
        first_arrived = min((event.seq for event in arrived.values()), default=None)
        for event in events:
            if first_arrived is not None and event.seq >= first_arrived:
                continue
            key_of = COALESCED.get(type(event.data))
            self._pending[key_of(event.data) if key_of else next(self._counter)] = event
        for key, event in arrived.items():
            self._pending[key] = event  # a coalescing key already there keeps its place, with the newest data
        if self._pending:
            self._wake.set()

    async def next_events(self) -> list[Event]:
        """Everything pending, oldest first (waits while there is nothing)."""
        while not self._pending and not self.overflowed:
            await self._wake.wait()
            self._wake = anyio.Event()
        events = list(self._pending.values())
        self._pending.clear()
        return events

    def close(self) -> None:
        self.overflowed = True
        self._wake.set()


class EventHub:
    """Fans bus events out to the subscriptions of connected clients."""

    def __init__(self, bus: EventBus) -> None:
        self.subscriptions: set[Subscription] = set()
        bus.subscribe(self._dispatch)

    def _dispatch(self, event: Event) -> None:
        for subscription in list(self.subscriptions):
            subscription.offer(event)

    def open(self, job_id: str | None = None) -> Subscription:
        subscription = Subscription(job_id)
        self.subscriptions.add(subscription)
        return subscription

    def close(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)
        subscription.close()

    def watching(self, job_id: str) -> bool:
        """Whether any connected client receives this job's events."""
        return any(s.job_id in (None, job_id) and not s.overflowed for s in self.subscriptions)
