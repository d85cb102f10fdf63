"""The routes of core.generation: POST /txt2img, /img2img and /txt2vid (each accepted job is committed
before its 202), what a request may choose and leave out (/options, /defaults), and the live previews
(/preview/settings, /queue/{id}/preview)."""

from __future__ import annotations

import msgspec
from litestar import Response, get, post, put

from core.errors import NotFound
from core.generation.defaults import RequestDefaults, request_defaults
from core.generation.previews import PreviewSettings, PreviewSettingsUpdate, PreviewSettingsUpdated
from core.generation.requests import Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest
from core.jobs.schemas import JobAccepted
from core.service import Service
from runners.capabilities import QUANT_INFO


@post("/txt2img", status_code=202, summary="Queue a text-to-image job")
async def txt2img(data: Txt2ImgRequest, service: Service) -> JobAccepted:
    return await service.generation.submit("txt2img", data)


@post("/img2img", status_code=202, summary="Queue an image-to-image (or inpainting) job")
async def img2img(data: Img2ImgRequest, service: Service) -> JobAccepted:
    return await service.generation.submit("img2img", data)


@post("/txt2vid", status_code=202, summary="Queue a text-to-video job (needs a video model)")
async def txt2vid(data: Txt2VidRequest, service: Service) -> JobAccepted:
    return await service.generation.submit("txt2vid", data)


# ------------------------------------------------------------------------------------ options and defaults


class QuantizationType(msgspec.Struct):
    id: str
    name: str
    bits: int


class Options(msgspec.Struct):
    samplers: list[str]
    schedulers: list[str]
    quantization_types: list[QuantizationType]
    preview_modes: list[str]
    rng_types: list[str]
    # What this service cannot do with sd.cpp, so clients need not find out by trial: topic -> why.
    unsupported: dict[str, str]


UNSUPPORTED = {
    "upscale_factor": "fixed by the ESRGAN model (x1, x2 or x4 per pass); other factors are reached only as powers "
    "of it via repeats",
    "photo_maker": "PhotoMaker inputs (pm_*) run on sd-cli, never on the resident sd-server",
}


@get("/options", sync_to_thread=False, summary="Samplers, schedulers, quantizations and preview modes of the binary")
def options(service: Service) -> Options:
    caps = service.capabilities
    return Options(
        samplers=list(caps.samplers),
        schedulers=list(caps.schedulers),
        quantization_types=[
            QuantizationType(kind, *QUANT_INFO.get(kind, (kind.upper(), 0))) for kind in caps.weight_types
        ],
        preview_modes=list(caps.preview_modes),
        rng_types=list(caps.rng_types),
        unsupported=UNSUPPORTED,
    )


@get(
    "/defaults",
    sync_to_thread=False,
    summary="What each field of a generation request becomes when left out (the contract's, no architecture)",
)
def defaults() -> RequestDefaults:
    return request_defaults()


# ------------------------------------------------------------------------------------------- previews


@get("/preview/settings", sync_to_thread=False, summary="Live preview settings")
def preview_settings(service: Service) -> PreviewSettings:
    return service.previews.settings


@put("/preview/settings", summary="Change live preview settings (persisted)")
async def update_preview_settings(data: PreviewSettingsUpdate, service: Service) -> PreviewSettingsUpdated:
    return PreviewSettingsUpdated(True, await service.previews.update(data))


@get("/queue/{job_id:str}/preview", summary="The latest preview of a running job (JPEG)", media_type="image/jpeg")
async def job_preview(service: Service, job_id: str) -> Response[bytes]:
    """The latest preview of a running job, for clients without WebSocket."""
    await service.queue.get(job_id)  # 404 for an unknown job
    jpeg = service.previews.latest.get(job_id)
    if jpeg is None:
        raise NotFound("No preview for this job (not running, previews off, or no step yet)")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


ROUTES = [txt2img, img2img, txt2vid, options, defaults, preview_settings, update_preview_settings, job_preview]
