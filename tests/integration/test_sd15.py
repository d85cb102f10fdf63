"""The API spec's SD1.5 usage examples on a full-size random-weight SD1.5 set, through the HTTP API, on the real
binary: txt2img, img2img, inpainting, LoRA, clip_skip, separate VAE, ControlNet and a textual-inversion embedding.

Each test checks what a user gets (a 64x64 PNG that is not one flat colour) and that its feature reached sd.cpp:
sd.cpp's own record of the run in the PNG's `parameters` (its "SDCPP" JSON: models, clip_skip, strength, LoRAs)
and, with the same seed, an image that differs from the run without the feature. The models load three ways
(plain, with the VAE, with the ControlNet) plus once with the embedding hidden; images are cached per
(load, request), so a comparison reuses an image another test already made.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from PIL import Image, ImageChops

from fixtures.random_models import (
    CHECKPOINT_FILE,
    CONTROLNET_FILE,
    EMBEDDING_FILE,
    LORA_FILE,
    VAE_FILE,
    embedding_tensors,
)
from fixtures.tiny_models import write_safetensors
from tests.support import ServerProcess, linked_models_dir, running_server_with, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 64  # SD1's size multiple
# Always explicit: omitted size/steps/cfg follow the architecture's preset (512x512, 20 steps for SD1).
BASE = {
    "prompt": "a lovely cat",
    "width": SIZE,
    "height": SIZE,
    "steps": 2,
    "cfg_scale": 7.0,
    "seed": 42,
    "sampler": "euler_a",
    "preview": False,
}
EMBEDDING_NAME = Path(EMBEDDING_FILE).stem
EMBEDDING_F16_NAME = "half_precision_twin"  # not a prefix or extension of the other name: no token overlap
LORA_NAME = Path(LORA_FILE).stem


class Load(msgspec.Struct, frozen=True):
    """One way of loading the checkpoint: its components, and whether the embedding file is hidden."""

    vae: str | None = None
    controlnet: str | None = None
    without_embedding: bool = False

    def body(self) -> dict[str, object]:
        components = {key: value for key, value in (("vae", self.vae), ("controlnet", self.controlnet)) if value}
        return {"model_name": CHECKPOINT_FILE, "model_type": "checkpoint", **components}


PLAIN, WITH_VAE, WITH_CONTROLNET = Load(), Load(vae=VAE_FILE), Load(controlnet=CONTROLNET_FILE)
NO_EMBEDDING = Load(without_embedding=True)


class Generated(msgspec.Struct, frozen=True):
    job: dict[str, Any]
    png: bytes

    @property
    def image(self) -> Image.Image:
        return Image.open(io.BytesIO(self.png))

    @property
    def sdcpp(self) -> dict[str, Any]:
        """sd.cpp's own record of the run: the JSON after "SDCPP: " in the PNG's `parameters` text."""
        return json.loads(self.image.info["parameters"].split(", SDCPP: ", 1)[1])


class Sd15Session:
    """The module's one server: loads only when a test wants another load, and remembers each image."""

    def __init__(self, client: httpx.Client, models: Path, hidden: Path) -> None:
        self.client, self.models, self.hidden = client, models, hidden
        self.load: Load | None = None
        self.images: dict[tuple[Load, str, str], Generated] = {}

    def ensure(self, load: Load) -> None:
        if load == self.load:
            return
        embedding, parked = self.models / "embeddings" / EMBEDDING_FILE, self.hidden / EMBEDDING_FILE
        if load.without_embedding and embedding.exists():
            shutil.move(embedding, parked)
        elif not load.without_embedding and parked.exists():
            shutil.move(parked, embedding)
        if self.load is not None:  # sd.cpp reads the embeddings folder at load: a real reload, not "already loaded"
            assert self.client.post("/models/unload").status_code == 200
        response = self.client.post("/models/load", json=load.body(), timeout=300)
        assert response.status_code == 200, response.text
        self.load = load

    def generate(self, load: Load, endpoint: str = "/txt2img", cached: bool = True, **overrides: object) -> Generated:
        body = {**BASE, **overrides}
        key = (load, endpoint, json.dumps(body, sort_keys=True))
        if key not in self.images or not cached:
            self.ensure(load)
            accepted = self.client.post(endpoint, json=body)
            assert accepted.status_code == 202, accepted.text
            job = wait_for_job(self.client, accepted.json()["job_id"], timeout=300)
            assert job["status"] == "completed", job.get("error")
            assert len(job["outputs"]) == 1
            png = self.client.get(f"/output/{job['outputs'][0]}").content
            self.images[key] = Generated(job, png)
        return self.images[key]


