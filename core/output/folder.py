"""The output folder as clients see it: safe path resolution, listings, thumbnails.

Internal files (queue_state.json, dot-files such as .thumbs/, .preview/ and state caches) are neither
listed nor served. Blocking helpers (listing, thumbnails) are called off the event loop.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

import msgspec
from PIL import Image, ImageOps

from core.errors import BadRequest, NotFound
from core.safe_paths import check_relative, stat_inside

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mov", ".mkv"})
INTERNAL_NAMES = frozenset({"queue_state.json", "queue_state.json.imported"})  # old state (dot-files are internal too)
THUMB_DIR = ".thumbs"
THUMB_SIZE = (120, 120)
SortKey = Literal["name", "size", "date"]
PLAY_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="120" viewBox="0 0 120 120">'
    '<rect width="120" height="120" rx="10" fill="#1f2937"/><circle cx="60" cy="60" r="32" fill="#f9fafb" '
    'fill-opacity="0.9"/><path d="M52 44 L80 60 L52 76 Z" fill="#1f2937"/></svg>'
)


class Entry(msgspec.Struct):
    name: str
    path: str  # relative to the output root, '/'-separated
    is_dir: bool
    size: int  # bytes (files) or number of visible entries (folders)
    mtime: float
    kind: Literal["folder", "image", "video", "file"]
    summary: str | None = None  # a job folder's type and prompt, from its config.json


class Listing(msgspec.Struct):
    path: str
    entries: list[Entry]
    folders: int
    files: int
    total_bytes: int


def is_internal(name: str) -> bool:
    return name.startswith(".") or name in INTERNAL_NAMES


def kind_of(path: Path) -> Literal["image", "video", "file"]:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else "file"


class OutputFolder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def resolve(self, raw: str, field: str = "path") -> tuple[str, Path]:
        """(clean relative path, real path) for a client path; 400 for traversal, 404 for hidden/missing."""
        decoded = unquote(raw)  # a second decoding catches %252e%252e and friends
        if "\\" in raw or "\\" in decoded:
            raise BadRequest(f"{field} must use '/' as separator, not '\\'")
        relative = decoded[1:] if decoded.startswith("/") else decoded  # the URL's own slash
        if relative.startswith("/"):
            raise BadRequest(f"{field} must be relative to the output folder, not an absolute path")
        relative = relative.rstrip("/")
        if not relative:
            return "", self.root.resolve()
        clean = check_relative(relative, field)
        if any(is_internal(part) for part in clean.parts):
            raise NotFound("Not found")
        try:
            resolved = (self.root / clean).resolve()
            if not resolved.is_relative_to(self.root.resolve()):
                raise BadRequest(f"{field} resolves outside the output folder (symlink)")
            if not resolved.exists():
                raise NotFound("Not found")
        except (OSError, RuntimeError):  # a symlink loop, a name the file system refuses: nothing to serve
            raise NotFound("Not found") from None
        return clean.as_posix(), resolved

    # ----------------------------------------------------------------------------------- listings

    def _summary(self, folder: Path) -> str | None:
        config = folder / "config.json"
        try:
            if config.stat().st_size > 256 * 1024:
                return None
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            return None
        params = data.get("params") or {}
        prompt = str(params.get("prompt") or "")
        label = str(data.get("type") or "")
        return f"{label}: {prompt}" if prompt else label or None

    def list_dir(self, relative: str, folder: Path, sort: SortKey = "name", order: str = "asc") -> Listing:
        entries: list[Entry] = []
        real_root = self.root.resolve()
        with os.scandir(folder) as scan:
            for item in scan:
                if is_internal(item.name):
                    continue
                path = Path(item.path)
                stat = stat_inside(path, real_root)
                if stat is None:
                    continue
                child = f"{relative}/{item.name}" if relative else item.name
                if item.is_dir():
                    try:
                        count = sum(1 for name in os.listdir(path) if not is_internal(name))
                    except OSError:
                        count = 0
                    entries.append(Entry(item.name, child, True, count, stat.st_mtime, "folder", self._summary(path)))
                else:
                    entries.append(Entry(item.name, child, False, stat.st_size, stat.st_mtime, kind_of(path)))
        keys = {"name": lambda e: e.name.lower(), "size": lambda e: e.size, "date": lambda e: e.mtime}
        entries.sort(key=keys[sort], reverse=order == "desc")
        entries.sort(key=lambda e: not e.is_dir)  # folders first, stable within
        files = [e for e in entries if not e.is_dir]
        return Listing(relative, entries, len(entries) - len(files), len(files), sum(e.size for e in files))

    # --------------------------------------------------------------------------------- thumbnails

    def thumbnail(self, source: Path) -> tuple[Path | None, str]:
        """(cached JPEG, "image/jpeg") for images, (None, "image/svg+xml") for videos. Rebuilt when the
        source is newer than its cached thumbnail."""
        kind = kind_of(source)
        if kind == "video":
            return None, "image/svg+xml"
        if kind != "image":
            raise BadRequest(
                f"path is not an image or video ({source.suffix or 'no extension'}); "
                "thumbnails exist for .png .jpg .jpeg .gif .webp .bmp .mp4 .webm .avi .mov .mkv"
            )
        target = source.parent / THUMB_DIR / (source.name + ".jpg")
        try:
            if target.stat().st_mtime_ns >= source.stat().st_mtime_ns:
                return target, "image/jpeg"
        except OSError:
            pass
        try:
            with Image.open(source) as image:
                image.draft("RGB", (THUMB_SIZE[0] * 2, THUMB_SIZE[1] * 2))  # fast JPEG downscale on decode
                thumb = ImageOps.fit(image.convert("RGB"), THUMB_SIZE, Image.Resampling.LANCZOS)
        except Exception:
            raise BadRequest("path is not a decodable image") from None
        target.parent.mkdir(exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        thumb.save(temporary, format="JPEG", quality=85)
        os.replace(temporary, target)
        return target, "image/jpeg"
