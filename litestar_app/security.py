"""Who may use the server: API keys, cross-site protection, DNS-rebinding protection, declared body types.

One policy (`SecurityPolicy.refusal`) judges every HTTP request and WebSocket handshake, on both the HTTP port
(the `SecurityMiddleware` below) and the standalone WebSocket port (litestar_app.websocket):

1. Host: while bound to loopback, a Host that is neither a loopback name nor in `allowed_hosts` is refused
   (a web page that rebinds its own domain to 127.0.0.1 still sends its own name).
2. Origin: a state-changing request (POST, PUT, PATCH, DELETE) or a WebSocket handshake whose Origin is not the
   server's own nor in `[cors] allow_origins` is refused. Browsers send Origin on every such cross-site request;
   curl and scripts send none and are not affected.
3. Key: with API keys configured, everything but GET /health, the login page and its icon needs one: Bearer, X-API-Key,
   the password of HTTP Basic, `?token=` (WebSocket handshakes only), or the login cookie. GET /metrics also takes
   the scrape token (`metrics_token`) as Bearer, so a Prometheus server need not hold a key that can do everything.
4. Body type: a request with a body must declare it as JSON (the login form may be urlencoded, OpenAI's image
   edits multipart, as those clients send them).

The key a state-changing request was let in with is named to the queue by its id (`key_id`: a short hash, never
the key; the login cookie counts as its key), so the scheduler shares the workers fairly between keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import msgspec
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from core.jobs.queue import SUBMITTER
from core.jobs.schemas import ANONYMOUS
from core.login_sessions import LoginSessions
from core.settings import Settings, is_loopback
from litestar_app.routes.metrics import METRICS_PATH

SESSION_COOKIE = "sdcpp_session"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# (method, path) reachable without a key (the icon: the login page's browser asks for it before signing in).
PUBLIC = frozenset({("GET", "/health"), ("GET", "/login"), ("POST", "/login"), ("GET", "/favicon.ico")})
JSON_TYPES = frozenset({"application/json"})
OUTPUT_PREFIX = "/output/"
# Result URLs handed to clients that fetch them without the key (OpenAI's image URLs need none, and are valid for
# an hour): signed for one file, expiring. /output itself stays behind the key.
SIGNED_URL_TTL_S = 3600
# Paths whose body may be something else (documented there); every other body is JSON.
BODY_TYPES = {
    "/login": JSON_TYPES | {"application/x-www-form-urlencoded"},
    "/v1/images/edits": JSON_TYPES | {"multipart/form-data"},
}


class Refusal(msgspec.Struct, frozen=True):
    status: int
    message: str
    headers: dict[str, str] = {}


class RequestFacts(msgspec.Struct, frozen=True):
    """What the policy looks at, from either transport."""

    method: str  # "GET" for a WebSocket handshake
    path: str
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    scheme: str  # http / https / ws / wss
    websocket: bool = False


def key_id(key: bytes) -> str:
    """What jobs record of the key that submitted them: a short hash, never the key (stable across restarts)."""
    return "key-" + hashlib.sha256(b"sdcpp-restapi key id\0" + key).hexdigest()[:12]


def _host_name(host: str) -> str:
    """'127.0.0.1:8080' -> '127.0.0.1', '[::1]:8080' -> '::1'."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class SecurityPolicy:
    def __init__(self, settings: Settings, sessions: LoginSessions) -> None:
        self.keys = tuple(key.encode() for key in settings.auth.api_keys)
        self.allow_origins = frozenset(origin.rstrip("/").lower() for origin in settings.cors.allow_origins)
        self.allowed_hosts = frozenset(name.lower() for name in settings.allowed_hosts)
        self.check_host = settings.on_loopback
        self.sessions = sessions
        self.scrape_token = settings.metrics_token.encode()

    @property
    def keys_required(self) -> bool:
        return bool(self.keys)

    # ------------------------------------------------------------------------------------------ keys

    def valid_key(self, presented: str) -> bool:
        return self._matching_key(presented) is not None

    def _matching_key(self, presented: str) -> bytes | None:
        """Constant-time comparison against every configured key."""
        candidate = presented.encode()
        matches = [key for key in self.keys if hmac.compare_digest(candidate, key)]
        return matches[0] if matches else None

    def _valid_session(self, token: str) -> bool:
        """A login cookie: a live session of the store, signed in with a key that is still configured."""
        return self._session_key(token) is not None

    def _session_key(self, token: str) -> bytes | None:
        return self.sessions.key_of(token, self.keys)

    def _authorised(self, facts: RequestFacts) -> bool:
        return self._authorising_key(facts) is not None

    def submitter(self, facts: RequestFacts) -> str:
        """The id of the key the request was let in with (`key_id`); 'anonymous' without one."""
        key = self._authorising_key(facts) if self.keys else None
        return key_id(key) if key is not None else ANONYMOUS

    def _authorising_key(self, facts: RequestFacts) -> bytes | None:
        headers = facts.headers
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and (key := self._matching_key(credentials.strip())):
            return key
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                password = ""
            if password and (key := self._matching_key(password)):
                return key
        if (presented := headers.get("x-api-key")) and (key := self._matching_key(presented)):
            return key
        if facts.websocket and (token := facts.query.get("token")) and (key := self._matching_key(token)):
            return key
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no credential
            return None
        session = cookie.get(SESSION_COOKIE)
        return self._session_key(session.value) if session is not None else None

    # ----------------------------------------------------------------------------------- signed URLs

    def output_url(self, base_url: str, relative: str) -> str:
        """The URL of one output file (relative to the output folder) as a client may fetch it: with keys set, signed
        for that file alone and valid for SIGNED_URL_TTL_S, so it works without the key."""
        url = f"{base_url}{OUTPUT_PREFIX}{quote(relative)}"
        if not self.keys:
            return url
        expires = int(time.time()) + SIGNED_URL_TTL_S
        return f"{url}?{urlencode({'expires': expires, 'signature': self._output_signature(relative, expires)})}"

    def _output_signature(self, relative: str, expires: int) -> str:
        message = f"output\n{relative}\n{expires}".encode()
        return hmac.new(self.sessions.secret, message, hashlib.sha256).hexdigest()

    def _signed_output(self, facts: RequestFacts) -> bool:
        """A GET of the one output file a signed URL names, before it expires."""
        if facts.method not in ("GET", "HEAD") or not facts.path.startswith(OUTPUT_PREFIX):
            return False
        expires, signature = facts.query.get("expires", ""), facts.query.get("signature", "")
        if not (expires.isdigit() and len(expires) <= 12) or int(expires) < time.time():
            return False
        expected = self._output_signature(facts.path[len(OUTPUT_PREFIX) :], int(expires))
        return hmac.compare_digest(signature.encode(), expected.encode())

    def _scraping(self, facts: RequestFacts) -> bool:
        """A scraper's GET /metrics with the scrape token as Bearer (compared in constant time)."""
        if not self.scrape_token or (facts.method, facts.path) != ("GET", METRICS_PATH):
            return False
        scheme, _, credentials = facts.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self.scrape_token)

    # ---------------------------------------------------------------------------------------- policy

    def _same_origin(self, origin: str, facts: RequestFacts) -> bool:
        parts = urlsplit(origin)
        own_scheme = {"ws": "http", "wss": "https"}.get(facts.scheme, facts.scheme)
        return parts.scheme == own_scheme and parts.netloc.lower() == facts.headers.get("host", "").lower()

    def refusal(self, facts: RequestFacts) -> Refusal | None:
        headers = facts.headers
        host = headers.get("host", "")
        if self.check_host:
            name = _host_name(host).lower()
            if not (is_loopback(name) or name in self.allowed_hosts):
                return Refusal(
                    403,
                    f"Host '{host}' is not allowed: the server is bound to loopback; add the "
                    "name to allowed_hosts to reach it under that name",
                )
        if facts.method == "OPTIONS":
            return None  # CORS preflight: answered by the CORS layer, never acts
        origin = headers.get("origin")
        if (
            (facts.websocket or facts.method in STATE_CHANGING)
            and origin is not None
            and origin.rstrip("/").lower() not in self.allow_origins
            and not self._same_origin(origin, facts)
        ):
            return Refusal(
                403,
                f"cross-site request refused: Origin '{origin}' is neither this server nor in [cors] allow_origins",
            )
        if (
            self.keys
            and (facts.method, facts.path) not in PUBLIC
            and not self._authorised(facts)
            and not self._scraping(facts)
            and not self._signed_output(facts)
        ):
            return Refusal(
                401,
                "an API key is required: send 'Authorization: Bearer <key>', 'X-API-Key: <key>' "
                "or HTTP Basic with the key as password (WebSocket: ?token=<key>; browsers: "
                "/login)",
                {"WWW-Authenticate": 'Bearer realm="sdcpp-restapi"'},
            )
        if not facts.websocket and self._has_body(headers):
            media_type = _media_type(headers.get("content-type", ""))
            allowed = BODY_TYPES.get(facts.path, JSON_TYPES)
            if media_type not in allowed:
                return Refusal(
                    415, f"Content-Type must be application/json for a request body (got '{media_type or 'none'}')"
                )
        return None

    @staticmethod
    def _has_body(headers: Mapping[str, str]) -> bool:
        length = headers.get("content-length", "0").strip() or "0"
        return "transfer-encoding" in headers or not length.isdigit() or int(length) > 0