@pytest.fixture(scope="module")
def server(sd15_models_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("server-sd15")
    models = linked_models_dir(sd15_models_cache, work / "models")
    # The same embedding saved as f16, as most shared online are: sd.cpp alone would read it as garbage.
    write_safetensors(models / "embeddings" / f"{EMBEDDING_F16_NAME}.safetensors", embedding_tensors())
    yield from running_server_with(models, work)


@pytest.fixture(scope="module")
def sd15(client: httpx.Client, server: ServerProcess) -> Sd15Session:
    hidden = server.models_dir.parent / "hidden"
    hidden.mkdir(exist_ok=True)
    return Sd15Session(client, server.models_dir, hidden)


def png_b64(color: tuple[int, int, int] | int, mode: str = "RGB", half: bool = False) -> str:
    """A 64x64 PNG of one colour; `half`: only the left half, the rest black."""
    image = Image.new(mode, (SIZE, SIZE), 0)
    image.paste(color, (0, 0, SIZE // 2 if half else SIZE, SIZE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def rgb_extrema(image: Image.Image) -> list[tuple[int, int]]:
    """(low, high) per channel of an RGB image (Pillow types `getextrema` for every mode at once)."""
    return cast(list[tuple[int, int]], list(image.convert("RGB").getextrema()))


def assert_real_image(generated: Generated) -> None:
    image = generated.image
    assert image.format == "PNG" and image.size == (SIZE, SIZE)
    assert all(low < high for low, high in rgb_extrema(image))  # noise, not one flat colour
    assert generated.sdcpp["width"] == generated.sdcpp["height"] == SIZE


def test_txt2img_loads_the_checkpoint_as_sd1(sd15: Sd15Session, server: ServerProcess) -> None:
    generated = sd15.generate(PLAIN)
    assert_real_image(generated)
    health = sd15.client.get("/health").json()
    assert health["model_name"] == CHECKPOINT_FILE and health["model_architecture"] == "SD1.x"
    assert generated.sdcpp["models"]["model"] == CHECKPOINT_FILE
    assert generated.sdcpp["sampling"]["steps"] == 2 and generated.sdcpp["seed"] == 42
    config = json.loads((server.output_dir / generated.job["job_id"] / "config.json").read_text())
    assert config["model_architecture"] == "SD1.x" and config["params"]["steps"] == 2


def test_same_seed_gives_the_same_image(sd15: Sd15Session) -> None:
    # The comparisons below rest on this: a second run of the same request gives the same bytes, so a
    # difference comes from the feature alone.
    first = sd15.generate(PLAIN)
    assert sd15.generate(PLAIN, cached=False).png == first.png


def test_img2img_uses_the_init_image(sd15: Sd15Session) -> None:
    red = sd15.generate(PLAIN, "/img2img", init_image_base64=png_b64((200, 40, 40)), strength=0.5)
    blue = sd15.generate(PLAIN, "/img2img", init_image_base64=png_b64((40, 40, 200)), strength=0.5)
    assert_real_image(red)
    assert red.sdcpp["strength"] == pytest.approx(0.5)
    assert red.png != blue.png


def test_inpainting_uses_the_mask(sd15: Sd15Session) -> None:
    init = png_b64((200, 40, 40))
    unmasked = sd15.generate(PLAIN, "/img2img", init_image_base64=init, strength=0.75)
    masked = sd15.generate(
        PLAIN, "/img2img", init_image_base64=init, strength=0.75, mask_image_base64=png_b64(255, "L", half=True)
    )
    assert_real_image(masked)
    assert masked.png != unmasked.png


def test_lora_in_the_prompt_is_applied(sd15: Sd15Session) -> None:
    with_lora = sd15.generate(PLAIN, prompt=f"a lovely cat <lora:{LORA_NAME}:1>")
    assert_real_image(with_lora)
    assert [lora["name"] for lora in with_lora.sdcpp["loras"]] == [LORA_FILE]
    assert with_lora.png != sd15.generate(PLAIN).png


def test_clip_skip_reaches_the_text_encoder(sd15: Sd15Session) -> None:
    skip_two = sd15.generate(PLAIN, clip_skip=2)
    assert_real_image(skip_two)
    assert skip_two.sdcpp["clip_skip"] == 2
    assert skip_two.png != sd15.generate(PLAIN).png  # SD1's default skips none (clip_skip 1)


def test_embedding_in_the_prompt_is_applied(sd15: Sd15Session) -> None:
    prompt = f"a lovely cat, {EMBEDDING_NAME}"
    with_embedding = sd15.generate(PLAIN, prompt=prompt)
    assert_real_image(with_embedding)
    without = sd15.generate(NO_EMBEDDING, prompt=prompt)  # the same words, the file hidden at load
    assert sd15.generate(NO_EMBEDDING).png == sd15.generate(PLAIN).png  # the reload alone changes nothing
    assert with_embedding.png != without.png


def test_separate_vae_replaces_the_checkpoints(sd15: Sd15Session) -> None:
    with_vae = sd15.generate(WITH_VAE)
    assert_real_image(with_vae)
    assert with_vae.sdcpp["models"]["vae"] == VAE_FILE
    assert sd15.client.get("/health").json()["loaded_components"]["vae"] == VAE_FILE
    assert with_vae.png != sd15.generate(PLAIN).png


def test_controlnet_uses_the_control_image(sd15: Sd15Session) -> None:
    edges = png_b64((255, 255, 255), half=True)
    controlled = sd15.generate(WITH_CONTROLNET, control_image_base64=edges, control_strength=0.9)
    assert_real_image(controlled)
    assert controlled.sdcpp["models"]["control_net"] == CONTROLNET_FILE
    assert controlled.sdcpp["control_strength"] == pytest.approx(0.9)
    assert controlled.png != sd15.generate(WITH_CONTROLNET).png


def test_an_f16_embedding_works_like_its_f32_twin(sd15: Sd15Session) -> None:
    """sd.cpp copies an f16 embedding's bytes into its f32 buffer (a flat white image); the server hands it an
    f32 copy of the same values, so the image is the f32 file's."""
    half = sd15.generate(PLAIN, prompt=f"a lovely cat, {EMBEDDING_F16_NAME}")
    assert_real_image(half)
    full = sd15.generate(PLAIN, prompt=f"a lovely cat, {EMBEDDING_NAME}")
    # The same image up to float rounding (the two files sit at different custom-token rows).
    difference = ImageChops.difference(half.image.convert("RGB"), full.image.convert("RGB"))
    assert max(high for _, high in rgb_extrema(difference)) <= 4
