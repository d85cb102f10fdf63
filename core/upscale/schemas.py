"""Request and response bodies of upscaling: loading an ESRGAN upscaler (/upscaler/load) and /upscale jobs."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from core.request_types import Base64Image, CallbackUrl, CInt, NonEmptyStr, Priority, Request

# sd-cli upscales in passes (x1, x2 or x4 each): more than 4 passes is beyond any image size it can write.
Passes = Annotated[int, Meta(ge=1, le=4)]


class UpscalerLoadRequest(Request):
    model_name: NonEmptyStr | None = None
    n_threads: CInt = -1
    tile_size: Annotated[int, Meta(ge=1, le=4096)] = 128


class UpscalerLoaded(msgspec.Struct):
    success: bool
    message: str
    model_name: str
    upscale_factor: int


class UpscaleRequest(Request):
    image_base64: Base64Image
    upscale_factor: Annotated[int, Meta(ge=1, le=256)] = 4
    tile_size: Annotated[int, Meta(ge=1, le=4096)] = 128
    repeats: Passes = 1
    priority: Priority = 0  # higher runs first (ours; README "Priority and fair sharing")
    callback_url: CallbackUrl | None = None  # not in the spec: our webhook when the job ends (README "Webhooks")
