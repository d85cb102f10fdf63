"""Clients that send slowly (issue 23): a request head trickled in, or a body that stalls, gets a 408 naming the
deadline and the connection closed, instead of holding a connection for ever."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.support import ServerProcess, running_server_with_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server_with_config(
        tiny_models_dir, tmp_path_factory.mktemp("slow"), "head_timeout_s = 1.0\nbody_idle_timeout_s = 1.0\n"
    )


def answer_of(sock: socket.socket, trickle: bytes = b"", limit_s: float = 30.0) -> bytes:
    """Read until the server closes; meanwhile send `trickle` a byte at a time (what a slowloris client does)."""
    sock.settimeout(0.2)
    answer, deadline = b"", time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if trickle:
            try:
                sock.sendall(trickle[:1])
            except OSError:
                trickle = b""
            trickle = trickle[1:]
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        if not chunk:
            return answer
        answer += chunk
    raise AssertionError(f"the server kept the connection for {limit_s} s: {answer!r}")


def refusal(answer: bytes) -> str:
    head, _, body = answer.decode("latin-1").partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 408 "), answer
    return str(json.loads(body)["error"])


def test_a_trickled_request_head_gets_a_408(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        error = refusal(answer_of(sock, trickle=b"X-Slow: " + b"a" * 200))
    assert error == "request head not complete within 1 s (head_timeout_s)"


def test_a_stalled_body_gets_a_408(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"prompt": '
        )
        error = refusal(answer_of(sock))
    assert error == "request body paused for more than 1 s (body_idle_timeout_s)"


def test_ordinary_requests_and_kept_alive_connections_are_unaffected(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as client:
        for _ in range(2):
            assert client.get("/health").status_code == 200
            time.sleep(0.2)
        slow_job = client.get("/queue", params={"limit": 1})  # a response that is under way is never cut
        assert slow_job.status_code == 200


def test_a_websocket_outlives_the_deadlines(server: ServerProcess) -> None:
    """The upgrade request's deadline ends with the upgrade: an open /ws got the 408 written into its frames once
    body_idle_timeout_s had passed (browsers: "Invalid frame header"), and the web UI's live events dropped."""
    with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        time.sleep(2.5)  # past both deadlines (1 s each)
        events = []  # what /ws sent (its greeting): JSON events; a 408 in the frames would raise ConnectionClosed
        with contextlib.suppress(TimeoutError):
            while True:
                events.append(json.loads(ws.recv(timeout=0.5)))
        assert all("event" in event for event in events), events
