"""A small login form for browsers when API keys are configured: it sets an HttpOnly, SameSite=Strict cookie
so that pages (the output browser, the web UI) can show files and call the API."""

from __future__ import annotations

import html
import posixpath
from typing import Annotated
from urllib.parse import quote, unquote, urlsplit

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body

from core.login_sessions import SESSION_SECONDS
from litestar_app.security import SESSION_COOKIE, SecurityPolicy

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport"
content="width=device-width,initial-scale=1"><title>sdcpp-restapi: sign in</title><style>
body{{font:16px system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;margin:0}}
form{{display:grid;gap:.6rem;min-width:18rem}}input,button{{font:inherit;padding:.5rem}}.error{{color:#b91c1c}}
@media (prefers-color-scheme:dark){{body{{background:#111827;color:#f9fafb}}}}</style></head><body>
<form method="post" action="/login"><h1>sdcpp-restapi</h1>{message}
<label for="key">API key</label><input id="key" name="key" type="password" autocomplete="current-password" required
autofocus><input type="hidden" name="next" value="{next}"><button type="submit">Sign in</button></form></body></html>"""


ASCII_VISIBLE = "".join(chr(code) for code in range(0x21, 0x7F))


class LoginForm(msgspec.Struct):
    key: str = ""
    next: str = "/output"


def _offsite(form: str, lowest: int = 0x21) -> bool:
    """Could a browser read this as another site? Browsers drop tabs and line breaks from a URL and read a
    backslash as a slash, so a slash, a tab and "/evil.example" would be "//evil.example": any control
    character, space or backslash counts, as does anything that does not start with exactly one slash, that
    parses with a scheme or a host, or whose dot segments collapse into "//". `lowest`: the lowest character
    allowed (a space is allowed once decoded: "%20" in a file name is no way to another site)."""
    if not form.startswith("/") or form.startswith("//") or "\\" in form:
        return True
    if any(ord(char) < lowest or ord(char) == 0x7F for char in form):
        return True
    try:
        parts = urlsplit(form)
    except ValueError:
        return True
    return bool(parts.scheme or parts.netloc) or posixpath.normpath(parts.path).startswith("//")


def _safe_next(target: str) -> str:
    """Only a path on this server: the form must not redirect elsewhere. Judged as sent and once percent-decoded
    (a proxy or a later redirect may decode "%2F%2Fevil.example"); anything doubtful goes to /output."""
    if _offsite(target) or _offsite(unquote(target), lowest=0x20):
        return "/output"
    return quote(target, safe=ASCII_VISIBLE)  # a Location header is ASCII: "/日本" goes out percent-encoded


def _page(next_path: str, message: str = "", status: int = 200) -> Response[str]:
    shown = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return Response(
        PAGE.format(message=shown, next=html.escape(_safe_next(next_path))),
        status_code=status,
        media_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


@get("/login", sync_to_thread=False, include_in_schema=False)
def login_page(next: str = "/output") -> Response[str]:
    return _page(next)


@post("/login", include_in_schema=False)
async def login(
    request: Request, data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
) -> Response[str]:
    policy: SecurityPolicy = request.app.state.policy
    if not policy.keys_required:
        return Response("", status_code=303, headers={"Location": _safe_next(data.next)})
    if not policy.valid_key(data.key):
        return _page(data.next, "That key is not valid.", status=401)
    cookie = Cookie(
        key=SESSION_COOKIE,
        value=await policy.sessions.issue(data.key),  # a fresh id, kept server-side: logout revokes it
        httponly=True,
        samesite="strict",
        path="/",
        max_age=SESSION_SECONDS,
    )
    return Response("", status_code=303, headers={"Location": _safe_next(data.next)}, cookies=[cookie])


@post("/logout", status_code=303, include_in_schema=False)
async def logout(request: Request) -> Response[str]:
    """Revokes the session of this browser's cookie on the server (a copy of the cookie stops working too)."""
    policy: SecurityPolicy = request.app.state.policy
    if token := request.cookies.get(SESSION_COOKIE):
        await policy.sessions.revoke(token)
    cookie = Cookie(key=SESSION_COOKIE, value="", httponly=True, samesite="strict", path="/", max_age=0)
    return Response("", status_code=303, headers={"Location": "/login"}, cookies=[cookie])


ROUTES = [login_page, login, logout]
