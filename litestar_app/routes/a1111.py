"""AUTOMATIC1111's `/sdapi/v1`, so webuiapi scripts, Open WebUI and SillyTavern work unchanged. Each generation
is an ordinary job on the queue (visible in GET /queue, on the WebSocket, in the output folder); the request waits
for it. Errors use A1111's shape: `{"error": <type>, "detail": <message>}`."""

from __future__ import annotations

import os

import anyio
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException

from core.compat.a1111 import (
    A1111Error,
    A1111Img2Img,
    A1111Options,
    A1111Txt2Img,
    DeviceMemoryUnknown,
    Embedding,
    Embeddings,
    Empty,
    ExtraSingleImage,
    ExtraSingleImageResponse,
    GenerationResponse,
    LatentUpscaleMode,
    Lora,
    Memory,
    NamedFile,
    Options,
    Progress,
    RamUsage,
    Sampler,
    Scheduler,
    Scripts,
    SdModel,
    Upscaler,
    info,
    model_choice,
    parameters,
    progress,
    to_request,
)
from core.compat.runs import CompatRuns
from core.compat.samplers import LISTED_SAMPLERS, LISTED_SCHEDULERS
from core.errors import BadRequest, ServiceError
from core.generation.requests import GenerationRequest
from core.generation.specs import GenerationJob
from core.jobs.idempotency import HEADER
from core.models.types import BY_NAME
from core.service import Service
from core.upscale.schemas import UpscaleRequest
from litestar_app.client_wait import wait_or_cancel
from litestar_app.errors import http_message
from litestar_app.openapi import documented_errors


async def _generate(
    request: Request, service: Service, body: A1111Txt2Img | A1111Img2Img, job_type: str
) -> GenerationResponse:
    runs = CompatRuns(service)
    caps = service.capabilities
    limits = service.settings.limits
    generation = await anyio.to_thread.run_sync(
        to_request, body, caps.samplers, caps.schedulers, (limits.max_image_bytes, limits.max_image_pixels)
    )
    named = await runs.job_model(model_choice(body), "override_settings.sd_model_checkpoint")
    if named:  # loaded on the worker that runs the job only
        generation = msgspec.structs.replace(generation, model=named)
    accepted = await runs.submit(job_type, generation, request.headers.get(HEADER), request.url.path)
    job = runs.require_completed(await wait_or_cancel(request, service, accepted.job_id))
    images = await runs.images(job)
    loaded = service.models.loaded
    record = await service.queue.record(job.job_id)
    understood: GenerationRequest = (
        record.spec.request if record and isinstance(record.spec, GenerationJob) else generation
    )
    model = named or (loaded.name if loaded else None)
    return GenerationResponse(
        [runs.b64(png) for png, _ in images] if body.send_images else [],
        parameters(body),
        info(job, understood, body, model, [text for _, text in images]),
    )


@post("/txt2img", status_code=200, summary="A1111 txt2img: waits for the job, returns base64 PNGs")
async def txt2img(request: Request, data: A1111Txt2Img, service: Service) -> GenerationResponse:
    return await _generate(request, service, data, "txt2img")


@post("/img2img", status_code=200, summary="A1111 img2img (init_images, mask, denoising_strength)")
async def img2img(request: Request, data: A1111Img2Img, service: Service) -> GenerationResponse:
    return await _generate(request, service, data, "img2img")


@get("/progress", summary="A1111 progress of the running job (current_image: the live preview)")
async def get_progress(service: Service) -> Progress:
    running = service.queue.running()
    preview = service.previews.latest.get(running.job_id) if running else None
    return progress(running, service.queue.queued(), CompatRuns.b64(preview) if preview else None)


async def _cancel_running(service: Service) -> None:
    if running := service.queue.running():
        await service.queue.cancel_if_active(running.job_id)


@post("/interrupt", status_code=200, summary="A1111 interrupt: cancels the running job")
async def interrupt(service: Service) -> Empty:
    await _cancel_running(service)
    return Empty()


@post("/skip", status_code=200, summary="A1111 skip: cancels the running job")
async def skip(service: Service) -> Empty:
    await _cancel_running(service)
    return Empty()


def _title(name: str, sha256: str | None) -> str:
    return f"{name} [{sha256[:10]}]" if sha256 else name


@get("/options", summary="A1111 options: the loaded checkpoint")
async def get_options(service: Service) -> Options:
    loaded = service.models.loaded
    sha256 = None
    if loaded is not None:
        for model in await anyio.to_thread.run_sync(service.library.scan, BY_NAME[loaded.request.model_type]):
            if model.name == loaded.name:
                sha256 = service.hashes.known(model.path, model.size_bytes, model.mtime_ns)
    return Options(_title(loaded.name, sha256) if loaded else None, sha256)


@post("/options", status_code=200, summary="A1111 options: sd_model_checkpoint loads that model (waits)")
async def set_options(data: A1111Options, service: Service) -> Empty:
    await CompatRuns(service).choose_model(data.sd_model_checkpoint, "sd_model_checkpoint")
    return Empty()


@get("/sd-models", summary="A1111 checkpoints: every checkpoint and diffusion model")
async def sd_models(service: Service) -> list[SdModel]:
    scanned = await anyio.to_thread.run_sync(service.library.scan_all)
    models = []
    for kind in ("checkpoint", "diffusion"):
        for model in scanned[kind]:
            sha256 = service.hashes.known(model.path, model.size_bytes, model.mtime_ns)
            models.append(
                SdModel(
                    _title(model.name, sha256),
                    model.name.rsplit(".", 1)[0],
                    sha256[:10] if sha256 else None,
                    sha256,
                    str(model.path),
                )
            )
    return models


