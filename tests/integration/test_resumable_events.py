"""Resumable events (issue 24): every WebSocket and SSE event carries `seq`; a client that reconnects with the last
number it saw (`?since=N` on either WebSocket, `Last-Event-ID` or `?since=` on `GET /events`) gets what it missed
first, or a `gap` event when that is too old. Real clients: `websockets` and httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, server_fixture, wait_for_job

pytestmark = pytest.mark.integration
server = server_fixture()
# No previews: these tests are about numbering and replay (the window keeps no previews), and a watched job would
# otherwise preview (tests/integration/test_events.py covers previews).
BODY = {"width": 64, "height": 64, "steps": 2, "seed": 11, "preview": False}


@pytest.fixture()
def loaded(client: httpx.Client) -> httpx.Client:
    if client.get("/health").json()["model_name"] != TINY_LOAD["model_name"]:
        assert client.post("/models/load", json=TINY_LOAD).status_code == 200
    return client


def until_finished(messages: Iterator[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    got = []
    for message in messages:
        got.append(message)
        data = message["data"]
        if message["event"] == "job_status_changed" and data["job_id"] == job_id and data["status"] == "completed":
            return got
    raise AssertionError("the stream ended before the job completed")


def ws_messages(ws: ClientConnection) -> Iterator[dict[str, Any]]:
    while True:
        yield json.loads(ws.recv(timeout=120))


def sse_messages(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Each SSE message's JSON, checked against its `id:` line."""
    seq = None
    for line in response.iter_lines():
        if line.startswith("id:"):
            seq = int(line[3:].strip())
        elif line.startswith("data:"):
            message = json.loads(line[5:].strip())
            assert message["seq"] == seq
            yield message


def last_seq_now(server: ServerProcess) -> int:
    """Where a client stands after connecting: the seq of the status sent on connect."""
    with connect(f"ws://127.0.0.1:{server.ws_port}") as ws:
        first = json.loads(ws.recv(timeout=10))
    assert first["event"] == "server_status"
    return int(first["seq"])


def of_job(messages: list[dict[str, Any]], job_id: str) -> list[tuple[str, str | None]]:
    return [(m["event"], m["data"].get("status")) for m in messages if m["data"].get("job_id") == job_id]


def test_every_event_carries_an_increasing_seq(loaded: httpx.Client, server: ServerProcess) -> None:
    with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        status = json.loads(ws.recv(timeout=10))
        job_id = loaded.post("/txt2img", json={**BODY, "prompt": "numbered"}).json()["job_id"]
        got = until_finished(ws_messages(ws), job_id)
    seqs = [m["seq"] for m in got if m["event"] != "server_status"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > status["seq"]


@pytest.mark.parametrize("endpoint", ["ws-port", "/ws"])
def test_a_websocket_reconnect_with_since_gets_what_it_missed(
    loaded: httpx.Client, server: ServerProcess, endpoint: str
) -> None:
    since = last_seq_now(server)  # then the client is away while a job runs from start to end
    job_id = loaded.post("/txt2img", json={**BODY, "prompt": f"missed on {endpoint}"}).json()["job_id"]
    assert wait_for_job(loaded, job_id)["status"] == "completed"
    url = f"ws://127.0.0.1:{server.ws_port}" if endpoint == "ws-port" else f"ws://127.0.0.1:{server.port}/ws"
    with connect(f"{url}?since={since}") as ws:
        missed = until_finished(ws_messages(ws), job_id)
    assert of_job(missed, job_id)[0] == ("job_added", None)
    assert ("job_status_changed", "processing") in of_job(missed, job_id)
    assert "job_progress" in [event for event, _ in of_job(missed, job_id)]
    assert all(m["seq"] > since for m in missed)
    assert [m["seq"] for m in missed] == sorted(m["seq"] for m in missed)


def test_sse_resumes_from_last_event_id_or_since(loaded: httpx.Client, server: ServerProcess) -> None:
    since = last_seq_now(server)
    job_id = loaded.post("/txt2img", json={**BODY, "prompt": "missed on sse"}).json()["job_id"]
    assert wait_for_job(loaded, job_id)["status"] == "completed"
    for how in ({"headers": {"Last-Event-ID": str(since)}}, {"params": {"since": str(since)}}):
        with loaded.stream("GET", "/events", timeout=60, **how) as response:  # type: ignore[arg-type]
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            missed = until_finished(sse_messages(response), job_id)
        assert of_job(missed, job_id)[0] == ("job_added", None), how
        assert of_job(missed, job_id)[-1] == ("job_status_changed", "completed")
    # Filtered to one job, as ?job_id= on the WebSocket:
    with loaded.stream("GET", "/events", params={"since": str(since), "job_id": job_id}, timeout=60) as response:
        missed = until_finished(sse_messages(response), job_id)
    assert {m["data"].get("job_id") for m in missed if m["event"] != "server_status"} == {job_id}


def test_a_since_from_before_the_start_is_a_gap(server: ServerProcess, client: httpx.Client) -> None:
    with connect(f"ws://127.0.0.1:{server.ws_port}?since=5") as ws:
        gap = json.loads(ws.recv(timeout=10))
        status = json.loads(ws.recv(timeout=10))
    assert gap["event"] == "gap" and gap["data"]["since"] == 5
    assert "from before this server started" in gap["data"]["reason"]
    assert status["event"] == "server_status" and gap["seq"] <= status["seq"]


def test_a_malformed_since_is_refused(server: ServerProcess, client: httpx.Client) -> None:
    response = client.get("/events", params={"since": "yesterday"})
    assert response.status_code == 400
    assert response.json()["error"] == "since: expected the integer seq of the last event received"
    bad_header = client.get("/events", headers={"Last-Event-ID": "-3"})
    assert bad_header.status_code == 400 and bad_header.json()["error"].startswith("Last-Event-ID:")
    with connect(f"ws://127.0.0.1:{server.ws_port}?since=x") as ws, pytest.raises(Exception) as closed:
        ws.recv(timeout=10)
    assert "since: expected the integer seq" in str(closed.value)
