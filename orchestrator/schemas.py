"""msgspec structs for every documented request, response and job object (see shared/spec/API.md).

Static rules (types, ranges, enums) live here as struct metadata, so decoding a body already checks
them and the error names the field. Rules that depend on configuration (size limits, the binary's
sampler list, model folders) are checked by the orchestrator.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

NonNegInt = Annotated[int, Meta(ge=0)]
PosInt = Annotated[int, Meta(ge=1)]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]
NonNegFloat = Annotated[float, Meta(ge=0.0)]
Base64Image = Annotated[str, Meta(min_length=1)]

JobType = Literal["txt2img", "img2img", "txt2vid", "upscale", "convert", "download", "hash"]
JobStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
RngType = Literal["std_default", "cuda", "cpu"]
Prediction = Literal["", "eps", "v", "edm_v", "sd3_flow", "flux_flow", "flux2_flow"]
LoraApplyMode = Literal["auto", "immediately", "at_runtime"]
MainModelType = Literal["checkpoint", "diffusion"]


class Request(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=False):
    """Base of request bodies: unknown fields are ignored, as A1111 and ComfyUI clients expect."""


# ---------------------------------------------------------------------------------------------- models


class LoadOptions(Request):
    n_threads: int = -1
    keep_clip_on_cpu: bool = True
    keep_vae_on_cpu: bool = False
    keep_controlnet_on_cpu: bool = False
    vae_conv_direct: bool = False
    diffusion_conv_direct: bool = False
    flash_attn: bool = True
    offload_to_cpu: bool = False
    enable_mmap: bool = True
    vae_decode_only: bool = True  # sd.cpp computes this itself per run (no flag); accepted, not passed
    tae_preview_only: bool = False
    free_params_immediately: bool = False  # fixed by the binary (sd-cli true, sd-server false); accepted
    flow_shift: float | None = None  # None / inf = auto; passed per generation (--flow-shift)
    weight_type: str = ""
    tensor_type_rules: str = ""
    rng_type: RngType = "cuda"
    sampler_rng_type: Literal["", "std_default", "cuda", "cpu"] = ""
    prediction: Prediction = ""
    lora_apply_mode: LoraApplyMode = "auto"
    vae_tiling: bool = False
    vae_tile_size_x: NonNegInt = 0
    vae_tile_size_y: NonNegInt = 0
    vae_tile_overlap: Unit = 0.5
    chroma_use_dit_mask: bool = True
    chroma_use_t5_mask: bool = False
    chroma_t5_mask_pad: NonNegInt = 1


# Component fields of a load request, in the order they are reported.
COMPONENT_FIELDS = ("vae", "clip_l", "clip_g", "t5xxl", "controlnet", "llm", "llm_vision")


class LoadModelRequest(Request):
    model_name: Annotated[str, Meta(min_length=1)] | None = None
    model_type: MainModelType = "checkpoint"
    vae: str | None = None
    clip_l: str | None = None
    clip_g: str | None = None
    clip_vision: str | None = None
    t5xxl: str | None = None
    controlnet: str | None = None
    llm: str | None = None
    llm_vision: str | None = None
    taesd: str | None = None
    high_noise_diffusion_model: str | None = None
    photo_maker: str | None = None
    options: LoadOptions = msgspec.field(default_factory=LoadOptions)


class LoadedComponents(msgspec.Struct):
    vae: str | None = None
    clip_l: str | None = None
    clip_g: str | None = None
    t5xxl: str | None = None
    controlnet: str | None = None
    llm: str | None = None
    llm_vision: str | None = None


class LoadModelResponse(msgspec.Struct):
    success: bool
    message: str
    model_name: str
    model_type: str
    loaded_components: LoadedComponents


class SuccessMessage(msgspec.Struct):
    success: bool
    message: str


class HealthResponse(msgspec.Struct):
    status: str
    model_loaded: bool
    model_loading: bool
    loading_model_name: str | None
    last_error: str | None
    model_name: str | None
    model_type: str | None
    model_architecture: str | None
    loaded_components: LoadedComponents | dict[str, Any]
    upscaler_loaded: bool
    upscaler_name: str | None


class ModelEntry(msgspec.Struct, omit_defaults=True):
    name: str
    type: str
    file_extension: str
    size_bytes: int
    hash: str | None = msgspec.field(default=None)
    is_loaded: bool | None = None  # only for checkpoint / diffusion entries


# ------------------------------------------------------------------------------------------ generation


class GenerationRequest(Request):
    """Fields shared by txt2img, img2img and txt2vid (defaults are txt2img's)."""

    prompt: str
    negative_prompt: str = ""
    width: PosInt = 512
    height: PosInt = 512
    steps: PosInt = 20
    cfg_scale: NonNegFloat = 7.0
    distilled_guidance: NonNegFloat = 3.5
    eta: NonNegFloat = 0.0
    shifted_timestep: Annotated[int, Meta(ge=0, le=1000)] = 0
    seed: int = -1
    sampler: str = "euler_a"
    scheduler: str = "discrete"
    batch_count: PosInt = 1
    clip_skip: int = -1
    slg_scale: NonNegFloat = 0.0
    skip_layers: list[NonNegInt] = msgspec.field(default_factory=lambda: [7, 8, 9])
    slg_start: Unit = 0.01
    slg_end: Unit = 0.2
    custom_sigmas: list[float] = []
    ref_images: list[Base64Image] = []
    auto_resize_ref_image: bool = True
    increase_ref_index: bool = False
    control_image_base64: str | None = None
    control_strength: Unit = 0.9
    vae_tiling: bool = False
    vae_tile_size_x: NonNegInt = 0
    vae_tile_size_y: NonNegInt = 0
    vae_tile_overlap: Unit = 0.5
    easycache: bool = False
    easycache_threshold: NonNegFloat = 0.2
    easycache_start: Unit = 0.15
    easycache_end: Unit = 0.95
    pm_id_images: list[Base64Image] = []
    pm_id_embed_path: str = ""
    pm_style_strength: NonNegFloat = 20.0
    upscale: bool = False
    upscale_repeats: PosInt = 1
    upscale_auto_unload: bool = True
    # Not in the spec: live previews for this job. None follows the preview settings and previews only
    # while a WebSocket client watches the job; true forces them (for clients polling
    # /queue/{id}/preview); false never. Previewed jobs run on sd-cli (sd-server has no previews).
    preview: bool | None = None


class Txt2ImgRequest(GenerationRequest):
    pass


class Img2ImgRequest(GenerationRequest):
    init_image_base64: Base64Image = ""
    strength: Unit = 0.75
    img_cfg_scale: float = -1.0
    mask_image_base64: str | None = None


class Txt2VidRequest(GenerationRequest):
    width: PosInt = 832
    height: PosInt = 480
    steps: PosInt = 30
    cfg_scale: NonNegFloat = 6.0
    sampler: str = "euler"
    video_frames: PosInt = 33
    fps: PosInt = 16
    flow_shift: float = 3.0
    init_image_base64: str | None = None
    end_image_base64: str | None = None
    strength: Unit = 0.75
    control_frames: list[Base64Image] = []
    high_noise_steps: int = -1
    high_noise_cfg_scale: NonNegFloat = 7.0
    high_noise_sampler: str = ""
    high_noise_distilled_guidance: NonNegFloat = 3.5
    high_noise_slg_scale: NonNegFloat = 0.0
    high_noise_skip_layers: list[NonNegInt] = msgspec.field(default_factory=lambda: [7, 8, 9])
    high_noise_slg_start: Unit = 0.01
    high_noise_slg_end: Unit = 0.2
    moe_boundary: Unit = 0.875
    vace_strength: NonNegFloat = 1.0


class UpscaleRequest(Request):
    image_base64: Base64Image
    upscale_factor: PosInt = 4
    tile_size: PosInt = 128
    repeats: PosInt = 1


class ConvertRequest(Request):
    """Paths are inside the models folders: "<type folder>/<name>", e.g. "diffusion_models/flux.safetensors"."""

    input_path: Annotated[str, Meta(min_length=1)]
    output_type: Annotated[str, Meta(min_length=1)]
    output_path: str | None = None
    vae_path: str | None = None
    tensor_type_rules: str = ""


class ConvertAccepted(msgspec.Struct):
    job_id: str
    status: JobStatus
    position: int
    output_path: str


# ------------------------------------------------------------------------------------------------ queue


class Progress(msgspec.Struct):
    step: int = 0
    total_steps: int = 0
    current_image: int = 0
    total_images: int = 1
    all_steps: int = 0
    current_all_steps: int = 0
    percentage: float = 0.0


class Job(msgspec.Struct, omit_defaults=True):
    job_id: str
    type: JobType
    status: JobStatus
    progress: Progress
    created_at: str
    outputs: list[str] = []
    params: dict[str, Any] = {}
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None


class JobAccepted(msgspec.Struct):
    job_id: str
    status: JobStatus
    position: int


class QueueListing(msgspec.Struct):
    pending_count: int
    processing_count: int
    completed_count: int
    failed_count: int
    total_count: int
    items: list[Job]


class ErrorBody(msgspec.Struct):
    error: str
