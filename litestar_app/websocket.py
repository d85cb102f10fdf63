"""The event stream over WebSocket: on its own port (the `websockets` package) and at `/ws` on the HTTP
port for single-port deployments. Both adapters share `stream_events`; buffering and backpressure live in
core.events.stream, so a stalled client only ever fills its own buffer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from urllib.parse import parse_qs, parse_qsl, urlsplit

import anyio
import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from core.events.stream import Subscription
from core.service import Service
from litestar_app.security import RequestFacts, SecurityPolicy

log = logging.getLogger("sdcpp_restapi")
SEND_TIMEOUT_S = 10.0  # a client that cannot take one message in this time is stuck: disconnect it
_encoder = msgspec.json.Encoder()


async def stream_events(service: Service, subscription: Subscription, send: Callable[[str], Awaitable[None]]) -> str:
    """Send events until the subscription overflows or a send stalls; returns why it stopped."""
    subscription.offer(service.status_event())
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
    job_id: str | None,
    send: Callable[[str], Awaitable[None]],
    receive_until_closed: Callable[[], Awaitable[None]],
    close: Callable[[str], Awaitable[None]],
) -> None:
    """Stream to one client until it leaves; a client that is too slow is closed with the reason."""
    subscription = service.hub.open(job_id)
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
    job_id = socket.query_params.get("job_id") or None

    async def receive_until_closed() -> None:
        try:
            while True:
                await socket.receive_data(mode="text")
        except WebSocketDisconnect:
            pass

    async def close(reason: str) -> None:
        await socket.close(code=1008, reason=reason)

    await _serve_until_closed(service, job_id, socket.send_text, receive_until_closed, close)


ROUTES = [events_socket]


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
        query = parse_qs(urlsplit(connection.request.path if connection.request else "/").query)
        job_id = query["job_id"][0] if query.get("job_id") else None

        async def receive_until_closed() -> None:
            try:
                async for _ in connection:
                    pass
            except ConnectionClosed:
                pass

        async def close(reason: str) -> None:
            await connection.close(code=1008, reason=reason)

        await _serve_until_closed(service, job_id, connection.send, receive_until_closed, close)

    async with serve(handler, host, port, max_queue=16, write_limit=2**20, process_request=check_handshake):
        log.info("WebSocket events on ws://%s:%d", host, port)
        yield
