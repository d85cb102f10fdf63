"""Idempotent submits: a client that retries a submission with the same `Idempotency-Key` gets the answer of the
first one (the same job) instead of a second job; the same key with another request is a 422.

Answers are kept in the store for `window_s` (a restart keeps them). Keys are scoped by the route that submitted:
the same key on /txt2img and /img2img names two submissions. Within one process, concurrent requests with one key
wait for each other, so a retry that overtakes the first attempt still finds its job.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import anyio
import msgspec

from core.errors import BadRequest, ServiceError

T = TypeVar("T", bound=msgspec.Struct)
HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
PRUNE_EVERY_S = 3600.0  # expired answers are ignored when read; deleting them is housekeeping, not per submit


class Unprocessable(ServiceError):
    status = 422


class RememberedAnswer(msgspec.Struct, frozen=True):
    fingerprint: str  # SHA-256 of the route and the request as understood
    answer: bytes  # the first submission's answer, JSON
    created_at: float  # unix time


class IdempotencyStore(Protocol):
    async def remembered_answer(self, key: str) -> RememberedAnswer | None: ...

    async def remember_answer(self, key: str, answer: RememberedAnswer) -> None: ...

    async def forget_answers_before(self, created_before: float) -> None: ...


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_CHARS or not key.isascii() or not key.isprintable():
        raise BadRequest(f"{HEADER}: 1 to {MAX_KEY_CHARS} printable ASCII characters")
    return key


class IdempotentSubmits:
    def __init__(self, store: IdempotencyStore, window_s: float) -> None:
        self.store, self.window_s = store, window_s
        self._locks: dict[str, anyio.Lock] = {}
        self._pruned_at = -PRUNE_EVERY_S  # monotonic time of the last prune: the first keyed submit prunes

    async def submit(
        self, key: str | None, route: str, request: msgspec.Struct, submit: Callable[[], Awaitable[T]], answer: type[T]
    ) -> T:
        """`submit()`'s answer, or the answer a submission with this key gave within the window."""
        if key is None:
            return await submit()
        scoped = f"{route}\n{check_key(key)}"
        fingerprint = hashlib.sha256(route.encode() + b"\n" + msgspec.json.encode(request)).hexdigest()
        lock = self._locks.setdefault(scoped, anyio.Lock())
        try:
            async with lock:
                oldest_kept = time.time() - self.window_s
                if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
                    self._pruned_at = time.monotonic()
                    await self.store.forget_answers_before(oldest_kept)
                remembered = await self.store.remembered_answer(scoped)
                if remembered is not None and remembered.created_at >= oldest_kept:
                    if remembered.fingerprint != fingerprint:
                        raise Unprocessable(
                            f"{HEADER}: this key was used with another request on {route} within the last "
                            f"{self.window_s:g} s; use a new key for a new request"
                        )
                    return msgspec.json.decode(remembered.answer, type=answer)
                made = await submit()  # a refused submission (4xx) is not remembered: a retry is judged afresh
                await self.store.remember_answer(
                    scoped, RememberedAnswer(fingerprint, msgspec.json.encode(made), time.time())
                )
                return made
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(scoped, None)
