"""The one durable store behind the service: job history, settings, caches, histories, child processes.

Each feature declares the narrow store it takes (the queue's `JobStore`, the hash cache's `HashStore`, the
`ValueStore` of persisted settings, prompt help's `HistoryStore`, the runners' `ChildBook`); `Store` is all of
them. `SqliteStore` (sqlite.py) implements it on one SQLite file in the output folder (the default, one host);
`PostgresStore` (postgres.py) on a PostgreSQL database that several hosts share (`[store] url`). Every async
method runs its database work off the event loop.
"""

from __future__ import annotations

from typing import Protocol

from core.jobs.idempotency import IdempotencyStore
from core.jobs.records import JobStore
from core.models.hashing import HashStore
from core.prompt_help.features import HistoryStore
from core.webhooks.delivery import WebhookStore
from runners.process import ChildBook


class StoreUnusable(RuntimeError):
    """The store cannot be used as it is (damaged, foreign, or written by a newer version). The server stops
    with this message; the file is left untouched."""


class Store(JobStore, IdempotencyStore, HashStore, HistoryStore, WebhookStore, ChildBook, Protocol):
    """Everything the features keep (HistoryStore includes the ValueStore of settings and state)."""

    def close(self) -> None:
        """Blocking: release the store (and its one-server lock)."""

    async def aclose(self) -> None:
        """Write what is still kept, then close."""
