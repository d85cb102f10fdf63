"""The event stream over WebSocket: on its own port (the `websockets` package) and at `/ws` on the HTTP
port for single-port deployments, and as Server-Sent Events at `GET /events`. The adapters share `open_stream`
(subscribe, then what a reconnecting client missed: `?since=N`, or SSE's `Last-Event-ID`; core/events/replay.py)
and the per-client buffers of core.events.stream, so a stalled client only ever fills its own buffer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated
from urllib.parse import parse_qs, parse_qsl, urlsplit

import anyio
import msgspec
from litestar import WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import Parameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from core.errors import BadRequest
from core.events.stream import Subscription
from core.service import Service
from litestar_app.security import RequestFacts, SecurityPolicy

log = logging.getLogger("sdcpp_restapi")
SEND_TIMEOUT_S = 10.0  # a client that cannot take one message in this time is stuck: disconnect it
_encoder = msgspec.json.Encoder()


def resume_point(raw: str | None, field: str) -> int | None:
    """The `since` a client sent (None: a fresh connection); anything but a non-negative integer is a 400."""
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        raise BadRequest(f"{field}: expected the integer seq of the last event received")
    return int(raw)


async def open_stream(service: Service, job_id: str | None, since: int | None) -> Subscription:
    """A subscription holding, first, what a client that saw up to `since` missed, then the current status. The
    subscription is open before the log is read, so nothing published meanwhile is lost."""
    subscription = service.hub.open(job_id)
    try:
        if since is not None:
            subscription.prepend(await service.event_log.missed(since, job_id))
    except BaseException:
        service.hub.close(subscription)
        raise
    subscription.offer(service.status_event())
    return subscription


async def stream_events(service: Service, subscription: Subscription, send: Callable[[str], Awaitable[None]]) -> str:
    """Send events until the subscription overflows or a send stalls; returns why it stopped."""
    while True:
        events = await subscription.next_events()
        if subscription.overflowed:
            return "client too slow: its event buffer overflowed"
        for event in events:
            with anyio.move_on_after(SEND_TIMEOUT_S) as scope:
                await send(_encoder.encode(event).decode())
            if scope.cancelled_caught:
                return f"client did not accept an event within {SEND_TIMEOUT_S:.0f}s"


async def _serve_until_closed(
    service: Service,
    query: dict[str, str],
    send: Callable[[str], Awaitable[None]],
    receive_until_closed: Callable[[], Awaitable[None]],
    close: Callable[[str], Awaitable[None]],
) -> None:
    """Stream to one client until it leaves; a client that is too slow (or sent a bad `since`) is closed with the
    reason."""
    try:
        since = resume_point(query.get("since"), "since")
    except BadRequest as exc:
        with anyio.move_on_after(1):
            await close(exc.message[:120])
        return
    subscription = await open_stream(service, query.get("job_id") or None, since)
    reason: str | None = None
    try:
        async with anyio.create_task_group() as tasks:

            async def writer() -> None:
                nonlocal reason
                reason = await stream_events(service, subscription, send)
                tasks.cancel_scope.cancel()

            async def reader() -> None:
                await receive_until_closed()
                tasks.cancel_scope.cancel()

            tasks.start_soon(writer)
            tasks.start_soon(reader)
    finally:
        service.hub.close(subscription)
    if reason:
        log.info("closing WebSocket client: %s", reason)
        with anyio.move_on_after(1):
            await close(reason[:120])  # close reasons are limited to 123 bytes


@websocket("/ws")
async def events_socket(socket: WebSocket) -> None:
    service: Service = socket.app.state.service
    await socket.accept()
    query = {name: socket.query_params.get(name) or "" for name in ("job_id", "since")}

    async def receive_until_closed() -> None:
        try:
            while True:
                await socket.receive_data(mode="text")
        except WebSocketDisconnect:
            pass

    async def close(reason: str) -> None:
        await socket.close(code=1008, reason=reason)

    await _serve_until_closed(service, query, socket.send_text, receive_until_closed, close)


async def _sse_messages(service: Service, subscription: Subscription) -> AsyncIterator[ServerSentEventMessage]:
    """Each event as one SSE message: `id` its seq (what the browser sends back as Last-Event-ID), `data` the same
    JSON as a WebSocket message. A client too slow for its buffer is ended (it reconnects with Last-Event-ID)."""
    try:
        while True:
            events = await subscription.next_events()
            if subscription.overflowed:
                return
            for event in events:
                yield ServerSentEventMessage(data=_encoder.encode(event).decode(), id=str(event.seq))
    finally:
        service.hub.close(subscription)


@get(
    "/events",
    summary="The live event stream as Server-Sent Events (the same events as /ws; resumable)",
    media_type="text/event-stream",
)
async def events_sse(
    service: Service,
    job_id: str | None = None,
    since: Annotated[
        str | None, Parameter(description="seq of the last event received: what followed is sent first")
    ] = None,
    last_event_id: Annotated[
        str | None, Parameter(header="Last-Event-ID", description="as `since` (what browsers send on reconnect)")
    ] = None,
) -> ServerSentEvent:
    start = resume_point(since, "since") if since else resume_point(last_event_id, "Last-Event-ID")
    subscription = await open_stream(service, job_id or None, start)
    return ServerSentEvent(_sse_messages(service, subscription))


ROUTES = [events_socket, events_sse]


@asynccontextmanager
async def standalone_server(service: Service, host: str, port: int, policy: SecurityPolicy) -> AsyncIterator[None]:
    """The same stream on its own port (default 8081), as the spec's `ws://host:8081`, behind the same policy
    as the HTTP port (a refused handshake gets the HTTP status and the reason)."""

    def check_handshake(connection: ServerConnection, request: WsRequest) -> WsResponse | None:
        split = urlsplit(request.path)
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        facts = RequestFacts("GET", split.path, headers, dict(reversed(parse_qsl(split.query))), "ws", websocket=True)
        refusal = policy.refusal(facts)
        if refusal is None:
            return None
        return connection.respond(HTTPStatus(refusal.status), refusal.message + "\n")

    async def handler(connection: ServerConnection) -> None:
        parsed = parse_qs(urlsplit(connection.request.path if connection.request else "/").query)
        query = {name: values[0] for name, values in parsed.items() if values}

        async def receive_until_closed() -> None:
            try:
                async for _ in connection:
                    pass
            except ConnectionClosed:
                pass

        async def close(reason: str) -> None:
            await connection.close(code=1008, reason=reason)

        await _serve_until_closed(service, query, connection.send, receive_until_closed, close)

    async with serve(handler, host, port, max_queue=16, write_limit=2**20, process_request=check_handshake):
        log.info("WebSocket events on ws://%s:%d", host, port)
        yield
