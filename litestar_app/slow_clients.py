"""Deadlines for clients that send slowly (issue 23): uvicorn's h11 protocol with a deadline for a request's head
and one for each pause in its body.

uvicorn alone keeps a connection whose client trickles its request (a byte every few seconds resets its only
timer): a few such clients hold the server's connections open for ever. Here a client that has not sent a whole
request head within `head_timeout_s` of connecting (or of the previous response), or that pauses a body for more
than `body_idle_timeout_s`, gets a 408 with a JSON error body and the connection is closed; the route reading
that body sees the client gone.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# After the 408, how long to keep reading (and dropping) what the client still sends before closing: closing a socket
# with unread data makes the kernel send a reset, which can destroy the 408 before the client reads it ("lingering
# close", as Apache and nginx do).
LINGER_S = 2.0


def _408(message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def slow_client_protocol(head_timeout_s: float, body_idle_timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn.Config(http=...), with these deadlines."""

    head_message = f"request head not complete within {head_timeout_s:g} s (head_timeout_s)"
    body_message = f"request body paused for more than {body_idle_timeout_s:g} s (body_idle_timeout_s)"

    class SlowClientDeadlines(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            self._refused = False  # a 408 was sent: what comes in is dropped until the lingering close

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(head_timeout_s, head_message)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            if self.transport.get_protocol() is not self:  # upgraded to a WebSocket: its own protocol owns it now
                self._disarm()  # (else the deadline's 408 would land inside the WebSocket's frames)
                return
            state = self.conn.their_state
            if state is h11.IDLE:
                return  # the head is not complete yet: its deadline runs on, whatever trickles in
            if state is h11.SEND_BODY:
                self._arm(body_idle_timeout_s, body_message)
            else:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm(head_timeout_s, head_message)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self, seconds: float, message: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._too_slow, message)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self, message: str) -> None:
            self._deadline = None
            if self.transport.is_closing() or (self.cycle is not None and self.cycle.response_started):
                return  # a response is under way: the client is not the one holding things up
            self._refused = True
            self.transport.write(_408(message))
            if self.transport.can_write_eof():
                self.transport.write_eof()  # the client reads the 408 and the end, then stops sending
            self.loop.call_later(LINGER_S, self.transport.close)

    return SlowClientDeadlines
