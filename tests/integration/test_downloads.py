"""Model downloads and hub metadata, against a local server speaking CivitAI's and HuggingFace's protocols."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import TINY_LOAD
from tests.fake_hubs import FakeHubs
from tests.integration.test_events import collect_until
from tests.support import ServerProcess, running_server_with_config, wait_for_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def models_dir(own_models_dir: Path) -> Path:
    return own_models_dir


@pytest.fixture(scope="module")
def hubs(models_dir: Path) -> Iterator[FakeHubs]:
    with FakeHubs((models_dir / "loras" / "tiny_lora.safetensors").read_bytes()) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory, hubs: FakeHubs) -> Iterator[ServerProcess]:
    yield from running_server_with_config(
        models_dir, tmp_path_factory.mktemp("server-downloads"), hubs.server_config(civitai_token="civ-token")
    )


def test_hub_metadata(client: httpx.Client, hubs: FakeHubs) -> None:
    info = client.get("/models/civitai/4242").json()
    assert info == {
        "success": True,
        "model_id": "4242",
        "version_id": "777",
        "name": "Tiny Detail",
        "version_name": "v2",
        "type": "lora",
        "base_model": "Flux.2 Klein",
        "filename": "tiny_detail_v2.safetensors",
        "file_size": len(hubs.payload),
        "sha256": hubs.sha256,
        "download_url": f"{hubs.url}/api/download/models/777",
    }
    assert client.get("/models/civitai/4242:700").status_code == 404  # that version has no files
    assert client.get("/models/civitai/999").status_code == 404
    assert client.get("/models/civitai/abc").status_code == 400
    hf = client.get(
        "/models/huggingface", params={"repo_id": "tiny-org/tiny-repo", "filename": "loras/tiny.safetensors"}
    )
    assert hf.json() == {
        "success": True,
        "repo_id": "tiny-org/tiny-repo",
        "filename": "loras/tiny.safetensors",
        "revision": "main",
        "file_size": len(hubs.payload),
        "sha256": hubs.sha256,
        "download_url": f"{hubs.url}/tiny-org/tiny-repo/resolve/main/loras/tiny.safetensors",
    }
    assert (
        client.get("/models/huggingface", params={"repo_id": "tiny-org/tiny-repo", "filename": "nope.gguf"}).status_code
        == 404
    )
    assert client.get("/models/huggingface", params={"repo_id": "x"}).status_code == 400


@pytest.mark.parametrize(
    ("body", "expected_path"),
    [
        ({"model_type": "lora", "model_id": "4242", "subfolder": "civitai"}, "civitai/tiny_detail_v2.safetensors"),
        (
            {"model_type": "lora", "repo_id": "tiny-org/tiny-repo", "filename": "loras/tiny.safetensors"},
            "tiny.safetensors",
        ),
        ({"model_type": "lora", "source": "url", "url": "{hubs}/plain/model.gguf"}, "model.gguf"),
    ],
)
def test_download_then_hash_job(
    client: httpx.Client, hubs: FakeHubs, models_dir: Path, body: dict, expected_path: str
) -> None:
    body = {k: (v.format(hubs=hubs.url) if isinstance(v, str) else v) for k, v in body.items()}
    accepted = client.post("/models/download", json=body)
    assert accepted.status_code == 202, accepted.text
    reply = accepted.json()
    assert reply["success"] is True and reply["model_type"] == "lora" and reply["position"] >= 0
    download = wait_for_job(client, reply["download_job_id"])
    assert download["status"] == "completed", download.get("error")
    hashed = wait_for_job(client, reply["hash_job_id"])
    assert hashed["status"] == "completed", hashed.get("error")
    # The digest is the hash job's result; its params stay the request as understood.
    assert hashed["result"] == {"sha256": hubs.sha256} and "sha256" not in hashed["params"]
    published = None if body.get("source") == "url" else hubs.sha256  # a plain URL publishes no digest
    assert hashed["params"] == {"model_type": "lora", "path": expected_path, "expected_sha256": published}
    assert (models_dir / "loras" / expected_path).read_bytes() == hubs.payload
    listed = {m["name"]: m["hash"] for m in client.get("/models", params={"type": "lora"}).json()["loras"]}
    assert listed[expected_path] == hubs.sha256
    again = client.post("/models/download", json=body)
    assert again.status_code == 400 and "already exists" in again.json()["error"]


def test_a_download_reports_its_progress_in_bytes(
    client: httpx.Client, server: ServerProcess, hubs: FakeHubs, models_dir: Path
) -> None:
    with connect(f"ws://127.0.0.1:{server.ws_port}") as ws:
        assert json.loads(ws.recv(timeout=10))["event"] == "server_status"
        reply = client.post(
            "/models/download",
            json={"model_type": "lora", "url": f"{hubs.url}/plain/model.gguf", "subfolder": "progress"},
        ).json()
        events = collect_until(ws, reply["download_job_id"])
    mine = [e for e in events if e["data"].get("job_id") == reply["download_job_id"]]
    transfers = [e["data"] for e in mine if e["event"] == "job_transfer_progress"]
    size = len(hubs.payload)
    assert transfers and all(0 < t["bytes_done"] <= size and t["bytes_total"] == size for t in transfers)
    assert transfers[-1] == {
        "job_id": reply["download_job_id"],
        "bytes_done": size,
        "bytes_total": size,
        "percentage": 100.0,
    }
    assert not [e for e in mine if e["event"] == "job_progress"]  # steps are sampling steps, not MiB
    assert (models_dir / "loras" / "progress" / "model.gguf").read_bytes() == hubs.payload
    assert wait_for_job(client, reply["download_job_id"])["progress"]["percentage"] == 100.0


def test_civitai_token_is_sent_and_downloaded_lora_is_usable(client: httpx.Client, hubs: FakeHubs) -> None:
    assert "Bearer civ-token" in hubs.auth
    client.post("/models/load", json=TINY_LOAD).raise_for_status()
    job = client.post(
        "/txt2img", json={"prompt": "x <lora:civitai/tiny_detail_v2:0.5>", "width": 64, "height": 64, "steps": 2}
    ).json()
    assert wait_for_job(client, job["job_id"])["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model_type": "lora", "url": "file:///etc/passwd"}, 400, "http(s)"),
        ({"model_type": "lora", "url": "http://127.0.0.1:9/x.txt"}, 400, "not a model file"),
        ({"model_type": "lora", "url": "http://127.0.0.1:9/x.safetensors", "subfolder": "../../etc"}, 400, "'..'"),
        ({"model_type": "unet", "url": "http://127.0.0.1:9/x.safetensors"}, 400, "model_type"),
        ({"model_type": "lora", "source": "huggingface", "repo_id": "a/b"}, 400, "filename are required"),
        ({"url": "http://x/y.gguf"}, 400, "model_type"),
    ],
)
def test_bad_download_requests(client: httpx.Client, body: dict, status: int, fragment: str) -> None:
    response = client.post("/models/download", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_unreachable_url_fails_the_job_not_the_server(client: httpx.Client, models_dir: Path, hubs: FakeHubs) -> None:
    reply = client.post(
        "/models/download", json={"model_type": "vae", "url": f"{hubs.url}/dead/model.safetensors"}
    ).json()
    download = wait_for_job(client, reply["download_job_id"])
    assert download["status"] == "failed" and "download failed" in download["error"]
    hashed = wait_for_job(client, reply["hash_job_id"])
    assert hashed["status"] == "failed" and "did not complete" in hashed["error"]
    assert not list((models_dir / "vae").iterdir())  # no partial file left


def test_hash_mismatch_deletes_the_file(client: httpx.Client, models_dir: Path) -> None:
    reply = client.post("/models/download", json={"model_type": "lora", "model_id": "4343"}).json()
    assert wait_for_job(client, reply["download_job_id"])["status"] == "completed"
    hashed = wait_for_job(client, reply["hash_job_id"])
    assert hashed["status"] == "failed" and "sha256 mismatch" in hashed["error"]
    assert not (models_dir / "loras" / "tampered.safetensors").exists()


def test_downloads_reach_public_hosts_only(client: httpx.Client, hubs: FakeHubs) -> None:
    """No server-side request forgery: a URL on loopback (other than the configured hubs) is refused at submit,
    and a hub redirecting there fails the job without fetching it."""
    refused = client.post(
        "/models/download", json={"model_type": "lora", "url": hubs.internal_url, "subfolder": "internal"}
    )
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("url: 127.0.0.1 is 127.0.0.1, a loopback")
    for url in ("http://localhost:9/m.safetensors", "http://[::1]:9/m.safetensors", "http://169.254.169.254/m.gguf"):
        answer = client.post("/models/download", json={"model_type": "lora", "url": url, "subfolder": "ssrf"})
        assert answer.status_code == 400 and "non-public address" in answer.json()["error"], url
    bounced = client.post(
        "/models/download", json={"model_type": "lora", "url": f"{hubs.url}/bounce/model.gguf", "subfolder": "bounce"}
    )
    assert bounced.status_code == 202
    job = wait_for_job(client, bounced.json()["download_job_id"])
    assert job["status"] == "failed" and "download refused: download redirect: 127.0.0.1 is 127.0.0.1" in job["error"]
