from __future__ import annotations

import mimetypes

import anyio
from litestar import get
from litestar.response import File

from orchestrator.errors import BadRequest, NotFound
from orchestrator.safe_paths import resolve_inside
from orchestrator.service import Service

INTERNAL_NAMES = frozenset({"queue_state.json", ".thumbs"})


@get("/output/{path:path}")
async def output_file(service: Service, path: str) -> File:
    relative = path.lstrip("/")
    if any(part in INTERNAL_NAMES or part.startswith(".") for part in relative.split("/")):
        raise NotFound("File not found")
    resolved = resolve_inside(service.output_root, relative, "path")
    if not await anyio.Path(resolved).is_file():
        if await anyio.Path(resolved).is_dir():
            raise BadRequest("path is a folder; the folder browser is served at /output/ for folders")
        raise NotFound("File not found")
    media_type = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
    return File(path=resolved, media_type=media_type, content_disposition_type="inline")


ROUTES = [output_file]
