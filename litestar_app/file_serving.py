"""Serve a file with validators (ETag, Last-Modified -> 304) and single byte ranges (206), streamed off
the event loop in chunks. Litestar's File response has no Range support, which videos need to seek."""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import AsyncIterator
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import anyio
from litestar import Request, Response
from litestar.response import Stream

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
EXTRA_TYPES = {
    ".webm": "video/webm",
    ".webp": "image/webp",
    ".avi": "video/x-msvideo",
    ".mkv": "video/x-matroska",
    ".safetensors": "application/octet-stream",
    ".gguf": "application/octet-stream",
}


def media_type(path: Path) -> str:
    return EXTRA_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def etag_of(stat: os.stat_result) -> str:
    return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'


def not_modified(request: Request, etag: str, mtime: float) -> bool:
    if (match := request.headers.get("if-none-match")) is not None:
        return etag in [tag.strip().removeprefix("W/") for tag in match.split(",")] or match.strip() == "*"
    if (since := request.headers.get("if-modified-since")) is not None:
        try:
            return int(mtime) <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def _position(digits: str) -> int:
    """A byte position as sent; one of more digits than any file size has stands for "beyond the end" (Python
    refuses to convert strings of thousands of digits, and no file is that large)."""
    return int(digits) if len(digits) <= 18 else 10**18


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) inclusive; None for "send everything"; "unsatisfiable" for a 416."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match[1] and not match[2]):
        return None  # multiple or malformed ranges: ignoring Range is always allowed
    if not match[1]:
        length = _position(match[2])
        return (max(size - length, 0), size - 1) if length and size else "unsatisfiable"
    first = _position(match[1])
    last = min(_position(match[2]), size - 1) if match[2] else size - 1
    return (first, last) if first <= last and first < size else "unsatisfiable"


async def _chunks(path: Path, first: int, length: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as handle:
        await handle.seek(first)
        remaining = length
        while remaining > 0:
            data = await handle.read(min(CHUNK, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data


async def serve_file(request: Request, path: Path, cache_control: str = "no-cache") -> Response:
    stat = await anyio.Path(path).stat()
    etag = etag_of(stat)
    headers = {
        "ETag": etag,
        "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
        "Accept-Ranges": "bytes",
        "Cache-Control": cache_control,
    }
    if not_modified(request, etag, stat.st_mtime):
        return Response(b"", status_code=304, headers=headers)
    wanted = parse_range(request.headers.get("range"), stat.st_size)
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None  # the client's copy is stale: send the whole new file
    if wanted == "unsatisfiable":
        return Response(b"", status_code=416, headers={**headers, "Content-Range": f"bytes */{stat.st_size}"})
    first, last = wanted if isinstance(wanted, tuple) else (0, stat.st_size - 1)
    length = max(last - first + 1, 0)
    headers["Content-Length"] = str(length)
    status = 200
    if isinstance(wanted, tuple):
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{stat.st_size}"
    return Stream(_chunks(path, first, length), status_code=status, headers=headers, media_type=media_type(path))