def facts_from_scope(scope: Scope) -> RequestFacts:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    query = dict(reversed(parse_qsl(scope.get("query_string", b"").decode("latin-1"))))  # the first value wins
    websocket = scope["type"] == ScopeType.WEBSOCKET
    method = "GET" if websocket else str(scope.get("method", "GET"))
    return RequestFacts(method, scope.get("path", ""), headers, query, scope.get("scheme", "http"), websocket)


class SecurityMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(self, policy: SecurityPolicy) -> None:
        self.policy = policy

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        facts = facts_from_scope(scope)
        refusal = self.policy.refusal(facts)
        if refusal is None:
            if facts.method not in STATE_CHANGING or not self.policy.keys_required:
                await next_app(scope, receive, send)
                return
            submitter = SUBMITTER.set(self.policy.submitter(facts))  # what a job submitted here records
            try:
                await next_app(scope, receive, send)
            finally:
                SUBMITTER.reset(submitter)
        elif refusal.status == 401 and facts.method == "GET" and "text/html" in facts.headers.get("accept", ""):
            await _redirect(send, "/login?" + urlencode({"next": facts.path}))  # a person in a browser
        else:
            raise HTTPException(status_code=refusal.status, detail=refusal.message, headers=refusal.headers)


async def _redirect(send: Send, location: str) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 303,
        "headers": [
            (b"location", location.encode("latin-1")),
            (b"content-length", b"0"),
            (b"cache-control", b"no-store"),
        ],
    }
    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(start)
    await send(body)
