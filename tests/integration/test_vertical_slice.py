"""The whole path on the real binary: list models, load, txt2img, poll, fetch the PNG."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from runners.sdserver import free_loopback_port
from tests.conftest import TINY_LOAD
from tests.support import REPO, ServerProcess, wait_for_job

pytestmark = pytest.mark.integration


def test_health_before_any_load(client: httpx.Client) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["model_loaded"] is False and body["model_loading"] is False
    assert body["model_name"] is None and body["loaded_components"] == {}


def test_txt2img_without_model_is_refused(client: httpx.Client) -> None:
    response = client.post("/txt2img", json={"prompt": "a cat"})
    assert response.status_code == 400
    assert response.json() == {"error": "No model loaded"}


def test_models_lists_the_tiny_set_by_type(client: httpx.Client) -> None:
    body = client.get("/models").json()
    assert [m["name"] for m in body["diffusion_models"]] == ["flux2_tiny_dit.safetensors"]
    assert body["diffusion_models"][0]["is_loaded"] is False
    assert body["diffusion_models"][0]["file_extension"] == ".safetensors"
    assert body["diffusion_models"][0]["size_bytes"] > 1_000_000
    assert [m["name"] for m in body["llm"]] == ["qwen3_tiny_llm.safetensors"]
    assert [m["name"] for m in body["loras"]] == ["tiny_lora.safetensors"]
    assert "is_loaded" not in body["loras"][0]
    assert "applied_filters" not in body
    filtered = client.get("/models", params={"type": "esrgan", "extension": "safetensors"}).json()
    assert [m["name"] for m in filtered["esrgan"]] == ["esrgan_tiny_x4.safetensors"]
    assert filtered["llm"] == [] and filtered["applied_filters"] == {"type": "esrgan", "extension": "safetensors"}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "model_name is required"),
        (
            {"model_name": "../llm/qwen3_tiny_llm.safetensors", "model_type": "diffusion"},
            400,
            "model_name must not contain '..'",
        ),
        (
            {"model_name": "/etc/passwd", "model_type": "diffusion"},
            400,
            "model_name must be a path relative to its folder, not an absolute path",
        ),
        (
            {"model_name": "nope.safetensors", "model_type": "diffusion"},
            500,
            "Internal error: Model not found: nope.safetensors",
        ),
        ({"model_name": "flux2_tiny_dit.safetensors", "model_type": "unet"}, 400, None),
        ({"model_name": 5}, 400, None),
    ],
)
def test_bad_load_requests(client: httpx.Client, body: dict, status: int, message: str | None) -> None:
    response = client.post("/models/load", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if message is not None:
        assert error == message
    else:
        assert error.startswith(("model_type", "model_name")), error


def test_load_generate_and_fetch_png(client: httpx.Client, server: ServerProcess) -> None:
    loaded = client.post("/models/load", json=TINY_LOAD)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json() == {
        "success": True,
        "message": "Model loaded successfully",
        "model_name": "flux2_tiny_dit.safetensors",
        "model_type": "diffusion",
        "loaded_components": {
            "vae": None,
            "clip_l": None,
            "clip_g": None,
            "t5xxl": None,
            "controlnet": None,
            "llm": "qwen3_tiny_llm.safetensors",
            "llm_vision": None,
        },
    }
    health = client.get("/health").json()
    assert health["model_loaded"] is True and health["model_name"] == "flux2_tiny_dit.safetensors"
    assert health["loaded_components"]["llm"] == "qwen3_tiny_llm.safetensors"

    accepted = client.post("/txt2img", json={"prompt": "a lovely cat", "width": 64, "height": 48, "steps": 3})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "pending" and accepted.json()["position"] in (0, 1)
    job = wait_for_job(client, accepted.json()["job_id"])
    assert job["status"] == "completed", job.get("error")
    assert job["outputs"] == [f"{job['job_id']}/image_0.png"]
    progress = job["progress"]
    assert progress["step"] == progress["total_steps"] == 3
    assert progress["percentage"] == 100.0
    assert job["params"]["seed"] >= 0  # the seed really used, not -1
    assert job["started_at"] and job["completed_at"]

    png = client.get(f"/output/{job['outputs'][0]}")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.size == (64, 48)
    assert "parameters" in image.info and "a lovely cat" in image.info["parameters"]
    config = json.loads((server.output_dir / job["job_id"] / "config.json").read_text())
    assert config["params"]["seed"] == job["params"]["seed"]
    assert config["model"] == "flux2_tiny_dit.safetensors"

    listing = client.get("/queue").json()
    assert listing["completed_count"] >= 1 and listing["total_count"] == len(listing["items"])
    assert (server.output_dir / ".sdcpp-restapi.sqlite3").is_file()  # the durable store


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"prompt": "x", "width": "wide"}, "width: expected `int`"),
        ({"prompt": "x", "steps": 0}, "steps: expected `int` >= 1"),
        ({"prompt": "x", "width": 100000}, "width must be at most"),
        ({"prompt": "x", "sampler": "warp_drive"}, "sampler 'warp_drive' is not supported"),
        ({"prompt": "x <lora:no_such_lora:0.5>"}, "unknown LoRA 'no_such_lora'"),
        ({"prompt": "x <lora:../../etc/passwd:0.5>"}, "must not contain '..'"),
        ({"width": 64}, "Object missing required field `prompt`"),
        (
            {"prompt": "x", "width": 64, "height": 64, "control_image_base64": "iVBORw0KGgo="},
            "control_image_base64: needs a ControlNet",
        ),
        (
            {"prompt": "x", "width": 72, "height": 40},
            "multiples of 16 for FLUX.2 klein (sd.cpp would silently make 72x40 into 80x48)",
        ),
    ],
)
def test_bad_txt2img_requests_name_the_field(client: httpx.Client, body: dict, fragment: str) -> None:
    client.post("/models/load", json=TINY_LOAD).raise_for_status()
    response = client.post("/txt2img", json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_malformed_json_and_unknown_job(client: httpx.Client) -> None:
    response = client.post("/txt2img", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    missing = client.get("/queue/does-not-exist")
    assert missing.status_code == 404 and missing.json() == {"error": "Job not found"}
    route = client.get("/no/such/route")
    assert route.status_code == 404 and "error" in route.json()


def test_output_refuses_traversal(client: httpx.Client) -> None:
    for path in ("/output/%2e%2e/%2e%2e/etc/passwd", "/output/..%2F..%2Fetc%2Fpasswd", "/output/queue_state.json"):
        response = client.get(path)
        assert response.status_code in (400, 404), path
        assert "root:" not in response.text


def failed_start(tmp_path: Path, *flags: str) -> str:
    """Start `serve` with these flags (free ports and fresh folders unless given), expect it to stop at start-up with
    exit code 2 and a message, no traceback; returns its stderr."""
    defaults = {
        "--port": str(free_loopback_port()),
        "--ws-port": "0",
        "--models-dir": str(tmp_path),
        "--output-dir": str(tmp_path / "out"),
    }
    chosen = {**defaults, **dict(zip(flags[::2], flags[1::2], strict=True))}
    result = subprocess.run(
        [sys.executable, "-m", "litestar_app", "serve", *(item for pair in chosen.items() for item in pair)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_missing_binary_is_a_clear_startup_error(tmp_path: Path) -> None:
    stderr = failed_start(tmp_path, "--sd-cli", str(tmp_path / "nope"))
    assert "sd-cli binary not found" in stderr and "bin/build-backend cpu" in stderr


def test_port_in_use_is_a_clear_startup_error(server: ServerProcess, tmp_path: Path) -> None:
    stderr = failed_start(tmp_path, "--port", str(server.port))
    assert f"cannot listen on 127.0.0.1:{server.port} (--port)" in stderr


def test_a_second_server_on_the_same_output_folder_is_a_clear_startup_error(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Both would run the same pending jobs: the second start stops, naming the first server's pid."""
    assert server.process is not None
    stderr = failed_start(tmp_path, "--output-dir", str(server.output_dir))
    assert f"in use by another sdcpp-restapi server (pid {server.process.pid})" in stderr
