"""OpenAI's images API through the `openai` package (base_url pointing at the test server): generate with
b64_json and url, edit with a mask (multipart), streaming partial images from the live previews, models.list,
errors in OpenAI's shape, the exact body Open WebUI sends; jobs are ordinary queue jobs."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from PIL import Image

from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, running_server_with

pytestmark = pytest.mark.integration
KEY = "openai-test-key"


@pytest.fixture(scope="module")
def server(own_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    for process in running_server_with(
        own_models_dir, tmp_path_factory.mktemp("openai"), env={"SDCPP_RESTAPI_API_KEYS": KEY}
    ):
        httpx.post(
            process.url + "/models/load", json=TINY_LOAD, headers={"Authorization": f"Bearer {KEY}"}
        ).raise_for_status()
        yield process


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def decoded(b64: str | None) -> Image.Image:
    assert b64 is not None, "no image data"
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def png(size: tuple[int, int], mode: str = "RGB", color: float | tuple[int, ...] | str = (10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_generate_b64_json(client: openai.OpenAI, server: ServerProcess) -> None:
    result = client.images.generate(
        model="dall-e-3", prompt="an openai cat", n=2, size="64x48", response_format="b64_json"
    )
    assert [decoded(item.b64_json).size for item in result.data] == [(64, 48), (64, 48)]
    assert result.size == "64x48" and result.output_format == "png" and result.created > 0
    assert result.usage is not None and result.usage.total_tokens == 0
    jobs = httpx.get(
        server.url + "/queue", params={"search": "an openai cat"}, headers={"Authorization": f"Bearer {KEY}"}
    ).json()["items"]
    assert [(job["type"], job["status"], job["params"]["batch_count"]) for job in jobs] == [("txt2img", "completed", 2)]


def test_generate_url_and_jpeg(client: openai.OpenAI) -> None:
    result = client.images.generate(model=TINY_LOAD["model_name"], prompt="by url", size="64x64", response_format="url")
    url = result.data[0].url
    assert url is not None and "/output/" in url
    fetched = httpx.get(url, headers={"Authorization": f"Bearer {KEY}"})
    assert fetched.status_code == 200 and Image.open(io.BytesIO(fetched.content)).size == (64, 64)
    jpeg = client.images.generate(prompt="as jpeg", size="64x64", output_format="jpeg")
    assert decoded(jpeg.data[0].b64_json).format == "JPEG" and jpeg.output_format == "jpeg"


def test_result_urls_work_without_the_key_for_that_file_only(client: openai.OpenAI, server: ServerProcess) -> None:
    """OpenAI's image URLs need no key: ours are signed for one file and expire; /output itself keeps the key."""
    url = client.images.generate(prompt="a signed cat", size="64x64", response_format="url").data[0].url
    assert url is not None
    keyless = httpx.get(url)
    assert keyless.status_code == 200 and Image.open(io.BytesIO(keyless.content)).size == (64, 64)
    parts = urlsplit(url)
    job_folder = parts.path.rsplit("/", 1)[0]
    for forged in (
        f"{server.url}{parts.path}",  # no signature
        f"{server.url}{job_folder}/config.json?{parts.query}",  # another file of the same job
        f"{server.url}{job_folder}?{parts.query}",  # the job's folder listing
        f"{server.url}{parts.path}?{parts.query.replace('signature=', 'signature=0')}",
        f"{server.url}{parts.path}?{parts.query.replace('expires=', 'expires=9')}",  # a later expiry
    ):
        assert httpx.get(forged).status_code == 401, forged


@pytest.mark.parametrize(
    ("model", "output_format", "as_url"),
    [
        ("dall-e-3", None, True),
        ("dall-e-2", None, True),
        (None, None, True),  # OpenAI: an omitted model is dall-e-2...
        (None, "webp", False),  # ...unless a gpt-image-only parameter is sent
        ("gpt-image-1", None, False),
        (TINY_LOAD["model_name"], None, False),  # our own models answer base64, as gpt-image models do
    ],
)
def test_response_format_defaults_follow_the_model_family(
    client: openai.OpenAI, model: str | None, output_format: Literal["webp"] | None, as_url: bool
) -> None:
    """A DALL-E tool that sends no response_format reads data[0].url; gpt-image clients read b64_json."""
    result = client.images.generate(
        prompt="a default cat",
        size="64x64",
        model=model if model else openai.omit,
        output_format=output_format if output_format else openai.omit,
    )
    item = result.data[0]
    if as_url:
        assert item.url is not None and item.b64_json is None
        assert httpx.get(item.url).status_code == 200
    else:
        assert item.url is None and decoded(item.b64_json).size == (64, 64)


def stored_mask(server: ServerProcess, prompt: str) -> Image.Image | None:
    """The mask file the job handed to sd.cpp (white = repaint), found through the job's params."""
    jobs = httpx.get(
        server.url + "/queue", params={"search": prompt}, headers={"Authorization": f"Bearer {KEY}"}
    ).json()["items"]
    assert [(job["type"], job["status"]) for job in jobs] == [("img2img", "completed")]
    saved = jobs[0]["params"]["mask_image_base64"]
    return None if saved is None else Image.open(server.output_dir / jobs[0]["job_id"] / saved["path"]).convert("L")


