"""Generation through the durable queue on the real binaries: batches, img2img, LoRA, upscale, cancel,
crashes and restart recovery."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image

from fixtures.tiny_models import write_mismatched_dit
from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, sd_processes, server_fixture, wait_for_job, wait_until

pytestmark = pytest.mark.integration


def png_b64(size: tuple[int, int], mode: str = "RGB", color: float | tuple[float, ...] | str = (200, 40, 40)) -> str:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def fetch_image(client: httpx.Client, output: str) -> Image.Image:
    response = client.get(f"/output/{output}")
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content))


@pytest.fixture(scope="module")
def models_dir(own_models_dir: Path) -> Path:
    models = own_models_dir
    write_mismatched_dit(models / "diffusion_models" / "mismatched_dit.safetensors")
    return models


# These tests check the sd-server and sd-cli engines (a plain sd.cpp release folder); test_worker.py covers the
# resident worker that runs loaded models when the backend folder has it.
NO_WORKER = ("--sd-worker", "none")
server = server_fixture("models_dir", *NO_WORKER)


@pytest.fixture()
def loaded(client: httpx.Client) -> httpx.Client:
    if client.get("/health").json()["model_name"] != TINY_LOAD["model_name"]:
        assert client.post("/models/load", json=TINY_LOAD).status_code == 200
    return client


def run_job(client: httpx.Client, path: str, body: dict) -> dict:
    response = client.post(path, json=body)
    assert response.status_code == 202, response.text
    return wait_for_job(client, response.json()["job_id"])


def test_batch_with_fixed_seed_is_reproducible(loaded: httpx.Client, server: ServerProcess) -> None:
    body = {"prompt": "a red fox", "width": 64, "height": 64, "steps": 2, "seed": 1234, "batch_count": 2}
    first, second = run_job(loaded, "/txt2img", body), run_job(loaded, "/txt2img", body)
    assert first["status"] == second["status"] == "completed"
    assert [o.split("/")[1] for o in first["outputs"]] == ["image_0.png", "image_1.png"]
    assert first["progress"]["total_images"] == 2 and first["progress"]["all_steps"] == 4
    images = [loaded.get(f"/output/{o}").content for o in first["outputs"]]
    again = [loaded.get(f"/output/{o}").content for o in second["outputs"]]
    assert images == again  # same seed, same bytes
    assert images[0] != images[1]  # batch image i uses seed + i
    parameters = Image.open(io.BytesIO(images[1])).info["parameters"]
    assert "Seed: 1235" in parameters
    config = json.loads((server.output_dir / first["job_id"] / "config.json").read_text())
    assert config["engine"] == "sd-server (resident)" and config["params"]["seed"] == 1234


def test_omitted_sampling_fields_follow_the_loaded_architecture(loaded: httpx.Client, server: ServerProcess) -> None:
    """FLUX.2 wants euler at cfg 1 (its preset in /architectures); the SD defaults (euler_a, 7.0) burn it."""
    preset = loaded.get("/architectures").json()["current_preset"]["generationDefaults"]
    assert (preset["sampler"], preset["cfg_scale"]) == ("euler", 1.0)
    job = run_job(loaded, "/txt2img", {"prompt": "a fox", "width": 64, "height": 64, "steps": 2, "seed": 7})
    params = job["params"]
    assert (params["sampler"], params["cfg_scale"], params["scheduler"]) == ("euler", 1.0, "discrete")
    assert params["default_sources"] == {
        "cfg_scale": "architecture FLUX.2",
        "sampler": "architecture FLUX.2",
        "scheduler": "contract",
        "distilled_guidance": "contract",
    }
    config = json.loads((server.output_dir / job["job_id"] / "config.json").read_text())
    assert config["params"]["default_sources"] == params["default_sources"]
    written = fetch_image(loaded, job["outputs"][0]).info["parameters"]  # what sd.cpp itself ran
    assert re.search(r"Sampler: euler\b(?!_)", written) and "CFG scale: 1.000000" in written, written


def test_img2img_with_inpainting_mask(loaded: httpx.Client, server: ServerProcess) -> None:
    mask = "data:image/png;base64," + png_b64((64, 64), "L", 255)
    job = run_job(
        loaded,
        "/img2img",
        {
            "prompt": "watercolor",
            "init_image_base64": png_b64((64, 64)),
            "mask_image_base64": mask,
            "strength": 0.5,
            "width": 64,
            "height": 64,
            "steps": 4,
            "seed": 3,
        },
    )
    assert job["status"] == "completed", job.get("error")
    assert fetch_image(loaded, job["outputs"][0]).size == (64, 64)
    # The params show each input image as the file it was saved to, with its size.
    assert job["params"]["init_image_base64"] == {"path": "inputs/init_image.png", "width": 64, "height": 64}
    assert job["params"]["mask_image_base64"] == {"path": "inputs/mask_image.png", "width": 64, "height": 64}
    saved = server.output_dir / job["job_id"] / "inputs"
    assert Image.open(saved / "mask_image.png").mode == "L" and Image.open(saved / "init_image.png").mode == "RGB"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"init_image_base64": "not base64!"}, "init_image_base64: not valid base64"),
        (
            {"init_image_base64": base64.b64encode(b"\x89PNG\r\n\x1a\n garbage").decode()},
            "init_image_base64: not a decodable image",
        ),
        ({"init_image_base64": png_b64((8, 8)), "mask_image_base64": "%%%"}, "mask_image_base64: not valid base64"),
        ({"init_image_base64": png_b64((8, 8)), "strength": 1.5}, "strength: expected `float` <= 1.0"),
        ({"init_image_base64": png_b64((8, 8)), "ref_images": ["AAAA"]}, "ref_images[0]: not a decodable image"),
        ({}, "init_image_base64 is required"),
    ],
)
def test_bad_images_are_400_naming_the_field(loaded: httpx.Client, body: dict, fragment: str) -> None:
    response = loaded.post("/img2img", json={"prompt": "x", **body})
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_lora_tag_reaches_the_resident_server(loaded: httpx.Client, server: ServerProcess) -> None:
    job = run_job(
        loaded, "/txt2img", {"prompt": "a cat <lora:tiny_lora:0.7>", "width": 64, "height": 64, "steps": 2, "seed": 9}
    )
    assert job["status"] == "completed", job.get("error")
    assert "<lora:tiny_lora:0.7>" in job["params"]["prompt"]
    assert fetch_image(loaded, job["outputs"][0]).size == (64, 64)
    plain = run_job(loaded, "/txt2img", {"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 9})
    # Same seed without the LoRA gives other pixels: the LoRA really changed the weights.
    assert loaded.get(f"/output/{plain['outputs'][0]}").content != loaded.get(f"/output/{job['outputs'][0]}").content


def test_upscaler_job_and_chained_upscale(loaded: httpx.Client) -> None:
    assert (
        loaded.post("/upscale", json={"image_base64": png_b64((16, 16))})
        .json()["error"]
        .startswith("No upscaler loaded")
    )
    loaded_up = loaded.post("/upscaler/load", json={"model_name": "esrgan_tiny_x4.safetensors"})
    assert loaded_up.json() == {
        "success": True,
        "message": "Upscaler loaded successfully",
        "model_name": "esrgan_tiny_x4.safetensors",
        "upscale_factor": 4,
    }
    assert loaded.get("/health").json()["upscaler_name"] == "esrgan_tiny_x4.safetensors"
    job = run_job(loaded, "/upscale", {"image_base64": png_b64((24, 16))})
    assert job["status"] == "completed", job.get("error")
    assert fetch_image(loaded, job["outputs"][0]).size == (96, 64)
    bad = loaded.post("/upscale", json={"image_base64": png_b64((8, 8)), "upscale_factor": 3})
    assert bad.status_code == 400 and "upscale_factor 3" in bad.json()["error"]
    chained = run_job(loaded, "/txt2img", {"prompt": "x", "width": 32, "height": 32, "steps": 2, "upscale": True})
    assert chained["status"] == "completed", chained.get("error")
    assert [o.split("/")[1] for o in chained["outputs"]] == ["image_0.png", "image_0_upscaled.png"]
    assert fetch_image(loaded, chained["outputs"][1]).size == (128, 128)
    assert loaded.get("/health").json()["upscaler_loaded"] is False  # upscale_auto_unload defaults to true
    assert loaded.post("/txt2img", json={"prompt": "x", "upscale": True}).status_code == 400


def test_txt2vid_needs_a_video_model(loaded: httpx.Client) -> None:
    response = loaded.post("/txt2vid", json={"prompt": "a cat walking"})
    assert response.status_code == 400
    assert response.json()["error"] == "txt2vid needs a video model (Wan); the loaded model is FLUX.2 klein"


def test_cancel_pending_and_running_jobs(loaded: httpx.Client, server: ServerProcess) -> None:
    resident_before = sd_processes(server)
    slow = loaded.post("/txt2img", json={"prompt": "slow", "width": 256, "height": 256, "steps": 100}).json()
    pending = loaded.post("/txt2img", json={"prompt": "never", "width": 64, "height": 64, "steps": 2}).json()
    assert pending["position"] >= 1
    wait_until(lambda: loaded.get(f"/queue/{slow['job_id']}").json()["progress"]["step"] >= 1, timeout=60)
    cancelled = loaded.delete(f"/queue/{pending['job_id']}")
    assert cancelled.json() == {"success": True, "message": "Job cancelled"}
    assert loaded.get(f"/queue/{pending['job_id']}").json()["status"] == "cancelled"
    assert loaded.delete(f"/queue/{slow['job_id']}").status_code == 200
    final = wait_for_job(loaded, slow["job_id"], timeout=30)
    assert final["status"] == "cancelled"
    # sd-server cannot interrupt a generation: it was stopped, and comes back for the next job.
    assert resident_before and resident_before[0] not in sd_processes(server)
    follow_up = run_job(loaded, "/txt2img", {"prompt": "after", "width": 64, "height": 64, "steps": 2})
    assert follow_up["status"] == "completed"
    assert len(sd_processes(server)) == 1 and sd_processes(server, "sd-cli") == []
    assert loaded.delete(f"/queue/{slow['job_id']}").status_code == 400  # already finished


def test_cancel_running_cli_job_leaves_no_process(loaded: httpx.Client, server: ServerProcess) -> None:
    # batch_count > 8 runs on sd-cli (sd-server caps batches at 8)
    job = loaded.post(
        "/txt2img", json={"prompt": "many", "width": 128, "height": 128, "steps": 40, "batch_count": 9}
    ).json()
    wait_until(lambda: loaded.get(f"/queue/{job['job_id']}").json()["progress"]["step"] >= 1, timeout=60)
    assert sd_processes(server, "sd-cli")
    loaded.delete(f"/queue/{job['job_id']}")
    assert wait_for_job(loaded, job["job_id"], timeout=30)["status"] == "cancelled"
    assert sd_processes(server, "sd-cli") == []


def test_crashing_binary_fails_the_job_and_the_queue_goes_on(client: httpx.Client) -> None:
    bad_load = {**TINY_LOAD, "model_name": "mismatched_dit.safetensors"}
    assert client.post("/models/load", json=bad_load).status_code == 200  # the mismatch only shows in sampling
    crashed = client.post("/txt2img", json={"prompt": "boom", "width": 64, "height": 64, "steps": 2}).json()
    queued = client.post("/txt2img", json={"prompt": "fine", "width": 64, "height": 64, "steps": 2}).json()
    failed = wait_for_job(client, crashed["job_id"])
    assert failed["status"] == "failed"
    assert "GGML_ASSERT" in failed["error"] or "SIGABRT" in failed["error"], failed["error"]
    wait_for_job(client, queued["job_id"])  # the queue moves on (this one crashes the same way)
    assert client.post("/models/load", json=TINY_LOAD).status_code == 200
    assert (
        run_job(client, "/txt2img", {"prompt": "fine", "width": 64, "height": 64, "steps": 2})["status"] == "completed"
    )


def test_restart_recovers_queue_model_and_kills_orphans(models_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "output"
    first = ServerProcess(models_dir, output, tmp_path / "first.log", *NO_WORKER).start()
    with httpx.Client(base_url=first.url, timeout=30) as http:
        assert http.post("/models/load", json=TINY_LOAD).status_code == 200
        running = http.post("/txt2img", json={"prompt": "long", "width": 256, "height": 256, "steps": 100}).json()
        pending = http.post("/txt2img", json={"prompt": "next", "width": 64, "height": 48, "steps": 2}).json()
        wait_until(lambda: http.get(f"/queue/{running['job_id']}").json()["status"] == "processing")
        orphan = sd_processes(first)
    first.kill()  # SIGKILL: no clean-up at all
    assert orphan and Path(f"/proc/{orphan[0]}").exists()  # the resident sd-server outlived it
    second = ServerProcess(models_dir, output, tmp_path / "second.log", *NO_WORKER).start()
    try:
        with httpx.Client(base_url=second.url, timeout=30) as http:
            wait_until(lambda: not Path(f"/proc/{orphan[0]}").exists(), timeout=10)
            interrupted = http.get(f"/queue/{running['job_id']}").json()
            assert interrupted["status"] == "failed" and "restart" in interrupted["error"]
            resumed = wait_for_job(http, pending["job_id"])
            assert resumed["status"] == "completed", resumed.get("error")
            assert fetch_image(http, resumed["outputs"][0]).size == (64, 48)
            assert http.get("/health").json()["model_name"] == TINY_LOAD["model_name"]
    finally:
        second.stop()