@post("/refresh-checkpoints", status_code=200, summary="A1111: models are listed fresh on every call")
async def refresh_checkpoints() -> Empty:
    return Empty()


@get("/samplers", sync_to_thread=False, summary="A1111 sampler names this sd.cpp build supports")
def samplers(service: Service) -> list[Sampler]:
    available = service.capabilities.samplers
    listed = [Sampler(name, [ours], {}) for name, ours in LISTED_SAMPLERS.items() if ours in available]
    return listed + [Sampler(ours, [], {}) for ours in available if ours not in LISTED_SAMPLERS.values()]


@get("/schedulers", sync_to_thread=False, summary="A1111 schedulers this sd.cpp build supports")
def schedulers(service: Service) -> list[Scheduler]:
    return [
        Scheduler(name, LISTED_SCHEDULERS.get(name, name), None, 0.0, False)
        for name in ("automatic", *service.capabilities.schedulers)
    ]


@get("/upscalers", summary="A1111 upscalers: the ESRGAN models")
async def upscalers(service: Service) -> list[Upscaler]:
    files = await anyio.to_thread.run_sync(service.library.scan, BY_NAME["esrgan"])
    return [
        Upscaler("None", None, None, None, 1.0),
        *(Upscaler(model.name.rsplit(".", 1)[0], model.name, str(model.path), None, 4.0) for model in files),
    ]


@get("/latent-upscale-modes", sync_to_thread=False, summary="A1111 latent upscale modes: none in sd.cpp")
def latent_upscale_modes() -> list[LatentUpscaleMode]:
    return []


async def _named_files(service: Service, *types_: str) -> list[NamedFile]:
    scanned = await anyio.to_thread.run_sync(service.library.scan_all)
    return [NamedFile(model.name, str(model.path)) for kind in types_ for model in scanned[kind]]


@get("/sd-vae", summary="A1111 VAEs")
async def sd_vae(service: Service) -> list[NamedFile]:
    return await _named_files(service, "vae", "taesd")


@get("/sd-modules", summary="A1111 text encoder modules: CLIP, T5 and LLM files")
async def sd_modules(service: Service) -> list[NamedFile]:
    return await _named_files(service, "clip", "t5", "llm")


@get("/loras", summary="A1111 LoRAs (use them as <lora:name:weight> tags)")
async def loras(service: Service) -> list[Lora]:
    files = await anyio.to_thread.run_sync(service.library.scan, BY_NAME["lora"])
    return [Lora(model.name.rsplit(".", 1)[0], model.name.rsplit(".", 1)[0], str(model.path), {}) for model in files]


@get("/embeddings", summary="A1111 embeddings")
async def embeddings(service: Service) -> Embeddings:
    files = await anyio.to_thread.run_sync(service.library.scan, BY_NAME["embedding"])
    return Embeddings(loaded={model.name.rsplit(".", 1)[0]: Embedding() for model in files}, skipped={})


@get("/scripts", sync_to_thread=False, summary="A1111 scripts: none")
def scripts() -> Scripts:
    return Scripts(txt2img=[], img2img=[])


@get("/memory", sync_to_thread=False, summary="A1111 memory: RAM of this machine")
def memory() -> Memory:
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    available = os.sysconf("SC_AVPHYS_PAGES") * page_size
    total = pages * page_size
    return Memory(
        RamUsage(free=available, used=total - available, total=total),
        DeviceMemoryUnknown("sd.cpp's backend reports no device memory to this server"),
    )


@post("/extra-single-image", status_code=200, summary="A1111 extras: upscale one image with the loaded upscaler")
async def extra_single_image(request: Request, data: ExtraSingleImage, service: Service) -> ExtraSingleImageResponse:
    runs = CompatRuns(service)
    loaded = service.upscaler.require_loaded()
    if data.upscaler_1 and data.upscaler_1 not in (
        "None",
        loaded.request.model_name,
        (loaded.request.model_name or "").rsplit(".", 1)[0],
    ):
        raise BadRequest(
            f"upscaler_1: '{data.upscaler_1}' is not the loaded upscaler "
            f"({loaded.request.model_name}); POST /upscaler/load it first"
        )
    factor = max(1, round(data.upscaling_resize))
    upscale = UpscaleRequest(image_base64=data.image, upscale_factor=factor)
    accepted = await runs.submit("upscale", upscale, request.headers.get(HEADER), request.url.path)
    job = runs.require_completed(await wait_or_cancel(request, service, accepted.job_id))
    images = await runs.images(job)
    return ExtraSingleImageResponse("", runs.b64(images[0][0]) if images else "")


def a1111_error(_: Request, exc: Exception) -> Response[A1111Error]:
    if isinstance(exc, ServiceError):
        return Response(A1111Error(type(exc).__name__, exc.message), status_code=exc.status, headers=exc.headers)
    if isinstance(exc, HTTPException):
        return Response(
            A1111Error(type(exc).__name__, http_message(exc)), status_code=exc.status_code, headers=exc.headers
        )
    return Response(A1111Error("InternalError", f"Internal error: {type(exc).__name__}"), status_code=500)


ROUTER = Router(
    "/sdapi/v1",
    route_handlers=documented_errors(
        [
            txt2img,
            img2img,
            get_progress,
            interrupt,
            skip,
            get_options,
            set_options,
            sd_models,
            refresh_checkpoints,
            samplers,
            schedulers,
            upscalers,
            latent_upscale_modes,
            sd_vae,
            sd_modules,
            loras,
            embeddings,
            scripts,
            memory,
            extra_single_image,
        ],
        A1111Error,
    ),
    exception_handlers={ServiceError: a1111_error, HTTPException: a1111_error, Exception: a1111_error},
    tags=["AUTOMATIC1111 compatibility"],
)
ROUTES = [ROUTER]
