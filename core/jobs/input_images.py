"""Client-supplied images: base64 (plain or data URL) decoded with Pillow, checked, normalised, saved.

Every failure is a 400 naming the field. Blocking (decoding): callers run it off the event loop.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from pathlib import Path

from PIL import Image

from core.errors import BadRequest

ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"})
_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)


def decode_base64(data: str, field: str, max_bytes: int) -> bytes:
    payload = _DATA_URL.sub("", data.strip(), count=1)
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise BadRequest(f"{field}: image is larger than {max_bytes} bytes")
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", payload), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{field}: not valid base64 (plain or a data: URL)") from None
    if not raw:
        raise BadRequest(f"{field}: is empty (an image is required: base64, plain or a data: URL)")
    return raw


def decode_image(data: str, field: str, max_bytes: int, max_pixels: int, mode: str = "RGB") -> Image.Image:
    """The image in `mode` ("RGB", or "L" for masks)."""
    raw = decode_base64(data, field, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            if image.format not in ACCEPTED_FORMATS:
                raise BadRequest(f"{field}: image format {image.format} is not accepted; use PNG, JPEG or WebP")
            width, height = image.size
            if width * height > max_pixels:
                raise BadRequest(f"{field}: image is {width}x{height}, more than {max_pixels} pixels")
            image.load()
    except BadRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadRequest(f"{field}: image is too large to decode safely") from None
    except Exception:  # Pillow raises many types for corrupt data
        raise BadRequest(f"{field}: not a decodable image (corrupt or truncated)") from None
    if mode == "RGB" and image.mode in ("RGBA", "LA", "P"):
        # Flatten transparency onto white rather than black, as image editors do.
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert(mode)


def save_input(
    data: str, field: str, path: Path, max_bytes: int, max_pixels: int, mode: str = "RGB"
) -> tuple[int, int]:
    image = decode_image(data, field, max_bytes, max_pixels, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return image.size
