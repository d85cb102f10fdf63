"""AUTOMATIC1111's API through the `webuiapi` package (the client people's scripts use), the exact bodies Open WebUI
and SillyTavern send, and sd-server's conventions: real server, real binary, tiny models."""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import webuiapi
from PIL import Image

from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, running_server_with_config, wait_until

pytestmark = pytest.mark.integration
SECOND = "flux2_tiny_dit_copy.safetensors"
PROFILE = """
[models."flux2_tiny_dit_copy.safetensors"]
model_type = "diffusion"
llm = "qwen3_tiny_llm.safetensors"
taesd = "taef2_tiny.safetensors"
"""


@pytest.fixture(scope="module")
def models_dir(own_models_dir: Path) -> Path:
    folder = own_models_dir / "diffusion_models"
    shutil.copy(folder / TINY_LOAD["model_name"], folder / SECOND)
    return own_models_dir


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server_with_config(models_dir, tmp_path_factory.mktemp("a1111"), PROFILE)


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> webuiapi.WebUIApi:
    httpx.post(server.url + "/models/load", json=TINY_LOAD).raise_for_status()  # remembered as its load profile
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=3)


def png_b64(size: tuple[int, int], color: float | tuple[float, ...] | str = (200, 40, 40), mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_txt2img_gives_images_of_the_size_and_info_with_the_seed(api: webuiapi.WebUIApi, server: ServerProcess) -> None:
    result = api.txt2img(
        prompt="a lovely cat", negative_prompt="blurry", width=64, height=48, seed=1234, cfg_scale=1.0, batch_size=2
    )
    assert [image.size for image in result.images] == [(64, 48), (64, 48)]
    assert result.info["seed"] == 1234 and result.info["all_seeds"] == [1234, 1235]
    assert result.info["sd_model_name"] == TINY_LOAD["model_name"] and result.info["width"] == 64
    assert "a lovely cat" in result.info["infotexts"][0]  # sd.cpp's own parameters text
    assert result.parameters["prompt"] == "a lovely cat"
    jobs = httpx.get(server.url + "/queue", params={"search": "a lovely cat"}).json()["items"]
    assert [job["status"] for job in jobs] == ["completed"] and jobs[0]["params"]["sampler"] == "euler"


def test_random_seed_is_reported_as_used(api: webuiapi.WebUIApi) -> None:
    result = api.txt2img(prompt="seedless", width=64, height=64, seed=-1)
    assert result.info["seed"] >= 0 and len(result.images) == 1


def test_img2img_with_a_mask(api: webuiapi.WebUIApi, server: ServerProcess) -> None:
    init = Image.new("RGB", (64, 64), (10, 200, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    result = api.img2img(
        images=[init],
        mask_image=mask,
        prompt="a frog",
        width=64,
        height=64,
        denoising_strength=0.6,
        inpainting_mask_invert=1,
        seed=7,
    )
    assert [image.size for image in result.images] == [(64, 64)] and result.info["denoising_strength"] == 0.6
    # inpainting_mask_invert: sd.cpp (white = repaint) gets the sent mask turned around, pixel by pixel.
    job = httpx.get(server.url + "/queue", params={"search": "a frog"}).json()["items"][0]
    stored = Image.open(server.output_dir / job["job_id"] / job["params"]["mask_image_base64"]["path"]).convert("L")
    assert stored.tobytes() == bytes(255 - value for value in mask.tobytes())


def test_set_model_switches_between_two_models(api: webuiapi.WebUIApi, server: ServerProcess) -> None:
    titles = api.util_get_model_names()
    assert SECOND in titles and TINY_LOAD["model_name"] in titles
    api.util_set_model(SECOND)  # loaded with its [models."..."] table from the config
    assert api.util_get_current_model() == SECOND
    assert httpx.get(server.url + "/health").json()["model_name"] == SECOND
    assert api.txt2img(prompt="on the copy", width=64, height=64).images[0].size == (64, 64)
    api.util_set_model(TINY_LOAD["model_name"].removesuffix(".safetensors"))  # its load profile
    health = httpx.get(server.url + "/health").json()
    assert health["model_name"] == TINY_LOAD["model_name"] and health["loaded_components"]["llm"] == TINY_LOAD["llm"]
    api.util_wait_for_ready(check_interval=0.1)


def test_interrupt_cancels_the_running_job(api: webuiapi.WebUIApi, server: ServerProcess) -> None:
    outcome: dict[str, object] = {}

    def generate() -> None:
        try:
            api.txt2img(prompt="interrupt me", width=256, height=256, steps=60)
        except RuntimeError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=generate)
    thread.start()
    wait_until(lambda: api.get_progress()["state"]["sampling_step"] >= 1, timeout=60)
    progress = api.get_progress()
    assert 0 < progress["progress"] < 1 and progress["state"]["job_count"] == 1
    api.interrupt()
    thread.join(timeout=60)
    assert "cancelled" in str(outcome["error"])
    job = httpx.get(server.url + "/queue", params={"search": "interrupt me"}).json()["items"][0]
    assert job["status"] == "cancelled"
    api.util_wait_for_ready(check_interval=0.1)


def test_a_client_that_disconnects_cancels_its_job(server: ServerProcess) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/sdapi/v1/txt2img",
            json={"prompt": "abandoned", "width": 256, "height": 256, "steps": 60},
            timeout=2.0,
        )
    wait_until(
        lambda: (
            httpx.get(server.url + "/queue", params={"search": "abandoned"}).json()["items"][0]["status"] == "cancelled"
        ),
        timeout=30,
    )


def test_discovery_endpoints(api: webuiapi.WebUIApi, server: ServerProcess) -> None:
    samplers = {sampler["name"] for sampler in api.get_samplers()}
    assert {"Euler a", "Euler", "DPM++ 2M"} <= samplers
    assert "karras" in {scheduler["name"] for scheduler in api.get_schedulers()}
    models = {model["model_name"]: model for model in api.get_sd_models()}
    assert models["flux2_tiny_dit"]["filename"].endswith(TINY_LOAD["model_name"])
    assert [upscaler["name"] for upscaler in api.get_upscalers()][:1] == ["None"]
    assert "tiny_lora" in {lora["name"] for lora in api.get_loras()}
    assert {module["model_name"] for module in api.get_sd_vae()} >= {"taef2_tiny.safetensors"}
    for path in ("sd-modules", "embeddings", "scripts", "memory", "latent-upscale-modes"):
        assert httpx.get(f"{server.url}/sdapi/v1/{path}").status_code == 200, path


def test_unknown_sampler_is_a_400_listing_the_known_ones(server: ServerProcess) -> None:
    response = httpx.post(server.url + "/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "Warp Drive"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "BadRequest" and "Euler a" in body["detail"] and "sampler_name" in body["detail"]


def test_old_style_karras_sampler_and_sd_server_conventions(server: ServerProcess) -> None:
    extra = json.dumps({"sample_params": {"sample_steps": 2}})
    body = {
        "prompt": f"a cat <sd_cpp_extra_args>{extra}</sd_cpp_extra_args>",
        "sampler_name": "DPM++ 2M Karras",
        "width": 64,
        "height": 64,
        "steps": 9,
        "lora": [{"path": "tiny_lora.safetensors", "multiplier": 0.5}],
    }
    response = httpx.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=120)
    assert response.status_code == 200, response.text
    job_id = json.loads(response.json()["info"])["job_id"]
    params = httpx.get(f"{server.url}/queue/{job_id}").json()["params"]
    assert params["steps"] == 2 and params["sampler"] == "dpm++2m" and params["scheduler"] == "karras"
    assert params["prompt"] == "a cat <lora:tiny_lora:0.5>"


# Verbatim from their public source (Open WebUI backend/open_webui/routers/images.py with its default settings;
# SillyTavern public/scripts/extensions/stable-diffusion/index.js generateAutoImage, forwarded whole by its server).
OPEN_WEBUI_TXT2IMG = {"prompt": "a red fox in the snow", "batch_size": 1, "width": 512, "height": 512, "steps": 50}
SILLYTAVERN_TXT2IMG = {
    "url": "http://localhost:7860",
    "auth": "",
    "prompt": "best quality, absurdres, aesthetic, 1girl, red hair",
    "negative_prompt": "lowres, bad anatomy, bad hands, text, error, cropped, worst quality, low quality, normal "
    "quality, jpeg artifacts, signature, watermark, username, blurry",
    "sampler_name": "DDIM",
    "scheduler": "normal",
    "steps": 20,
    "cfg_scale": 7,
    "width": 512,
    "height": 512,
    "restore_faces": False,
    "enable_hr": False,
    "hr_upscaler": "Latent",
    "hr_scale": 2,
    "hr_additional_modules": [],
    "denoising_strength": 0.7,
    "hr_second_pass_steps": 0,
    "override_settings": {"CLIP_stop_at_last_layers": 1},
    "override_settings_restore_afterwards": True,
    "clip_skip": 1,
    "save_images": True,
    "send_images": True,
    "do_not_save_grid": False,
    "do_not_save_samples": False,
}


@pytest.mark.parametrize("body", [OPEN_WEBUI_TXT2IMG, SILLYTAVERN_TXT2IMG], ids=["open-webui", "sillytavern"])
def test_the_bodies_open_webui_and_sillytavern_send(server: ServerProcess, body: dict) -> None:
    response = httpx.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=300)
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert len(images) == 1 and Image.open(io.BytesIO(base64.b64decode(images[0]))).size == (512, 512)
    assert json.loads(response.json()["info"])["seed"] >= 0
