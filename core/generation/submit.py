"""Generation requests become queued jobs.

Submission checks what the request structs cannot (configured limits, the binary's sampler list, LoRA files,
the loaded model's abilities), decodes input images into the job folder and resolves the seed, so the stored
spec runs the same after a restart.
"""

from __future__ import annotations

import random
from typing import TypeVar

import anyio
import msgspec

from core.errors import BadRequest
from core.generation.defaults import resolve_defaults
from core.generation.lora_tags import parse_lora_tags
from core.generation.requests import GenerationRequest, Img2ImgRequest
from core.generation.specs import GENERATION_JOBS
from core.jobs.inputs import with_saved_inputs
from core.jobs.queue import JobQueue
from core.jobs.schemas import JobAccepted
from core.limits import Limits
from core.models.architecture import size_multiple, takes_control_image
from core.models.manager import LoadedModel, ModelManager
from core.request_types import check_values
from core.upscale.upscaler import UpscalerManager
from runners.capabilities import Capabilities

MAX_SEED = 2**31 - 1
VIDEO_FAMILIES = frozenset({"Wan", "SVD"})
S = TypeVar("S", bound=msgspec.Struct)


class GenerationSubmitter:
    def __init__(
        self,
        queue: JobQueue,
        models: ModelManager,
        upscaler: UpscalerManager,
        capabilities: Capabilities,
        limits: Limits,
    ) -> None:
        self.queue, self.models, self.upscaler = queue, models, upscaler
        self.capabilities, self.limits = capabilities, limits

    # ------------------------------------------------------------------------------------- validation

    def validate(self, job_type: str, request: GenerationRequest, loaded: LoadedModel) -> None:
        """Checks of a request whose defaults are resolved (`resolve_defaults`)."""
        limits = self.limits
        for field in ("prompt", "negative_prompt"):
            if len(text := getattr(request, field)) > limits.max_prompt_chars:
                raise BadRequest(f"{field}: at most {limits.max_prompt_chars} characters (got {len(text)})")
        bounds = {
            "width": limits.max_width,
            "height": limits.max_height,
            "steps": limits.max_steps,
            "batch_count": limits.max_batch_count,
        }
        for field, maximum in bounds.items():
            if getattr(request, field) > maximum:
                raise BadRequest(f"{field} must be at most {maximum} (got {getattr(request, field)})")
        samplers = self.capabilities.samplers
        for field, allowed in (
            ("sampler", samplers),
            ("scheduler", self.capabilities.schedulers),
            ("high_noise_sampler", samplers),
        ):
            value = getattr(request, field, "")
            if value and value not in allowed:
                raise BadRequest(
                    f"{field} '{value}' is not supported by this sd.cpp build; use one of: {', '.join(allowed)}"
                )
        if request.slg_start >= request.slg_end and request.slg_scale > 0:
            raise BadRequest("slg_start must be below slg_end")
        if request.easycache and not request.easycache_start < request.easycache_end:
            raise BadRequest("easycache_start must be below easycache_end")
        if isinstance(request, Img2ImgRequest) and not request.init_image_base64:
            raise BadRequest("init_image_base64 is required for img2img")
        architecture = loaded.architecture
        multiple = size_multiple(architecture)
        width, height = request.width or 0, request.height or 0
        if multiple and architecture and (width % multiple or height % multiple):
            rounded = (-(-width // multiple) * multiple, -(-height // multiple) * multiple)
            raise BadRequest(
                f"width and height must be multiples of {multiple} for {architecture.variant} "
                f"(sd.cpp would silently make {width}x{height} into {rounded[0]}x{rounded[1]})"
            )
        if request.control_image_base64 and not takes_control_image(architecture, bool(loaded.request.controlnet)):
            raise BadRequest(
                "control_image_base64: needs a ControlNet: load the model with 'controlnet' "
                "(sd.cpp would ignore the image)"
            )
        if job_type == "txt2vid" and (architecture is None or architecture.family not in VIDEO_FAMILIES):
            name = architecture.variant if architecture else "an unrecognised architecture"
            raise BadRequest(f"txt2vid needs a video model (Wan); the loaded model is {name}")
        if request.upscale:
            self.upscaler.require_loaded()

    # ------------------------------------------------------------------------------------- submission

    async def submit(self, job_type: str, request: GenerationRequest) -> JobAccepted:
        check_values(request)  # whichever face built it: no NUL, nothing non-finite (as a JSON body is checked)
        loaded = await self.models.model_named(request.model)  # the loaded one unless the job names one
        if request.model:
            request = msgspec.structs.replace(request, model=loaded.name)
        request, default_sources = resolve_defaults(request, loaded.architecture, loaded.request.options.flow_shift)
        self.validate(job_type, request, loaded)
        await anyio.to_thread.run_sync(parse_lora_tags, request.prompt, self.models.library.folder_of("lora"))
        if request.pm_id_embed_path:  # sd-cli reads it: only a file inside the model folders
            embed = await anyio.to_thread.run_sync(
                self.models.library.resolve, "embedding", request.pm_id_embed_path, "pm_id_embed_path"
            )
            request = msgspec.structs.replace(request, pm_id_embed_path=str(embed))
        job_id = self.queue.new_job_id()
        limits = self.limits
        stored, inputs = await with_saved_inputs(
            request, self.queue.output_root / job_id, limits.max_image_bytes, limits.max_image_pixels
        )
        if request.seed < 0:
            stored = msgspec.structs.replace(stored, seed=random.randint(0, MAX_SEED))
        spec = GENERATION_JOBS[job_type](request=stored, inputs=inputs, default_sources=default_sources)
        return await self.queue.submit(spec, job_id)
