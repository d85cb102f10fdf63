"""The durable store through the real server: nothing acknowledged is lost to SIGKILL, old JSON state is
imported on upgrade, a store it cannot use stops the server untouched, and `GET /queue` filters and pages."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sqlite3
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_LOAD
from tests.contract import DOCUMENTED_ENDPOINTS, OWN_ENDPOINTS
from tests.support import ServerProcess, server_fixture, wait_for_job
from tests.unit.test_store import OLD_JOB, write_old_state

pytestmark = pytest.mark.integration
STORE = ".sdcpp-restapi.sqlite3"
CHEAP = {"prompt": "burst cat", "width": 64, "height": 64, "steps": 1}

server = server_fixture("own_models_dir")


def test_sigkill_during_a_burst_of_200_submissions_loses_no_acknowledged_job(
    own_models_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "output"
    first = ServerProcess(own_models_dir, output, tmp_path / "first.log").start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    with httpx.Client(base_url=first.url, timeout=30) as http:
        assert http.post("/models/load", json=TINY_LOAD).status_code == 200

    def submit(count: int) -> None:
        with httpx.Client(base_url=first.url, timeout=30) as http:
            for _ in range(count):
                try:
                    response = http.post("/txt2img", json=CHEAP)
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 202:
                    with lock:
                        acknowledged.append(response.json()["job_id"])
                        if len(acknowledged) == 120:
                            first.kill()  # SIGKILL in the middle of the burst

    submitters = [threading.Thread(target=submit, args=(25,)) for _ in range(8)]
    for thread in submitters:
        thread.start()
    for thread in submitters:
        thread.join(timeout=120)
    assert first.process is not None and first.process.poll() is not None
    assert 120 <= len(acknowledged) < 200, len(acknowledged)

    second = ServerProcess(own_models_dir, output, tmp_path / "second.log").start()
    try:
        with httpx.Client(base_url=second.url, timeout=30) as http:
            missing = [job_id for job_id in acknowledged if http.get(f"/queue/{job_id}").status_code != 200]
            assert missing == []
            listing = http.get("/queue", params={"limit": 0}).json()
            assert {job["job_id"] for job in listing["items"]} >= set(acknowledged)
            assert listing["total_count"] >= len(acknowledged)
    finally:
        second.stop()


def test_old_json_state_is_imported_on_the_first_start(own_models_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    written = write_old_state(output)
    process = ServerProcess(own_models_dir, output, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=process.url, timeout=30) as http:
            job = http.get(f"/queue/{OLD_JOB['job_id']}").json()
            assert job["status"] == "completed" and job["params"]["prompt"] == "an old cat"
            # The old "<64x48 image: path>" string is shown as the image's file, typed like a new job's.
            assert job["params"]["init_image_base64"] == {"path": "inputs/init_image.png", "width": 64, "height": 48}
            assert http.get("/preview/settings").json()["mode"] == "proj"
            assert [e["id"] for e in http.get("/ollama/history").json()["items"]] == ["e1"]
            assert http.get("/assistant/history").json()["count"] == 2
    finally:
        process.stop()
    for name in written:
        assert (output / f"{name}.imported").is_file() and not (output / name).exists()


@pytest.mark.parametrize("damage", ["garbage", "newer"])
def test_a_store_it_cannot_use_stops_the_server_and_stays_untouched(
    own_models_dir: Path, tmp_path: Path, damage: str
) -> None:
    output = tmp_path / "output"
    output.mkdir()
    store = output / STORE
    if damage == "garbage":
        store.write_bytes(b"definitely not sqlite\n" * 50)
    else:
        with sqlite3.connect(store) as db:
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO schema_version VALUES (999)")
        db.close()
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    process = ServerProcess(own_models_dir, output, tmp_path / "server.log")
    result = subprocess.run(process.argv(), capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert result.returncode == 2, result.stderr
    assert str(store) in result.stderr and "left untouched" in result.stderr
    assert "Traceback" not in result.stderr
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in output.iterdir()) == [STORE]  # nothing created or replaced beside it


def test_queue_filters_and_paging_over_http(client: httpx.Client) -> None:
    assert client.post("/models/load", json=TINY_LOAD).status_code == 200
    ids = [
        client.post("/txt2img", json={**CHEAP, "prompt": prompt}).json()["job_id"]
        for prompt in ("a red fox", "a blue fox", "a cat")
    ]
    for job_id in ids:
        assert wait_for_job(client, job_id)["status"] == "completed"
    foxes = client.get("/queue", params={"search": "FOX", "status": "completed", "type": "txt2img"}).json()
    assert [job["job_id"] for job in foxes["items"]] == ids[:2] and foxes["matched_count"] == 2
    page = client.get("/queue", params={"limit": 1, "offset": 1}).json()
    assert [job["job_id"] for job in page["items"]] == [ids[1]]
    both = client.get("/queue", params=[("status", "completed"), ("status", "failed"), ("limit", "0")]).json()
    assert {job["status"] for job in both["items"]} == {"completed"} and both["total_count"] >= 3
    for bad in ({"status": "finished"}, {"limit": "-1"}, {"offset": "x"}, {"type": "painting"}):
        response = client.get("/queue", params=bad)
        assert response.status_code == 400 and next(iter(bad)) in response.json()["error"], (bad, response.text)


def test_openapi_lists_every_documented_endpoint(client: httpx.Client) -> None:
    documented = DOCUMENTED_ENDPOINTS
    assert len(documented) >= 40
    document = client.get("/schema/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    served = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    wanted = {(method, re.sub(r"\{[^}]+\}", "{}", path)) for method, path in documented}
    assert wanted - served == set()
    assert OWN_ENDPOINTS.isdisjoint(documented) and served >= OWN_ENDPOINTS  # ours, beside the contract's
    txt2img = document["paths"]["/txt2img"]["post"]
    body_schema = txt2img["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    properties = document["components"]["schemas"][body_schema]["properties"]
    assert (
        properties["steps"]["minimum"] == 1 and "prompt" in document["components"]["schemas"][body_schema]["required"]
    )
    follows = {
        name for name, schema in properties.items() if "follows the architecture" in schema.get("description", "")
    }
    assert follows == {"width", "height", "steps", "cfg_scale", "distilled_guidance", "sampler", "scheduler"}
    error = txt2img["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert document["components"]["schemas"][error]["properties"] == {"error": {"type": "string"}}
    docs = client.get("/docs", follow_redirects=True)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_an_oversized_body_is_refused_before_it_is_read(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 314572800\r\n\r\n{"prompt": '
        )
        sock.shutdown(socket.SHUT_WR)  # the client stops sending: the answer must not wait for the 300 MB
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.decode("latin-1").partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413 "), answer
    assert "larger" in json.loads(body)["error"] or "too large" in json.loads(body)["error"].lower()
