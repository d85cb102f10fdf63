"""Request and response bodies of the model endpoints: health, load/unload, listing, hashes, folders and types,
the upscaler, conversion and downloads."""

from __future__ import annotations

from typing import Literal

import msgspec

from core.models.architecture import Preset
from core.models.components import Component
from core.models.types import ModelType
from core.request_types import CInt, NonEmptyStr, NonNegInt, Request, Unit

RngType = Literal["std_default", "cuda", "cpu"]
Prediction = Literal["", "eps", "v", "edm_v", "sd3_flow", "flux_flow", "flux2_flow"]
LoraApplyMode = Literal["auto", "immediately", "at_runtime"]
MainModelType = Literal["checkpoint", "diffusion"]


class LoadOptions(Request):
    n_threads: CInt = -1
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


class LoadModelRequest(Request):
    """POST /models/load. The fields from `vae` to `photo_maker` are core.models.components.COMPONENTS, in its
    order (a unit test checks it): typed here for clients and the OpenAPI document."""

    model_name: NonEmptyStr | None = None
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
    """The contract's `loaded_components`: the components COMPONENTS marks as reported (checked by a unit test)."""

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


class HealthResponse(msgspec.Struct):
    status: str
    model_loaded: bool
    model_loading: bool
    loading_model_name: str | None
    last_error: str | None
    model_name: str | None
    model_type: str | None
    model_architecture: str | None
    loaded_components: dict[str, str | None]  # {} while no model is loaded
    upscaler_loaded: bool
    upscaler_name: str | None


class LoadedModelInfo(msgspec.Struct):
    """The loaded model with everything it was loaded with (null fields while none is)."""

    model_name: str | None
    model_type: str | None
    model_architecture: str | None
    load_request: LoadModelRequest | None
    upscaler_name: str | None


class ModelEntry(msgspec.Struct, omit_defaults=True):
    name: str
    type: str
    file_extension: str
    size_bytes: int
    hash: str | None  # known once computed (GET /models/hash/...); always present
    is_loaded: bool | None = None  # only for checkpoint / diffusion entries


class ModelListing(msgspec.Struct, omit_defaults=True):
    """GET /models: one list per model type (the fields are MODEL_TYPES' list_key, in its order: a unit test checks
    them), the loaded model, the filters."""

    checkpoints: list[ModelEntry]
    diffusion_models: list[ModelEntry]
    vae: list[ModelEntry]
    loras: list[ModelEntry]
    clip: list[ModelEntry]
    t5: list[ModelEntry]
    controlnets: list[ModelEntry]
    llm: list[ModelEntry]
    esrgan: list[ModelEntry]
    taesd: list[ModelEntry]
    embeddings: list[ModelEntry]
    loaded_model: str | None
    loaded_model_type: str | None
    applied_filters: dict[str, str] | None = None  # only when a filter was given


class ModelTypeTable(msgspec.Struct):
    """GET /models/types: every model type (its folder and keys) and every component a load request takes (with the
    model type whose folder holds it), so that clients such as the web UI keep no copy of either."""

    model_types: list[ModelType]
    components: list[Component]


class ModelHash(msgspec.Struct):
    model_name: str
    model_type: str
    hash: str


class ModelPaths(msgspec.Struct):
    """GET /models/paths, keyed as in the spec's example (MODEL_TYPES' path_key: a unit test checks them)."""

    checkpoints: str
    diffusion_models: str
    vae: str
    lora: str
    clip: str
    t5: str
    embeddings: str
    controlnet: str
    llm: str
    esrgan: str
    taesd: str


# ----------------------------------------------------------------------------------------- conversion


class ConvertRequest(Request):
    """Paths are inside the models folders: "<type folder>/<name>", e.g. "diffusion_models/flux.safetensors"."""

    input_path: NonEmptyStr
    output_type: NonEmptyStr
    output_path: str | None = None
    vae_path: str | None = None
    tensor_type_rules: str = ""


class ConvertAccepted(msgspec.Struct):
    job_id: str
    status: str
    position: int
    output_path: str


# ------------------------------------------------------------------------------------------ downloads

DownloadSource = Literal["url", "civitai", "huggingface"]


class DownloadRequest(Request):
    model_type: str
    source: DownloadSource | None = None
    model_id: str | None = None
    url: str | None = None
    repo_id: str | None = None
    filename: str | None = None
    subfolder: str | None = None
    revision: str = "main"


class DownloadAccepted(msgspec.Struct):
    success: bool
    download_job_id: str
    hash_job_id: str
    source: DownloadSource
    model_type: str
    position: int


class CivitaiInfo(msgspec.Struct):
    success: bool
    model_id: str
    version_id: str
    name: str | None
    version_name: str | None
    type: str
    base_model: str | None
    filename: str | None
    file_size: int
    sha256: str | None
    download_url: str | None


class HuggingfaceInfo(msgspec.Struct):
    success: bool
    repo_id: str
    filename: str
    revision: str
    file_size: int
    sha256: str | None
    download_url: str


class ModelInspection(msgspec.Struct):
    """GET /models/inspect: what a load form needs to know about a main model before loading it."""

    model_name: str
    model_type: MainModelType
    # The preset key in /architectures (None: not recognised, e.g. a torch pickle, which sd.cpp judges at load).
    architecture: str | None
    variant: str | None  # e.g. "FLUX.2 klein"
    preset: Preset | None
    # The components and options of this model's last successful load, if it was ever loaded.
    profile: LoadModelRequest | None
