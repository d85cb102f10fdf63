"""OpenAI's images API (`/v1/images/generations`, `/v1/images/edits`, `/v1/models`) on the same queue: each request
is an ordinary job the request waits for, or, with `stream: true`, follows as server-sent events fed from the live
previews. Errors use OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import anyio
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from core.compat.openai import (
    ImageData,
    ImageGeneration,
    ImagesResponse,
    ModelCard,
    ModelList,
    OpenAIError,
    OutputFormat,
    StreamEvent,
    Usage,
    edit_mask,
    encode,
    error_body,
    now,
    parse_size,
    to_request,
)
from core.compat.runs import CompatRuns
from core.errors import BadRequest, ServiceError
from core.events.types import JobPreview, JobProgress
from core.generation.requests import GenerationRequest
from core.jobs.idempotency import HEADER
from core.jobs.schemas import Job
from core.jobs.waiting import job_updates
from core.models.manager import LoadedModel
from core.models.types import MODEL_TYPES
from core.request_types import convert_request
from core.service import Service
from litestar_app.client_wait import wait_or_cancel
from litestar_app.errors import http_message
from litestar_app.openapi import documented_errors
from litestar_app.security import SecurityPolicy

_encode = msgspec.json.Encoder().encode


async def _choose_model(service: Service, name: str | None) -> LoadedModel:
    """OpenAI's `model` names one of ours for this job when it names one (loaded on the worker that runs it only);
    other names (dall-e-3, gpt-image-1) keep the loaded model, and with none loaded the request is refused."""
    if name:
        try:
            return await service.models.model_named(name, "model")
        except BadRequest:
            if service.models.loaded is None:
                raise
    return service.models.require_loaded()


def _on_model(generation: GenerationRequest, chosen: LoadedModel, service: Service) -> GenerationRequest:
    """The job names its model unless it is the loaded one."""
    loaded = service.models.loaded
    same = loaded is not None and loaded.name == chosen.name
    return generation if same else msgspec.structs.replace(generation, model=chosen.name)


async def _respond(
    request: Request,
    service: Service,
    options: ImageGeneration,
    generation: GenerationRequest,
    job_type: str,
    kind: str,
) -> Response[ImagesResponse] | ServerSentEvent:
    runs = CompatRuns(service)
    accepted = await runs.submit(job_type, generation, request.headers.get(HEADER), request.url.path)
    size = f"{generation.width}x{generation.height}"
    if options.stream:
        return ServerSentEvent(_stream(service, accepted.job_id, options, size, kind))
    job = runs.require_completed(await wait_or_cancel(request, service, accepted.job_id))
    images = await runs.images(job)
    if options.wants_url:
        policy: SecurityPolicy = request.app.state.policy
        base_url = f"{request.url.scheme}://{request.headers.get('host', '')}"
        data = [ImageData(url=policy.output_url(base_url, path)) for path in job.outputs if path.endswith(".png")]
        output_format: OutputFormat = "png"
    else:
        encoded = await anyio.to_thread.run_sync(
            lambda: [encode(png, options.output_format, options.output_compression) for png, _ in images]
        )
        data, output_format = [ImageData(b64_json=runs.b64(image)) for image in encoded], options.output_format
    return Response(ImagesResponse(now(), data, "opaque", output_format, options.quality or "auto", size, Usage()))


async def _stream(
    service: Service, job_id: str, options: ImageGeneration, size: str, kind: str
) -> AsyncIterator[ServerSentEventMessage]:
    """Partial images at evenly spaced points of the progress (from the previews), then one completed event per
    image. A client that leaves cancels the job."""
    thresholds = [100.0 * (k + 1) / (options.partial_images + 1) for k in range(options.partial_images)]
    percentage, sent, finished = 0.0, 0, False

    async def message(event_type: str, image: bytes, index: int | None = None) -> ServerSentEventMessage:
        width, _, height = size.partition("x")
        at_size = (int(width), int(height)) if index is not None else None  # previews come smaller than the image
        encoded = await anyio.to_thread.run_sync(
            encode, image, options.output_format, options.output_compression, at_size
        )
        event = StreamEvent(
            type=event_type,
            b64_json=CompatRuns.b64(encoded),
            created_at=now(),
            size=size,
            quality=options.quality or "auto",
            background="opaque",
            output_format=options.output_format,
            partial_image_index=index,
            usage=None if index is not None else Usage(),
        )
        return ServerSentEventMessage(data=_encode(event).decode(), event=event.type)

    try:
        async for item in job_updates(service.queue, service.bus, job_id):
            if isinstance(item, JobProgress):
                percentage = item.percentage
            elif isinstance(item, JobPreview) and sent < len(thresholds) and percentage >= thresholds[sent]:
                yield await message(f"{kind}.partial_image", base64.b64decode(item.image.split(",", 1)[1]), sent)
                sent += 1
            elif isinstance(item, Job):
                finished = True
                job = CompatRuns.require_completed(item)
                images = await CompatRuns(service).images(job)
                for png, _ in images:
                    yield await message(f"{kind}.completed", png)
    except ServiceError as exc:
        yield ServerSentEventMessage(data=_encode(error_body(exc.message, exc.status)).decode(), event="error")
    finally:
        if not finished:
            await service.queue.cancel_if_active(job_id)


@post("/images/generations", status_code=200, summary="OpenAI images.generate: txt2img on the queue")
async def generations(
    request: Request, data: ImageGeneration, service: Service
) -> Response[ImagesResponse] | ServerSentEvent:
    loaded = await _choose_model(service, data.model)
    generation = to_request(
        data.prompt, data.n, parse_size(data.size, loaded.architecture), data.partial_images if data.stream else 0
    )
    generation = _on_model(generation, loaded, service)
    return await _respond(request, service, data, generation, "txt2img", "image_generation")


async def _upload_b64(upload: object, field: str) -> str:
    if not isinstance(upload, UploadFile):
        raise BadRequest(f"{field}: must be an image file (multipart upload)")
    return base64.b64encode(await upload.read()).decode("ascii")


@post(
    "/images/edits",
    status_code=200,
    summary="OpenAI images.edit (multipart): img2img; the mask's (or image's) transparent pixels are edited",
)
async def edits(request: Request, service: Service) -> Response[ImagesResponse] | ServerSentEvent:
    try:
        form = await request.form()
    except (LookupError, UnicodeDecodeError):  # litestar decodes text parts with the charset they name
        raise BadRequest(
            "request body: a multipart text field is not valid UTF-8 or names an unknown charset "
            "(send text fields as UTF-8)"
        ) from None
    uploads = [*form.getall("image[]", []), *form.getall("image", [])]
    if not uploads:
        raise BadRequest("image: at least one image file is required (image or image[])")
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    options = convert_request(fields, ImageGeneration, strict=False)  # the checks a JSON body goes through
    images = [await _upload_b64(upload, "image") for upload in uploads]
    sent_mask = await _upload_b64(form["mask"], "mask") if "mask" in form else None
    limits = service.settings.limits
    mask = await anyio.to_thread.run_sync(
        edit_mask, images[0], sent_mask, limits.max_image_bytes, limits.max_image_pixels
    )
    loaded = await _choose_model(service, options.model)
    generation = to_request(
        options.prompt,
        options.n,
        parse_size(options.size, loaded.architecture),
        options.partial_images if options.stream else 0,
        images[0],
        mask,
        images[1:],
    )
    generation = _on_model(generation, loaded, service)
    return await _respond(request, service, options, generation, "img2img", "image_edit")


@get("/models", summary="OpenAI models.list: the generation models (checkpoints and diffusion models)")
async def models(service: Service) -> ModelList:
    scanned = await anyio.to_thread.run_sync(service.library.scan_all)
    return ModelList(
        "list",
        [
            ModelCard(model.name, "model", model.mtime_ns // 10**9, "sdcpp-restapi")
            for kind in MODEL_TYPES
            if kind.loadable
            for model in scanned[kind.name]
        ],
    )


NO_RETRY = {"x-should-retry": "false"}  # the openai client retries 5xx and 429, which would run a job again


def openai_error(_: Request, exc: Exception) -> Response[object]:
    if isinstance(exc, ServiceError):
        return Response(
            error_body(exc.message, exc.status), status_code=exc.status, headers={**exc.headers, **NO_RETRY}
        )
    if isinstance(exc, HTTPException):
        return Response(
            error_body(http_message(exc), exc.status_code),
            status_code=exc.status_code,
            headers={**(exc.headers or {}), **NO_RETRY},
        )
    return Response(error_body(f"Internal error: {type(exc).__name__}", 500), status_code=500, headers=NO_RETRY)


ROUTER = Router(
    "/v1",
    route_handlers=documented_errors([generations, edits, models], OpenAIError),
    exception_handlers={ServiceError: openai_error, HTTPException: openai_error, Exception: openai_error},
    tags=["OpenAI compatibility"],
)
ROUTES = [ROUTER]
