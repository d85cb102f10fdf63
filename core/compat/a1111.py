"""AUTOMATIC1111's `/sdapi/v1` shapes (modules/api/models.py) and their translation into ordinary jobs.

Unknown fields are ignored, as A1111 does: clients such as webuiapi send every field A1111 has. A field left out
(None here) takes this server's default, so that a client's silence means what it means on our REST API.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from typing import Annotated

import msgspec
from msgspec import Meta
from PIL import ImageOps

from core.compat.samplers import sd_sampler
from core.compat.sd_server import LoraItem, extract_extra_args, lora_tags
from core.errors import BadRequest
from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest
from core.jobs.input_images import decode_image
from core.jobs.schemas import Job
from core.request_types import Request, convert_request

Count = Annotated[int, Meta(ge=1, le=2**31 - 1)]


class A1111Generation(Request):
    prompt: str = ""
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    sampler_name: str | None = None
    sampler_index: str | None = None  # A1111 before 1.6 named the sampler here
    scheduler: str | None = None
    batch_size: Count = 1
    n_iter: Count = 1
    clip_skip: int | None = None
    # A1111: the noise multiplier of DDIM (eta_ddim) and ancestral samplers (eta_ancestral), as sd.cpp's eta; 0 is
    # sd.cpp's "the sampler's own eta" (1 for ancestral samplers), where A1111's 0 means no added noise.
    eta: float | None = None
    override_settings: dict[str, object] = {}  # free-form in A1111: sd_model_checkpoint, CLIP_stop_at_last_layers
    model: str | None = None  # SillyTavern and others name the checkpoint here
    lora: list[LoraItem] = []  # sd-server's structured LoRA list
    send_images: bool = True


class A1111Txt2Img(A1111Generation):
    denoising_strength: float | None = None  # hires fix only in A1111: not supported, ignored


class A1111Img2Img(A1111Generation):
    init_images: list[str] = []
    mask: str | None = None
    inpainting_mask_invert: int | bool = 0
    denoising_strength: float | None = None
    image_cfg_scale: float | None = None  # instruct-pix2pix / edit models' image guidance: sd.cpp's img_cfg_scale


class A1111Options(Request):
    """POST /sdapi/v1/options: only the checkpoint is honoured; the rest is A1111's UI state."""

    sd_model_checkpoint: str | None = None


class GenerationResponse(msgspec.Struct):
    images: list[str]
    parameters: A1111Generation  # the request as sent, without its images (as A1111 echoes it)
    info: str  # a JSON string (GenerationInfo), as A1111 sends it


class GenerationInfo(msgspec.Struct):
    """What A1111 puts into `info` (processing.py's js()); the seed is the one really used."""

    prompt: str
    all_prompts: list[str]
    negative_prompt: str
    all_negative_prompts: list[str]
    seed: int
    all_seeds: list[int]
    subseed: int
    all_subseeds: list[int]
    subseed_strength: float
    width: int | None
    height: int | None
    sampler_name: str | None
    scheduler: str | None
    cfg_scale: float | None
    steps: int | None
    batch_size: int
    n_iter: int
    clip_skip: int
    denoising_strength: float | None
    sd_model_name: str | None
    sd_model_hash: str | None
    seed_resize_from_w: int
    seed_resize_from_h: int
    styles: list[str]
    extra_generation_params: dict[str, str]
    index_of_first_image: int
    infotexts: list[str]
    job_timestamp: str
    is_using_inpainting_conditioning: bool
    version: str
    job_id: str  # ours: the job behind the request, for GET /queue/{id}


class ProgressState(msgspec.Struct):
    """A1111's shared.state as `/progress` reports it."""

    skipped: bool
    interrupted: bool
    stopping_generation: bool
    job: str
    job_count: int
    job_timestamp: str
    job_no: int
    sampling_step: int
    sampling_steps: int


class Progress(msgspec.Struct):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None
    textinfo: str | None


class Empty(msgspec.Struct):
    """`{}`: what A1111 answers to commands (interrupt, skip, options, refresh-checkpoints)."""


class Options(msgspec.Struct):
    """GET /options: free-form in A1111 (hundreds of UI settings); these are the ones clients read."""

    sd_model_checkpoint: str | None
    sd_checkpoint_hash: str | None
    samples_format: str = "png"
    CLIP_stop_at_last_layers: int = 1
    sd_vae: str = "Automatic"


