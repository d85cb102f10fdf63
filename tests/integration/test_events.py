"""Live events over a real WebSocket client, previews from the real binary, preview settings."""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, wait_for_job, wait_until

pytestmark = pytest.mark.integration


def collect_until(ws, job_id: str, timeout: float = 60) -> list[dict]:  # type: ignore[no-untyped-def]
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
        events.append(message)
        data = message["data"]
        if (
            message["event"] == "job_status_changed"
            and data["job_id"] == job_id
            and data["status"] in ("completed", "failed", "cancelled")
        ):
            return events
    raise TimeoutError("job did not finish")


def test_settings_validation_and_persistence(
    client: httpx.Client, server: ServerProcess, tiny_models_dir: Path, tmp_path: Path
) -> None:
    assert client.get("/preview/settings").json() == {
        "enabled": True,
        "mode": "tae",
        "interval": 1,
        "max_size": 256,
        "quality": 75,
        "preview_noisy": False,
    }
    for body, field in (
        ({"interval": 0}, "interval"),
        ({"max_size": 2000}, "max_size"),
        ({"quality": 0}, "quality"),
        ({"mode": "fancy"}, "mode"),
        ({"enabled": "yes"}, "enabled"),
        ({"colour": 1}, "colour"),
    ):
        response = client.put("/preview/settings", json=body)
        assert response.status_code == 400 and field in response.json()["error"], (body, response.text)
    updated = client.put("/preview/settings", json={"interval": 2, "max_size": 64, "quality": 60})
    assert updated.json() == {
        "success": True,
        "settings": {
            "enabled": True,
            "mode": "tae",
            "interval": 2,
            "max_size": 64,
            "quality": 60,
            "preview_noisy": False,
        },
    }
    server.stop()  # one server per output folder: the restarted one takes over its store
    again = ServerProcess(tiny_models_dir, server.output_dir, tmp_path / "again.log").start()
    try:
        assert httpx.get(again.url + "/preview/settings").json()["max_size"] == 64
    finally:
        again.stop()
        server.start()


def test_job_events_progress_and_previews_on_the_ws_port(client: httpx.Client, server: ServerProcess) -> None:
    assert client.post("/models/load", json=TINY_LOAD).status_code == 200
    client.put("/preview/settings", json={"enabled": True, "mode": "tae", "interval": 1, "max_size": 64})
    with connect(f"ws://127.0.0.1:{server.ws_port}") as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["event"] == "server_status" and first["data"]["model_loaded"] is True
        job_id = client.post("/txt2img", json={"prompt": "cat", "width": 128, "height": 128, "steps": 4}).json()[
            "job_id"
        ]
        events = collect_until(ws, job_id)
    mine = [e for e in events if e["data"].get("job_id") == job_id]
    names = [e["event"] for e in mine]
    assert names[0] == "job_added"
    statuses = [(e["data"]["previous_status"], e["data"]["status"]) for e in mine if e["event"] == "job_status_changed"]
    assert statuses == [("pending", "processing"), ("processing", "completed")]
    assert mine[-1]["data"]["outputs"] == [f"{job_id}/image_0.png"]
    progress = [e["data"] for e in mine if e["event"] == "job_progress"]
    assert progress and progress[-1]["step"] == progress[-1]["total_steps"] == 4
    previews = [e["data"] for e in mine if e["event"] == "job_preview"]
    assert previews, names
    image = Image.open(io.BytesIO(__import__("base64").b64decode(previews[0]["image"].split(",", 1)[1])))
    assert image.format == "JPEG" and max(image.size) <= 64
    assert (previews[0]["width"], previews[0]["height"]) == image.size and previews[0]["frame_count"] == 1
    for message in events:
        assert message["timestamp"].endswith("Z") and len(message["timestamp"]) == 24
    config = json.loads((server.output_dir / job_id / "config.json").read_text())
    # The resident worker previews on the loaded model (a folder without it previews through sd-cli).
    assert config["engine"] == "worker (resident), tae previews"


def test_single_port_ws_with_job_filter(client: httpx.Client, server: ServerProcess) -> None:
    client.post("/models/load", json=TINY_LOAD).raise_for_status()
    other = client.post(
        "/txt2img", json={"prompt": "a", "width": 64, "height": 64, "steps": 2, "preview": False}
    ).json()
    mine = client.post("/txt2img", json={"prompt": "b", "width": 64, "height": 64, "steps": 2, "preview": False}).json()
    with connect(f"ws://127.0.0.1:{server.port}/ws?job_id={mine['job_id']}") as ws:
        events = collect_until(ws, mine["job_id"])
    assert {e["data"].get("job_id") for e in events if e["event"] != "server_status"} == {mine["job_id"]}
    assert wait_for_job(client, other["job_id"])["status"] == "completed"


def test_http_preview_for_clients_without_websocket(client: httpx.Client) -> None:
    client.post("/models/load", json=TINY_LOAD).raise_for_status()
    client.put("/preview/settings", json={"interval": 1, "max_size": 128})
    job_id = client.post(
        "/txt2img", json={"prompt": "c", "width": 128, "height": 128, "steps": 12, "preview": True}
    ).json()["job_id"]
    response = wait_until(lambda: (r := client.get(f"/queue/{job_id}/preview")).status_code == 200 and r, timeout=60)
    assert response.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(response.content)).size) <= 128
    assert wait_for_job(client, job_id)["status"] == "completed"
    assert client.get(f"/queue/{job_id}/preview").status_code == 404  # only while running
    assert client.get("/queue/nope/preview").status_code == 404


def test_stalled_client_does_not_delay_jobs(client: httpx.Client, server: ServerProcess) -> None:
    client.post("/models/load", json=TINY_LOAD).raise_for_status()
    client.put("/preview/settings", json={"interval": 1, "max_size": 1024, "quality": 100})
    stalled = socket.create_connection(("127.0.0.1", server.ws_port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:  # it never reads a byte
        with connect(f"ws://127.0.0.1:{server.ws_port}") as healthy:
            started = time.monotonic()
            job_id = client.post("/txt2img", json={"prompt": "d", "width": 128, "height": 128, "steps": 6}).json()[
                "job_id"
            ]
            events = collect_until(healthy, job_id)
            assert time.monotonic() - started < 60
        assert events[-1]["data"]["status"] == "completed"
        assert client.get("/health").status_code == 200
    finally:
        stalled.close()
