"""POST /convert on the real binary: the converted GGUF is listed, recognised and generates."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.models.architecture import detect_file, tensor_table
from tests.conftest import TINY_LOAD
from tests.support import server_fixture, wait_for_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def models_dir(own_models_dir: Path) -> Path:
    return own_models_dir


server = server_fixture("models_dir")


def test_convert_to_q8_0_then_load_and_generate(client: httpx.Client, models_dir: Path) -> None:
    accepted = client.post(
        "/convert", json={"input_path": "diffusion_models/flux2_tiny_dit.safetensors", "output_type": "q8_0"}
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["output_path"] == "diffusion_models/flux2_tiny_dit.q8_0.gguf"
    job = wait_for_job(client, accepted.json()["job_id"])
    assert job["status"] == "completed", job.get("error")
    converted = models_dir / "diffusion_models" / "flux2_tiny_dit.q8_0.gguf"
    assert converted.read_bytes()[:4] == b"GGUF"
    table = tensor_table(converted)  # our GGUF reader on the binary's own output
    assert table["txt_in.weight"] == [128, 32]
    assert detect_file(converted, diffusion_only=True).variant == "FLUX.2 klein"
    listed = client.get("/models", params={"type": "diffusion", "extension": "gguf"}).json()["diffusion_models"]
    assert [m["name"] for m in listed] == ["flux2_tiny_dit.q8_0.gguf"]
    assert client.post("/models/load", json={**TINY_LOAD, "model_name": "flux2_tiny_dit.q8_0.gguf"}).status_code == 200
    assert client.get("/health").json()["model_architecture"] == "FLUX.2 klein"
    made = client.post("/txt2img", json={"prompt": "q8", "width": 64, "height": 64, "steps": 2}).json()
    assert wait_for_job(client, made["job_id"])["status"] == "completed"
    again = client.post(
        "/convert", json={"input_path": "diffusion_models/flux2_tiny_dit.safetensors", "output_type": "q8_0"}
    )
    assert again.status_code == 400 and "already exists" in again.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"input_path": "/etc/passwd", "output_type": "q8_0"}, 400, "absolute"),
        ({"input_path": "diffusion_models/../../x", "output_type": "q8_0"}, 400, "'..'"),
        ({"input_path": "flux2_tiny_dit.safetensors", "output_type": "q8_0"}, 400, "<model folder>/<file>"),
        ({"input_path": "diffusion_models/nope.safetensors", "output_type": "q8_0"}, 404, "Model not found"),
        (
            {"input_path": "diffusion_models/flux2_tiny_dit.safetensors", "output_type": "q9_9"},
            400,
            "output_type 'q9_9'",
        ),
        (
            {
                "input_path": "diffusion_models/flux2_tiny_dit.safetensors",
                "output_type": "q4_0",
                "output_path": "diffusion_models/x.bin",
            },
            400,
            ".gguf or .safetensors",
        ),
        ({"output_type": "q8_0"}, 400, "input_path"),
    ],
)
def test_bad_convert_requests(client: httpx.Client, body: dict, status: int, fragment: str) -> None:
    response = client.post("/convert", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
