"""SHA-256 of model files: computed off the event loop with `hashlib.file_digest`, cached in the store by
(path, size, mtime)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import anyio
import msgspec


class CachedHash(msgspec.Struct, frozen=True):
    size: int
    mtime_ns: int
    sha256: str


class HashStore(Protocol):
    """Where the digests are kept across restarts, by file path."""

    async def hashes(self) -> dict[str, CachedHash]: ...

    async def set_hash(self, path: str, entry: CachedHash) -> None: ...


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class HashCache:
    def __init__(self, store: HashStore) -> None:
        self.store = store
        self.entries: dict[str, CachedHash] = {}  # mirrors the store, for listings that must not wait on it
        self._in_flight: dict[str, anyio.Event] = {}

    async def restore(self) -> None:
        self.entries = await self.store.hashes()

    def known(self, path: Path, size: int, mtime_ns: int) -> str | None:
        entry = self.entries.get(str(path))
        return entry.sha256 if entry and entry.size == size and entry.mtime_ns == mtime_ns else None

    async def hash_of(self, path: Path) -> str:
        """The file's SHA-256; concurrent requests for one file share a single computation."""
        key = str(path)
        while key in self._in_flight:
            await self._in_flight[key].wait()
        stat = await anyio.Path(path).stat()
        if cached := self.known(path, stat.st_size, stat.st_mtime_ns):
            return cached
        done = self._in_flight[key] = anyio.Event()
        try:
            digest = await anyio.to_thread.run_sync(sha256_file, path)
            entry = self.entries[key] = CachedHash(stat.st_size, stat.st_mtime_ns, digest)
            await self.store.set_hash(key, entry)
        finally:
            del self._in_flight[key]
            done.set()
        return digest