class LatentUpscaleMode(msgspec.Struct):
    name: str


class Embedding(msgspec.Struct):
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    shape: int | None = None  # A1111 reads these from the file; unknown here
    vectors: int | None = None


class Embeddings(msgspec.Struct):
    loaded: dict[str, Embedding]
    skipped: dict[str, Embedding]


class Scripts(msgspec.Struct):
    txt2img: list[str]
    img2img: list[str]


class RamUsage(msgspec.Struct):
    free: int
    used: int
    total: int


class DeviceMemoryUnknown(msgspec.Struct):
    error: str


class Memory(msgspec.Struct):
    ram: RamUsage
    cuda: DeviceMemoryUnknown


class SdModel(msgspec.Struct):
    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None = None


class NamedFile(msgspec.Struct):
    model_name: str
    filename: str


class Sampler(msgspec.Struct):
    name: str
    aliases: list[str]
    options: dict[str, str]


class Scheduler(msgspec.Struct):
    name: str
    label: str
    aliases: list[str] | None
    default_rho: float
    need_inner_model: bool


class Upscaler(msgspec.Struct):
    name: str
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float


class Lora(msgspec.Struct):
    name: str
    alias: str
    path: str
    metadata: dict[str, str]  # the file's safetensors metadata in A1111; not read here


class ExtraSingleImage(Request):
    image: str = ""
    upscaling_resize: float = 2.0
    upscaler_1: str | None = None


class ExtraSingleImageResponse(msgspec.Struct):
    html_info: str
    image: str


class A1111Error(msgspec.Struct):
    """How A1111 answers a refused request: `{"error": <type>, "detail": <message>}`."""

    error: str
    detail: str
    body: str = ""
    errors: str = ""


def model_choice(request: A1111Generation) -> str | None:
    """The checkpoint a request names (override_settings wins over the top-level `model`)."""
    chosen = request.override_settings.get("sd_model_checkpoint") or request.model
    return str(chosen) if chosen else None


def to_request(
    request: A1111Generation,
    samplers: tuple[str, ...],
    schedulers: tuple[str, ...],
    image_limits: tuple[int, int],
) -> GenerationRequest:
    """Our txt2img / img2img request for an A1111 one (sd-server's extra args and LoRA list applied; a mask read
    as A1111 reads it, within `image_limits` (bytes, pixels)). Blocking when there is a mask."""
    prompt, extra = extract_extra_args(request.prompt)
    if request.lora:
        prompt = f"{prompt} {lora_tags(request.lora)}".strip()
    fields: dict[str, object] = {"prompt": prompt, "batch_count": request.batch_size * request.n_iter}
    for name in ("negative_prompt", "width", "height", "steps", "cfg_scale", "seed", "eta"):
        if (value := getattr(request, name)) is not None:
            fields[name] = value
    # A1111's "stop at last layer 1" is no skip; sd.cpp's default (-1) already picks what the model wants (2 for
    # SDXL), where a literal 1 would override it. Larger values are passed.
    stop = (
        request.clip_skip
        if request.clip_skip is not None
        else request.override_settings.get("CLIP_stop_at_last_layers")
    )
    if isinstance(stop, float) and stop.is_integer():  # a JSON 2.0 (A1111 reads the setting as a number)
        stop = int(stop)
    if isinstance(stop, int) and stop > 1:
        fields["clip_skip"] = stop
    sampler_name = request.sampler_name or request.sampler_index
    if sampler_name or request.scheduler:
        sampler, scheduler = sd_sampler(sampler_name or "", request.scheduler, samplers, schedulers)
        if sampler:
            fields["sampler"] = sampler
        if scheduler:
            fields["scheduler"] = scheduler
    if isinstance(request, A1111Img2Img):
        if not request.init_images:
            raise BadRequest("init_images: at least one image is required for img2img")
        if not request.init_images[0]:
            raise BadRequest("init_images[0]: is empty (an image is required: base64, plain or a data: URL)")
        fields["init_image_base64"] = request.init_images[0]
        if request.denoising_strength is not None:
            fields["strength"] = min(max(request.denoising_strength, 0.0), 1.0)
        if request.image_cfg_scale is not None:
            fields["img_cfg_scale"] = request.image_cfg_scale
        if request.mask:
            fields["mask_image_base64"] = a1111_mask(request.mask, bool(request.inpainting_mask_invert), *image_limits)
    fields.update(extra)
    return convert_request(fields, Img2ImgRequest if isinstance(request, A1111Img2Img) else Txt2ImgRequest)