def half_transparent(size: tuple[int, int]) -> Image.Image:
    """Transparent black on the left half, opaque white on the right: its brightness says the opposite of its alpha."""
    image = Image.new("RGBA", size, (255, 255, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


def as_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def repainted(mask: Image.Image) -> set[tuple[int, int]]:
    return {(x, y) for x in range(mask.width) for y in range(mask.height) if mask.getpixel((x, y)) == 255}


def test_edit_repaints_where_the_mask_is_transparent(client: openai.OpenAI, server: ServerProcess) -> None:
    result = client.images.edit(
        response_format="b64_json",
        image=("frog.png", png((64, 64)), "image/png"),
        mask=("mask.png", as_png(half_transparent((64, 64))), "image/png"),
        prompt="a frog wearing a hat",
        size="64x64",
    )
    assert decoded(result.data[0].b64_json).size == (64, 64)
    mask = stored_mask(server, "a frog wearing a hat")
    assert mask is not None and mask.size == (64, 64)
    assert {value for _, value in mask.getcolors() or []} == {0, 255}
    assert repainted(mask) == {(x, y) for x in range(32) for y in range(64)}  # exactly the transparent half


def test_edit_without_a_mask_uses_the_images_transparency(client: openai.OpenAI, server: ServerProcess) -> None:
    image = half_transparent((64, 64))
    image.paste((10, 200, 30, 255), (32, 0, 64, 64))
    client.images.edit(image=("cutout.png", as_png(image), "image/png"), prompt="a transparent cutout", size="64x64")
    mask = stored_mask(server, "a transparent cutout")
    assert mask is not None and repainted(mask) == {(x, y) for x in range(32) for y in range(64)}
    client.images.edit(image=("opaque.png", png((64, 64)), "image/png"), prompt="an opaque whole", size="64x64")
    assert stored_mask(server, "an opaque whole") is None  # sd.cpp repaints everything


def test_edit_refuses_masks_without_transparency_or_of_another_size(client: openai.OpenAI) -> None:
    grey = Image.new("L", (64, 64), 0)
    grey.paste(255, (0, 0, 32, 64))
    opaque = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    for mask in (grey, opaque):
        with pytest.raises(openai.BadRequestError) as refused:
            client.images.edit(
                image=("frog.png", png((64, 64)), "image/png"),
                mask=("mask.png", as_png(mask), "image/png"),
                prompt="refused mask",
                size="64x64",
            )
        assert refused.value.param == "mask" and "transparent" in refused.value.message
    with pytest.raises(openai.BadRequestError) as sized:
        client.images.edit(
            image=("frog.png", png((64, 64)), "image/png"),
            mask=("mask.png", as_png(half_transparent((32, 64))), "image/png"),
            prompt="refused mask",
            size="64x64",
        )
    assert sized.value.param == "mask" and "same size" in sized.value.message


def test_streaming_sends_partial_images_then_the_result(client: openai.OpenAI, server: ServerProcess) -> None:
    # With previews off in the settings, the partial images come from the cheap latent projection (8x8 here).
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.put(server.url + "/preview/settings", json={"enabled": False}, headers=auth).status_code == 200
    try:
        stream = client.images.generate(
            prompt="streamed cat", size="64x64", stream=True, partial_images=2, extra_body={"n": 1}
        )
        events = list(stream)
    finally:
        httpx.put(server.url + "/preview/settings", json={"enabled": True}, headers=auth)
    kinds = [event.type for event in events]
    assert kinds == [*["image_generation.partial_image"] * 2, "image_generation.completed"], kinds
    partial = [event for event in events if event.type == "image_generation.partial_image"]
    assert [event.partial_image_index for event in partial] == list(range(len(partial)))
    assert all(decoded(event.b64_json).size == (64, 64) for event in partial)  # at the requested size
    assert decoded(events[-1].b64_json).size == (64, 64) and events[-1].usage.total_tokens == 0


def test_models_list(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert TINY_LOAD["model_name"] in ids


def test_errors_come_in_openai_shape(client: openai.OpenAI, server: ServerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(prompt="x", size="huge")
    assert refused.value.param == "size" and "WIDTHxHEIGHT" in refused.value.message
    with pytest.raises(openai.BadRequestError) as rounded:
        client.images.generate(prompt="x", size="72x40")
    assert "multiples of 16" in rounded.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()


# Verbatim from Open WebUI (backend/open_webui/routers/images.py, default settings: dall-e-2, 512x512).
OPEN_WEBUI_GENERATIONS = {
    "model": "dall-e-2",
    "prompt": "a red fox in the snow",
    "n": 1,
    "size": "512x512",
    "response_format": "b64_json",
}


def test_the_body_open_webui_sends(server: ServerProcess) -> None:
    response = httpx.post(
        server.url + "/v1/images/generations",
        json=OPEN_WEBUI_GENERATIONS,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    assert decoded(response.json()["data"][0]["b64_json"]).size == (512, 512)
