"""What AI agents can do over MCP: three tools (generate, model, job) and read-only resources, on the same
service as the REST API, with the same messages. The transport and mount are in litestar_app/mcp_server.py.

Arguments are typed by msgspec structs (the tool input schemas are generated from them); a wrong argument is a
tool error naming the field and the rule, as the REST API's 400 does.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import msgspec
from msgspec import Meta
from PIL import Image

from core.errors import ServiceError
from core.events.types import JobProgress
from core.generation.requests import Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest
from core.jobs.schemas import Job, JobAccepted, JobStatus, JobType, QueueQuery
from core.jobs.waiting import Update, wait_for_job
from core.models.schemas import LoadModelRequest
from core.request_types import describe_validation_error
from core.service import Service
from core.upscale.schemas import UpscaleRequest

T = TypeVar("T")
GenerationType = Literal["txt2img", "img2img", "txt2vid", "upscale"]
REQUEST_TYPES: dict[str, type[msgspec.Struct]] = {
    "txt2img": Txt2ImgRequest,
    "img2img": Img2ImgRequest,
    "txt2vid": Txt2VidRequest,
    "upscale": UpscaleRequest,
}
THUMBNAIL_PX = 256
Progress = Callable[[float, float | None, str | None], Awaitable[None]]


class GenerateControl(msgspec.Struct, forbid_unknown_fields=False):
    """The generate tool's own fields; every other field is the REST request's (POST /<type>)."""

    type: GenerationType
    wait: bool = False
    timeout_seconds: Annotated[float, Meta(gt=0, le=86400)] = 600.0
    # As the REST routes' Idempotency-Key header: a retried call with the same key gets the first call's job.
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=255)] | None = None


class ModelArgs(msgspec.Struct, forbid_unknown_fields=False):
    action: Literal["list", "load", "unload", "status"]
    type: str | None = None  # list: one model type
    search: str | None = None  # list: name contains


class JobArgs(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["status", "cancel", "list", "search"]
    job_id: str | None = None
    status: list[JobStatus] = []
    type: list[JobType] = []
    search: str = ""
    limit: Annotated[int, Meta(ge=1, le=1000)] = 20
    offset: Annotated[int, Meta(ge=0, le=2**31 - 1)] = 0


class JobList(msgspec.Struct):
    pending_count: int
    processing_count: int
    matched_count: int | None
    jobs: list[Job]


class GenerateResult(msgspec.Struct, omit_defaults=True):
    job_id: str
    status: str
    position: int | None = None
    outputs: list[str] = []  # URLs under /output/
    error: str | None = None


class ToolFailure(Exception):
    """A tool error: the message goes back to the agent as it would in a REST 4xx body."""


# ------------------------------------------------------------------------------------------ schemas


def object_schema(*structs: type[msgspec.Struct], **extra: dict[str, object]) -> dict[str, object]:
    """One JSON Schema object whose properties are the union of the structs' (the first one's wins), with
    `$defs` inlined at the top, as MCP wants `"type": "object"` there."""
    refs, defs = msgspec.json.schema_components(structs, ref_template="#/$defs/{name}")
    properties: dict[str, object] = {}
    required: list[str] = []
    for ref in refs:
        schema = defs.pop(str(ref["$ref"]).rsplit("/", 1)[-1])
        for name, value in schema.get("properties", {}).items():
            properties.setdefault(name, value)
        required += [name for name in schema.get("required", []) if name not in required and not refs.index(ref)]
    properties.update(extra)
    result: dict[str, object] = {"type": "object", "properties": properties, "required": required}
    if defs:
        result["$defs"] = defs
    return result


def _convert(arguments: dict[str, object], type_: type[T]) -> T:
    try:
        return msgspec.convert(arguments, type_)
    except msgspec.ValidationError as exc:
        raise ToolFailure(describe_validation_error(exc)) from None


GENERATE_SCHEMA = object_schema(GenerateControl, Txt2ImgRequest, Img2ImgRequest, Txt2VidRequest, UpscaleRequest)
MODEL_SCHEMA = object_schema(ModelArgs, LoadModelRequest)
JOB_SCHEMA = object_schema(JobArgs)

TOOL_DESCRIPTIONS = {
    "generate": (
        "Queue an image or video job on the loaded model: type txt2img, img2img (init_image_base64), txt2vid (a video "
        "model) or upscale (image_base64, needs a loaded upscaler), with the same fields as the REST API (prompt, "
        "negative_prompt, width, height, steps, cfg_scale, seed, sampler, ...). Returns the job id. With wait: true "
        "it reports progress and returns the finished images as thumbnails plus their URLs under /output/."
    ),
    "model": (
        "Manage models. action=list (optional type, search) lists model files; action=status tells which model and "
        "upscaler are loaded; action=load loads model_name (model_type checkpoint or diffusion) with its components "
        "(vae, llm, clip_l, t5xxl, taesd, ...) and options, or, given only model_name, with the components and "
        "options it was last loaded with; action=unload unloads it."
    ),
    "job": (
        "Follow jobs. action=status or cancel needs job_id; action=list filters by status and type, newest first "
        "(limit, offset); action=search finds jobs whose prompt contains `search`."
    ),
}


# ------------------------------------------------------------------------------------------- tools


# How an output file (relative to the output folder) is linked for the agent: (base URL, path) -> URL.
OutputLink = Callable[[str, str], str]


class AgentTools:
    def __init__(self, service: Service, output_link: OutputLink) -> None:
        self.service, self.output_link = service, output_link

    async def generate(self, arguments: dict[str, object], progress: Progress, base_url: str) -> GenerateResult:
        control = _convert(arguments, GenerateControl)
        fields = {k: v for k, v in arguments.items() if k not in GenerateControl.__struct_fields__}
        request = _convert(fields, REQUEST_TYPES[control.type])

        async def submit() -> JobAccepted:
            if isinstance(request, UpscaleRequest):
                return await self.service.upscale.submit(request)
            return await self.service.generation.submit(control.type, request)  # type: ignore[arg-type]

        route = f"mcp:generate:{control.type}"
        accepted = await self.service.idempotency.submit(control.idempotency_key, route, request, submit, JobAccepted)
        if not control.wait:
            return GenerateResult(accepted.job_id, accepted.status, accepted.position)
        job = await self._wait(accepted.job_id, control.timeout_seconds, progress)
        return GenerateResult(
            job.job_id,
            job.status,
            outputs=[self.output_link(base_url, path) for path in job.outputs],
            error=job.error,
        )

    async def _wait(self, job_id: str, timeout_s: float, progress: Progress) -> Job:
        async def relay(update: Update) -> None:
            if isinstance(update, JobProgress):
                await progress(
                    update.percentage,
                    100.0,
                    f"image {update.current_image + 1}/{update.total_images}, step {update.step}/{update.total_steps}",
                )

        try:
            with anyio.move_on_after(timeout_s):
                return await wait_for_job(self.service.queue, self.service.bus, job_id, relay)
        except anyio.get_cancelled_exc_class():
            # The agent went away (its call cancelled, its session closed): its job goes too, as an A1111 or OpenAI
            # client's does when it disconnects.
            with anyio.CancelScope(shield=True):
                await self.service.queue.cancel_if_active(job_id)
            raise
        raise ToolFailure(
            f"job {job_id} did not finish within {timeout_s:.0f}s; it goes on: follow it with the job "
            "tool (action=status)"
        )

    async def model(self, arguments: dict[str, object]) -> msgspec.Struct:
        args = _convert(arguments, ModelArgs)
        service = self.service
        if args.action == "list":
            return await service.library.listing(service.hashes, service.models.loaded, args.type, None, args.search)
        if args.action == "status":
            return service.health()
        if args.action == "unload":
            await service.models.unload()
            return service.health()
        load_fields = {k: v for k, v in arguments.items() if k not in ("action", "type", "search")}
        request = _convert(load_fields, LoadModelRequest)
        if set(load_fields) <= {"model_name"} and request.model_name:
            request = await service.models.load_profile(request.model_name) or request
        await service.models.load(request)
        return service.health()

    async def job(self, arguments: dict[str, object]) -> msgspec.Struct:
        args = _convert(arguments, JobArgs)
        queue = self.service.queue
        if args.action in ("status", "cancel"):
            if not args.job_id:
                raise ToolFailure(f"job_id is required for action={args.action}")
            if args.action == "cancel":
                await queue.cancel(args.job_id)
            return await queue.get(args.job_id)
        if args.action == "search" and not args.search:
            raise ToolFailure("search is required for action=search (text the prompt contains)")
        listing = await queue.listing(
            QueueQuery(tuple(args.status), tuple(args.type), args.search, args.limit, args.offset)
        )
        return JobList(
            listing.pending_count, listing.processing_count, listing.matched_count, list(reversed(listing.items))
        )

    async def thumbnails(self, result: GenerateResult) -> list[bytes]:
        """Small PNGs of the finished images, for the agent to look at (videos have none)."""
        root = self.service.output_root
        files = [unquote(urlsplit(url).path.split("/output/", 1)[1]) for url in result.outputs]
        paths = [root / file for file in files if file.lower().endswith(".png")]
        return await anyio.to_thread.run_sync(lambda: [_thumbnail(path.read_bytes()) for path in paths])


def _thumbnail(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


def failure_message(exc: Exception) -> str | None:
    """The message an agent gets for a failure (as the REST API words it), or None for a bug."""
    if isinstance(exc, ServiceError):
        return exc.message
    if isinstance(exc, ToolFailure):
        return str(exc)
    return None
