"""The web UI: static ES modules, CSS and one HTML page from litestar_app/ui/, served at /ui/ with a strict
Content-Security-Policy (same origin only: the page calls the REST API and /ws on this port). `/` leads there."""

from __future__ import annotations

from pathlib import Path

import msgspec
from litestar import Request, Response, get
from litestar.response import File, Redirect
from litestar.static_files import create_static_files_router

UI_FOLDER = Path(__file__).resolve().parent.parent / "ui"
# 'self' covers ws:/wss: to this host in current browsers; data: and blob: carry previews, uploads and masks.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _with_security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"  # revalidated: an upgraded server never runs stale modules
    return response


ui_files = create_static_files_router(
    "/ui",
    directories=[UI_FOLDER],
    html_mode=True,
    name="ui",
    after_request=_with_security_headers,
    include_in_schema=False,
)


class UiSession(msgspec.Struct):
    """What the page needs to know about its sign-in: whether the server asks for a key (then it offers Sign out)."""

    keys_required: bool


@get("/ui/session", include_in_schema=False, sync_to_thread=False)
def ui_session(request: Request) -> UiSession:
    return UiSession(keys_required=request.app.state.policy.keys_required)


@get("/", include_in_schema=False, sync_to_thread=False)
def home() -> Redirect:
    return Redirect("/ui/")


@get("/favicon.ico", include_in_schema=False, sync_to_thread=False)
def favicon() -> File:
    """Browsers ask every page of this server (the login form, the output browser) for it."""
    return File(
        UI_FOLDER / "favicon.svg",
        media_type="image/svg+xml",
        content_disposition_type="inline",
        headers={"Cache-Control": "public, max-age=86400"},
    )


ROUTES = [ui_files, ui_session, home, favicon]
