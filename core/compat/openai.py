"""OpenAI's images API shapes (`/v1/images/generations`, `/v1/images/edits`, `/v1/models`) and their translation
into ordinary jobs. Fields OpenAI's own models use and sd.cpp has no counterpart for (quality, background, style,
moderation, user) are accepted and ignored; `model` selects one of our models when it names one."""

from __future__ import annotations

import base64
import io
import re
import time
from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from PIL import Image

from core.compat.sd_server import extract_extra_args
from core.errors import BadRequest
from core.generation.defaults import default_size
from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest
from core.jobs.input_images import decode_image
from core.models.architecture import Architecture
from core.request_types import Request, convert_request

OutputFormat = Literal["png", "jpeg", "webp"]
SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


class ImageGeneration(Request):
    prompt: Annotated[str, Meta(min_length=1)]
    model: str | None = None
    n: Annotated[int, Meta(ge=1, le=64)] = 1
    size: str = "auto"
    # OpenAI's default depends on the model: `url` for dall-e-2 and dall-e-3 (also what an omitted model means, unless
    # a gpt-image-only parameter is sent), base64 for gpt-image models; our own model names answer base64 too.
    response_format: Literal["b64_json", "url"] | None = None
    output_format: OutputFormat = "png"
    output_compression: Annotated[int, Meta(ge=0, le=100)] = 100
    stream: bool = False
    partial_images: Annotated[int, Meta(ge=0, le=3)] = 0
    quality: str | None = None  # accepted, ignored: sd.cpp's quality is steps and cfg
    background: str | None = None
    style: str | None = None
    moderation: str | None = None
    user: str | None = None

    @property
    def wants_url(self) -> bool:
        if self.response_format is not None:
            return self.response_format == "url"
        if self.model is None:  # OpenAI: dall-e-2 unless a parameter only gpt-image models take is sent
            return not self._gpt_image_parameters
        return self.model.lower().startswith("dall-e")

    @property
    def _gpt_image_parameters(self) -> bool:
        return bool(
            self.output_format != "png"
            or self.output_compression != 100
            or self.background
            or self.moderation
            or self.stream
            or self.partial_images
        )


class ImageData(msgspec.Struct, omit_defaults=True):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class TokenDetails(msgspec.Struct):
    text_tokens: int = 0
    image_tokens: int = 0


class Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: TokenDetails = msgspec.field(default_factory=TokenDetails)


class ImagesResponse(msgspec.Struct):
    created: int
    data: list[ImageData]
    background: str
    output_format: OutputFormat
    quality: str
    size: str
    usage: Usage


class StreamEvent(msgspec.Struct, omit_defaults=True):
    """`image_generation.partial_image` / `.completed` (and `image_edit.*`), as the openai client parses them."""

    type: str
    b64_json: str
    created_at: int
    size: str
    quality: str
    background: str
    output_format: OutputFormat
    partial_image_index: int | None = None
    usage: Usage | None = None


class ModelCard(msgspec.Struct):
    id: str
    object: str
    created: int
    owned_by: str


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelCard]


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(msgspec.Struct):
    error: ErrorDetail


def error_body(message: str, status: int) -> OpenAIError:
    """OpenAI's error shape; `param` is the field our message names ("steps: ..." -> "steps")."""
    field = re.match(r"^([\w.\[\]]+):", message)
    kind = "invalid_request_error" if status < 500 else "server_error"
    return OpenAIError(ErrorDetail(message, kind, field[1] if field else None, None))


def parse_size(size: str, architecture: Architecture | None) -> tuple[int, int]:
    if size in ("", "auto"):
        return default_size(architecture)
    match = SIZE.match(size)
    if not match:
        raise BadRequest(f"size: must be 'auto' or 'WIDTHxHEIGHT' (got '{size}')")
    return int(match[1]), int(match[2])


def to_request(
    prompt: str,
    n: int,
    size: tuple[int, int],
    partials: int,
    init_image: str | None = None,
    mask: str | None = None,
    references: list[str] | None = None,
) -> GenerationRequest:
    """Our request: txt2img, or img2img when an image is given (the edit endpoint)."""
    clean, extra = extract_extra_args(prompt)
    fields: dict[str, object] = {"prompt": clean, "batch_count": n, "width": size[0], "height": size[1]}
    if partials:
        # Partial images come from the live previews, only as many as the client asked for (nothing else is decoded).
        fields["preview"], fields["preview_count"] = True, partials
    if init_image is not None:
        fields["init_image_base64"] = init_image
        if mask is not None:
            fields["mask_image_base64"] = mask
        if references:
            fields["ref_images"] = references
    fields.update(extra)
    return convert_request(fields, Img2ImgRequest if init_image is not None else Txt2ImgRequest)


def _transparent(image: Image.Image) -> Image.Image:
    """White where the image is fully transparent (alpha 0), black elsewhere: sd.cpp's mask (white = repaint)."""
    return image.getchannel("A").point([255] + [0] * 255)


def edit_mask(image: str, mask: str | None, max_bytes: int, max_pixels: int) -> str | None:
    """sd.cpp's mask (white = repaint, black = keep, as a base64 PNG) with OpenAI's meaning: the mask's fully
    transparent pixels (alpha 0) are the area to edit, and without a mask the image's own transparent pixels are;
    None when there is no mask and the image has no transparent pixel (the whole image is edited). A mask without
    transparent pixels (opaque, or with no alpha channel) or of another size than the image is refused. Blocking."""
    source = decode_image(image, "image", max_bytes, max_pixels, "RGBA")
    if mask is None:
        edited = _transparent(source)
        if edited.getextrema()[1] == 0:
            return None
    else:
        given = decode_image(mask, "mask", max_bytes, max_pixels, "RGBA")
        if given.size != source.size:
            raise BadRequest(
                f"mask: is {given.width}x{given.height} but the image is {source.width}x{source.height};"
                " they must be the same size"
            )
        edited = _transparent(given)
        if edited.getextrema()[1] == 0:
            raise BadRequest(
                "mask: has no fully transparent pixels; the area to edit is where the mask's alpha is 0"
                " (a PNG with an alpha channel)"
            )
    buffer = io.BytesIO()
    edited.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def encode(data: bytes, output_format: OutputFormat, compression: int, size: tuple[int, int] | None = None) -> bytes:
    """An image file in the requested format (sd.cpp writes PNG; previews are JPEG), at `size` when given (a
    preview is smaller than the image: a partial image comes at the size the client asked for). Blocking."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == PIL_FORMATS[output_format] and size in (None, image.size):
            return data
        buffer = io.BytesIO()
        resized = image if size in (None, image.size) else image.resize(size, Image.Resampling.BICUBIC)
        converted = resized.convert("RGB") if output_format == "jpeg" else resized
        converted.save(buffer, format=PIL_FORMATS[output_format], quality=max(compression, 1))
        return buffer.getvalue()


def now() -> int:
    return int(time.time())
