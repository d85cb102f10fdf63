"""SHA-256 of model files: computed off the event loop, cached persistently by (path, size, mtime)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import msgspec

from orchestrator.store import atomic_write_bytes, read_json

CHUNK = 4 * 1024 * 1024


class CachedHash(msgspec.Struct):
    size: int
    mtime_ns: int
    sha256: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    def __init__(self, cache_file: Path) -> None:
        self.cache_file = cache_file
        self.entries: dict[str, CachedHash] = read_json(cache_file, dict[str, CachedHash]) or {}
        self._in_flight: dict[str, anyio.Event] = {}
        self._save_lock = anyio.Lock()

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
            self.entries[key] = CachedHash(stat.st_size, stat.st_mtime_ns, digest)
            async with self._save_lock:
                data = msgspec.json.encode(self.entries)
                await anyio.to_thread.run_sync(atomic_write_bytes, self.cache_file, data)
        finally:
            del self._in_flight[key]
            done.set()
        return digest
