"""OpenAI edit masks become sd.cpp's (white = repaint) from alpha alone, whatever PNG mode carries the alpha."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from core.compat.openai import edit_mask
from core.errors import BadRequest

LIMITS = (10_000_000, 10_000_000)


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def mask_of(result: str | None) -> list[int]:
    assert result is not None
    return list(Image.open(io.BytesIO(base64.b64decode(result))).convert("L").tobytes())


IMAGE = b64(Image.new("RGB", (4, 1), (9, 9, 9)))


def test_only_fully_transparent_pixels_are_repainted() -> None:
    mask = Image.new("RGBA", (4, 1))
    mask.putdata([(255, 255, 255, 0), (0, 0, 0, 0), (255, 255, 255, 128), (0, 0, 0, 255)])
    assert mask_of(edit_mask(IMAGE, b64(mask), *LIMITS)) == [255, 255, 0, 0]


def test_alpha_in_grey_and_palette_pngs() -> None:
    grey = Image.new("LA", (4, 1), (255, 255))
    grey.putpixel((1, 0), (255, 0))
    assert mask_of(edit_mask(IMAGE, b64(grey), *LIMITS)) == [0, 255, 0, 0]
    palette = Image.new("P", (4, 1), 1)
    palette.putpixel((3, 0), 0)
    palette.info["transparency"] = 0
    assert mask_of(edit_mask(IMAGE, b64(palette), *LIMITS)) == [0, 0, 0, 255]


def test_no_mask_uses_the_images_alpha_or_none() -> None:
    cutout = Image.new("RGBA", (4, 1), (1, 2, 3, 255))
    cutout.putpixel((0, 0), (1, 2, 3, 0))
    assert mask_of(edit_mask(b64(cutout), None, *LIMITS)) == [255, 0, 0, 0]
    assert edit_mask(IMAGE, None, *LIMITS) is None


@pytest.mark.parametrize("mask", [Image.new("L", (4, 1), 255), Image.new("RGBA", (4, 1), (0, 0, 0, 255))])
def test_masks_without_transparency_are_refused(mask: Image.Image) -> None:
    with pytest.raises(BadRequest, match=r"^mask: .*transparent"):
        edit_mask(IMAGE, b64(mask), *LIMITS)


def test_a_mask_of_another_size_is_refused() -> None:
    with pytest.raises(BadRequest, match=r"^mask: is 2x1 but the image is 4x1"):
        edit_mask(IMAGE, b64(Image.new("RGBA", (2, 1), (0, 0, 0, 0))), *LIMITS)
