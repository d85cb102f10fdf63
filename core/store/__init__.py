"""The one durable store behind the service: job history, settings, caches, histories, child processes.

`Store` is the small interface the rest of the core uses; `SqliteStore` (sqlite.py) implements it on one
SQLite file in the output folder. A server database backing several hosts would implement the same methods.
Every async method runs its database work off the event loop.
"""

from __future__ import annotations

from typing import Protocol, Sequence, TypeVar

import msgspec

from core.jobs.schemas import Job, JobStatus, QueueQuery
from core.jobs.specs import JobRecord

T = TypeVar("T")


class StoreUnusable(RuntimeError):
    """The store cannot be used as it is (damaged, foreign, or written by a newer version). The server stops
    with this message; the file is left untouched."""


class CachedHash(msgspec.Struct, frozen=True):
    size: int
    mtime_ns: int
    sha256: str


class Store(Protocol):
    # ------------------------------------------------------------------------------------------ jobs
    async def add_job(self, record: JobRecord) -> None:
        """Commit a new job; returns once it is durable."""

    async def save_job(self, record: JobRecord) -> None:
        """Commit a job's changed status, outputs, error, params or spec."""

    async def job(self, job_id: str) -> JobRecord | None: ...

    async def active_jobs(self) -> list[JobRecord]:
        """Pending and processing jobs, oldest first."""

    async def list_jobs(self, query: QueueQuery) -> tuple[list[Job], int | None]:
        """The jobs the query selects, oldest first, and how many jobs match its filters (None when it has
        none: then every job matches)."""

    async def status_counts(self) -> dict[JobStatus, int]: ...

    async def prune_finished(self, keep: int, created_before: str | None) -> list[str]:
        """Delete finished jobs beyond the newest `keep` (0: no count limit) or created before the timestamp;
        returns their ids."""

    # --------------------------------------------------------------------------------- state values
    async def value(self, key: str, type_: type[T]) -> T | None:
        """A persisted setting or state (None if never set)."""

    async def set_value(self, key: str, value: object | None) -> None:
        """Persist a value (None removes it)."""

    # --------------------------------------------------------------------------------------- hashes
    async def hashes(self) -> dict[str, CachedHash]: ...

    async def set_hash(self, path: str, entry: CachedHash) -> None: ...

    # ------------------------------------------------------------------------ histories (prompt help)
    async def history_add(self, feature: str, entries: Sequence[tuple[str | None, object]], keep: int) -> None:
        """Append (entry id, entry) pairs and keep only the newest `keep` of the feature (0 keeps none)."""

    async def history_page(self, feature: str, type_: type[T], limit: int | None, offset: int = 0,
                           newest_first: bool = True) -> list[T]: ...

    async def history_entry(self, feature: str, entry_id: str, type_: type[T]) -> T | None: ...

    async def history_delete(self, feature: str, entry_id: str | None = None) -> int:
        """Delete one entry (or all of the feature when entry_id is None); returns how many."""

    async def history_count(self, feature: str) -> int: ...

    # -------------------------------------------------------------------- child processes (blocking)
    def record_child(self, pid: int, exe: str) -> None: ...

    def forget_child(self, pid: int) -> None: ...

    def recorded_children(self) -> dict[int, str]: ...

    def forget_all_children(self) -> None: ...
