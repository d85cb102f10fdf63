"""The routes of core.output: the output browser and its files (/output, /output/{path}) and thumbnails (/thumb)."""

from __future__ import annotations

from typing import Literal

import anyio
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from core.errors import BadRequest
from core.output.folder import SortKey
from core.service import Service
from litestar_app.browser_page import PLAY_SVG, render_listing
from litestar_app.file_serving import serve_file


def _reject_absolute(request: Request) -> None:
    """Routing collapses "/output//etc/passwd" to "/etc/passwd"; the raw path still shows the absolute path."""
    raw = (request.scope.get("raw_path") or b"").decode("latin-1")
    for prefix in ("/output/", "/thumb/"):
        if raw.startswith(prefix) and raw[len(prefix) :].startswith("/"):
            raise BadRequest("path must be relative to the output folder, not an absolute path")


async def _browse_or_serve(request: Request, service: Service, path: str, sort: SortKey, order: str) -> Response:
    _reject_absolute(request)
    folder = service.output
    relative, resolved = await anyio.to_thread.run_sync(folder.resolve, path)
    if await anyio.Path(resolved).is_dir():
        listing = await anyio.to_thread.run_sync(folder.list_dir, relative, resolved, sort, order)
        return Response(
            render_listing(listing, sort, order), media_type="text/html", headers={"Cache-Control": "no-cache"}
        )
    return await serve_file(request, resolved)


@get("/output", name="output_root", media_type="text/html", summary="The output browser (HTML)")
async def output_root(
    request: Request, service: Service, sort: SortKey = "name", order: Literal["asc", "desc"] = "asc"
) -> Response:
    return await _browse_or_serve(request, service, "", sort, order)


@get(
    "/output/{path:path}",
    summary="A file (ranges, revalidation) or a folder listing (HTML)",
    responses={
        200: ResponseSpec(
            bytes, media_type="*/*", description="the file, or the folder's HTML listing", generate_examples=False
        )
    },
)
async def output_path(
    request: Request, service: Service, path: str, sort: SortKey = "name", order: Literal["asc", "desc"] = "asc"
) -> Response:
    return await _browse_or_serve(request, service, path, sort, order)


@get(
    "/thumb/{path:path}",
    summary="A 120x120 JPEG thumbnail (an SVG play button for videos)",
    responses={
        200: ResponseSpec(
            bytes, media_type="image/*", description="image/jpeg, or image/svg+xml for a video", generate_examples=False
        )
    },
)
async def thumbnail(request: Request, service: Service, path: str) -> Response:
    _reject_absolute(request)
    folder = service.output
    _, resolved = await anyio.to_thread.run_sync(folder.resolve, path)
    thumb, media_type = await anyio.to_thread.run_sync(folder.thumbnail, resolved)
    if thumb is None:
        return Response(PLAY_SVG, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
    return await serve_file(request, thumb)


ROUTES = [output_root, output_path, thumbnail]