def parameters(request: A1111Generation) -> A1111Generation:
    """The request as sent, without its images (A1111's `parameters` has them emptied too)."""
    if isinstance(request, A1111Img2Img):
        return msgspec.structs.replace(request, init_images=[], mask=None)
    return request


def info(
    job: Job, understood: GenerationRequest, request: A1111Generation, model: str | None, infotexts: list[str]
) -> str:
    """A1111's `info` (a JSON string) for a job that ran `understood` (the request with the seed resolved and the
    architecture's defaults filled); sd.cpp numbers batch images seed + i."""
    seed, count = understood.seed, understood.batch_count
    return msgspec.json.encode(
        GenerationInfo(
            prompt=understood.prompt,
            all_prompts=[understood.prompt] * count,
            negative_prompt=understood.negative_prompt,
            all_negative_prompts=[understood.negative_prompt] * count,
            seed=seed,
            all_seeds=[seed + i for i in range(count)],
            subseed=-1,
            all_subseeds=[-1] * count,
            subseed_strength=0,
            width=understood.width,
            height=understood.height,
            sampler_name=request.sampler_name or request.sampler_index or understood.sampler,
            scheduler=understood.scheduler,
            cfg_scale=understood.cfg_scale,
            steps=understood.steps,
            batch_size=request.batch_size,
            n_iter=request.n_iter,
            clip_skip=understood.clip_skip,
            denoising_strength=understood.strength if isinstance(understood, Img2ImgRequest) else None,
            sd_model_name=model,
            sd_model_hash=None,
            seed_resize_from_w=-1,
            seed_resize_from_h=-1,
            styles=[],
            extra_generation_params={},
            index_of_first_image=0,
            infotexts=infotexts,
            job_timestamp=_timestamp(job.started_at),
            is_using_inpainting_conditioning=False,
            version="sdcpp-restapi",
            job_id=job.job_id,
        )
    ).decode()


def progress(job: Job | None, queued: int, preview_b64: str | None) -> Progress:
    """`/sdapi/v1/progress` for the running generation job (all zero when none runs)."""
    if job is None:
        idle = ProgressState(
            skipped=False,
            interrupted=False,
            stopping_generation=False,
            job="",
            job_count=queued,
            job_timestamp="0",
            job_no=0,
            sampling_step=0,
            sampling_steps=0,
        )
        return Progress(0.0, 0.0, idle, None, None)
    fraction = job.progress.percentage / 100.0
    elapsed = _elapsed(job.started_at)
    eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
    state = ProgressState(
        skipped=False,
        interrupted=False,
        stopping_generation=False,
        job=job.job_id,
        job_count=queued,
        job_timestamp=_timestamp(job.started_at),
        job_no=job.progress.current_image,
        sampling_step=job.progress.step,
        sampling_steps=job.progress.total_steps,
    )
    return Progress(round(fraction, 4), round(eta, 2), state, preview_b64, None)


def _parse(timestamp: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")) if timestamp else None


def _timestamp(timestamp: str | None) -> str:
    moment = _parse(timestamp)
    return moment.strftime("%Y%m%d%H%M%S") if moment else "0"


def _elapsed(timestamp: str | None) -> float:
    moment = _parse(timestamp)
    return (dt.datetime.now(dt.UTC) - moment).total_seconds() if moment else 0.0


def a1111_mask(data: str, invert: bool, max_bytes: int, max_pixels: int) -> str:
    """sd.cpp's mask (white = repaint) with A1111's meaning (processing.py `create_binary_mask`, then
    `inpainting_mask_invert`): an RGBA mask with any transparency is read from its alpha (alpha > 128 = repaint),
    any other mask from its grey levels (white = repaint); `invert` swaps them pixel-wise. A base64 PNG. Blocking."""
    image = decode_image(data, "mask", max_bytes, max_pixels, "RGBA")
    alpha = image.getchannel("A")
    transparent = alpha.getextrema() != (255, 255)
    mask = alpha.point([0] * 129 + [255] * 127) if transparent else image.convert("L")
    if invert:
        mask = ImageOps.invert(mask)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
