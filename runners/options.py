"""What the binaries take, as typed structs, and the field -> flag tables that read them.

`ContextOptions` (model files and load options), `GenerationOptions` (one generation), `PreviewOptions` and
`UpscaleOptions` are filled by the core in one typed step per job type; `build_argv` (sd-cli, our worker) and
`build_server_body` (sd-server) read them through the tables below, which name each struct field once. Fields
are the REST API's names; where sd.cpp spells a thing as one flag from several fields, a property of the struct
derives it (`cache_mode`, `vae_tile_size`). None leaves a flag out, so the binary applies its own default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import msgspec

from runners.flags import Flag, bracketed_ints, comma_floats, empty, negative


def _zero(value: Any) -> bool:
    return value == 0


def _auto_float(value: Any) -> bool:
    """None, infinite or not above 0: "auto" (a flow shift of 0 would make every sigma 0: a blank image)."""
    return value is None or (isinstance(value, (int, float)) and (not math.isfinite(value) or value <= 0))


# Model files and load-time options (sd-cli's "Context Options", shared with sd-server).
CONTEXT_FLAGS: tuple[Flag, ...] = (
    Flag("checkpoint", "--model"),
    Flag("diffusion", "--diffusion-model"),
    Flag("high_noise_diffusion_model", "--high-noise-diffusion-model"),
    Flag("vae", "--vae"),
    Flag("clip_l", "--clip_l"),
    Flag("clip_g", "--clip_g"),
    Flag("clip_vision", "--clip_vision"),
    Flag("t5xxl", "--t5xxl"),
    Flag("controlnet", "--control-net"),
    Flag("llm", "--llm"),
    Flag("llm_vision", "--llm_vision"),
    Flag("taesd", "--taesd"),
    Flag("photo_maker", "--photo-maker"),
    Flag("lora_dir", "--lora-model-dir"),
    Flag("embeddings_dir", "--embd-dir"),
    Flag("n_threads", "--threads", omit_when=negative),
    Flag("keep_clip_on_cpu", "--clip-on-cpu", "switch"),
    Flag("keep_vae_on_cpu", "--vae-on-cpu", "switch"),
    Flag("keep_controlnet_on_cpu", "--control-net-cpu", "switch"),
    Flag("vae_conv_direct", "--vae-conv-direct", "switch"),
    Flag("diffusion_conv_direct", "--diffusion-conv-direct", "switch"),
    # Flash attention in the diffusion model only, as sd.cpp's docs use it: `--fa` also applies it to the text
    # encoders and VAE, which breaks Qwen-based models.
    Flag("flash_attn", "--diffusion-fa", "switch"),
    Flag("offload_to_cpu", "--offload-to-cpu", "switch"),
    Flag("enable_mmap", "--mmap", "switch"),
    Flag("weight_type", "--type", omit_when=empty),
    Flag("tensor_type_rules", "--tensor-type-rules", omit_when=empty),
    Flag("rng_type", "--rng"),
    Flag("sampler_rng_type", "--sampler-rng", omit_when=empty),
    Flag("prediction", "--prediction", omit_when=empty),
    Flag("lora_apply_mode", "--lora-apply-mode"),
    Flag("chroma_use_dit_mask", "--chroma-disable-dit-mask", "inverse_switch"),
    Flag("chroma_use_t5_mask", "--chroma-enable-t5-mask", "switch"),
    Flag("chroma_t5_mask_pad", "--chroma-t5-mask-pad"),
)


class ContextOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What sd.cpp loads a model with: CONTEXT_FLAGS and CLI_ONLY_CONTEXT_FLAGS read these fields (a unit test
    holds the two to each other). None leaves a flag out, so the binary applies its own default."""

    # Model files by role (absolute paths).
    checkpoint: str | None = None
    diffusion: str | None = None
    high_noise_diffusion_model: str | None = None
    vae: str | None = None
    clip_l: str | None = None
    clip_g: str | None = None
    clip_vision: str | None = None
    t5xxl: str | None = None
    controlnet: str | None = None
    llm: str | None = None
    llm_vision: str | None = None
    taesd: str | None = None
    photo_maker: str | None = None
    lora_dir: str | None = None
    embeddings_dir: str | None = None
    # Load options.
    n_threads: int | None = None
    keep_clip_on_cpu: bool | None = None
    keep_vae_on_cpu: bool | None = None
    keep_controlnet_on_cpu: bool | None = None
    vae_conv_direct: bool | None = None
    diffusion_conv_direct: bool | None = None
    flash_attn: bool | None = None
    offload_to_cpu: bool | None = None
    enable_mmap: bool | None = None
    weight_type: str | None = None
    tensor_type_rules: str | None = None
    rng_type: str | None = None
    sampler_rng_type: str | None = None
    prediction: str | None = None
    lora_apply_mode: str | None = None
    chroma_use_dit_mask: bool | None = None
    chroma_use_t5_mask: bool | None = None
    chroma_t5_mask_pad: int | None = None
    tae_preview_only: bool | None = None  # sd-cli only: the TAESD decodes previews, not the final image


# Context options that only sd-cli knows (sd-server has no previews).
CLI_ONLY_CONTEXT_FLAGS: tuple[Flag, ...] = (Flag("tae_preview_only", "--taesd-preview-only", "switch"),)

# Per-generation options (sd-cli's "Generation Options"; sd-server's per-request defaults).
GENERATION_FLAGS: tuple[Flag, ...] = (
    Flag("prompt", "--prompt"),
    Flag("negative_prompt", "--negative-prompt", omit_when=empty),
    Flag("width", "--width"),
    Flag("height", "--height"),
    Flag("steps", "--steps"),
    Flag("cfg_scale", "--cfg-scale"),
    Flag("img_cfg_scale", "--img-cfg-scale", omit_when=negative),
    Flag("distilled_guidance", "--guidance"),
    # 0 is the spec's "unset": sd.cpp then picks the sampler's own eta (1 for ancestral samplers).
    Flag("eta", "--eta", omit_when=_zero),
    Flag("shifted_timestep", "--timestep-shift", omit_when=_zero),
    Flag("seed", "--seed"),
    Flag("sampler", "--sampling-method", omit_when=empty),
    Flag("scheduler", "--scheduler", omit_when=empty),
    Flag("batch_count", "--batch-count"),
    Flag("clip_skip", "--clip-skip"),
    Flag("slg_scale", "--slg-scale", omit_when=_zero),
    Flag("skip_layers", "--skip-layers", format=bracketed_ints),
    Flag("slg_start", "--skip-layer-start"),
    Flag("slg_end", "--skip-layer-end"),
    Flag("custom_sigmas", "--sigmas", format=comma_floats, omit_when=empty),
    Flag("flow_shift", "--flow-shift", omit_when=_auto_float),
    Flag("init_image", "--init-img"),
    Flag("strength", "--strength"),
    Flag("mask_image", "--mask"),
    Flag("end_image", "--end-img"),
    Flag("ref_images", "--ref-image", "repeat"),
    Flag("auto_resize_ref_image", "--disable-auto-resize-ref-image", "inverse_switch"),
    Flag("increase_ref_index", "--increase-ref-index", "switch"),
    Flag("control_image", "--control-image"),
    Flag("control_strength", "--control-strength"),
    Flag("control_video", "--control-video"),
    Flag("pm_id_images_dir", "--pm-id-images-dir"),
    Flag("pm_id_embed_path", "--pm-id-embed-path", omit_when=empty),
    Flag("pm_style_strength", "--pm-style-strength"),
    Flag("video_frames", "--video-frames"),
    Flag("fps", "--fps"),
    Flag("moe_boundary", "--moe-boundary"),
    Flag("vace_strength", "--vace-strength"),
    Flag("high_noise_steps", "--high-noise-steps"),
    Flag("high_noise_cfg_scale", "--high-noise-cfg-scale"),
    Flag("high_noise_sampler", "--high-noise-sampling-method", omit_when=empty),
    Flag("high_noise_distilled_guidance", "--high-noise-guidance"),
    Flag("high_noise_slg_scale", "--high-noise-slg-scale", omit_when=_zero),
    Flag("high_noise_skip_layers", "--high-noise-skip-layers", format=bracketed_ints),
    Flag("high_noise_slg_start", "--high-noise-skip-layer-start"),
    Flag("high_noise_slg_end", "--high-noise-skip-layer-end"),
    Flag("vae_tiling", "--vae-tiling", "switch"),
    Flag("vae_tile_size", "--vae-tile-size"),
    Flag("vae_tile_overlap", "--vae-tile-overlap"),
    Flag("cache_mode", "--cache-mode"),
    Flag("cache_option", "--cache-option"),
)


class LoraOption(msgspec.Struct, frozen=True):
    """One LoRA as sd-server takes it (sd-cli and our worker read `<lora:name:weight>` tags in the prompt)."""

    path: str  # relative to the LoRA folder the binary was started with
    multiplier: float = 1.0
    is_high_noise: bool = False


class GenerationOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What sd.cpp generates one job with: GENERATION_FLAGS and SERVER_FIELDS read these fields and properties.

    The core converts a request into this struct (core.generation.engine.generation_options): a request field that
    is neither one of these nor listed there as ours is refused by `forbid_unknown_fields`, so nothing reaches the
    binaries by a coincidence of names. Input images are file paths; sd-server's body takes them as base64."""

    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    img_cfg_scale: float | None = None
    distilled_guidance: float | None = None
    eta: float | None = None
    shifted_timestep: int | None = None
    seed: int | None = None
    sampler: str | None = None
    scheduler: str | None = None
    batch_count: int | None = None
    clip_skip: int | None = None
    slg_scale: float | None = None
    skip_layers: list[int] | None = None
    slg_start: float | None = None
    slg_end: float | None = None
    custom_sigmas: list[float] | None = None
    flow_shift: float | None = None
    strength: float | None = None
    auto_resize_ref_image: bool | None = None
    increase_ref_index: bool | None = None
    control_strength: float | None = None
    pm_id_embed_path: str | None = None
    pm_style_strength: float | None = None
    video_frames: int | None = None
    fps: int | None = None
    moe_boundary: float | None = None
    vace_strength: float | None = None
    high_noise_steps: int | None = None
    high_noise_cfg_scale: float | None = None
    high_noise_sampler: str | None = None
    high_noise_distilled_guidance: float | None = None
    high_noise_slg_scale: float | None = None
    high_noise_skip_layers: list[int] | None = None
    high_noise_slg_start: float | None = None
    high_noise_slg_end: float | None = None
    vae_tiling: bool | None = None
    vae_tile_size_x: int | None = None
    vae_tile_size_y: int | None = None
    vae_tile_overlap: float | None = None
    easycache: bool | None = None
    easycache_threshold: float | None = None
    easycache_start: float | None = None
    easycache_end: float | None = None
    # Input images: files for sd-cli and the worker, base64 in sd-server's body.
    init_image: str | None = None
    mask_image: str | None = None
    end_image: str | None = None
    control_image: str | None = None
    ref_images: list[str] | None = None
    control_frames: list[str] | None = None  # sd-server takes the frames
    control_video: str | None = None  # sd-cli takes the folder of the same frames
    pm_id_images_dir: str | None = None  # sd-cli only (PhotoMaker)
    lora: list[LoraOption] | None = None  # sd-server only: it ignores prompt tags

    @property
    def cache_mode(self) -> str | None:
        return "easycache" if self.easycache else None

    @property
    def cache_option(self) -> str | None:
        """sd.cpp's `--cache-option`: the EasyCache settings the request gave, as `key=value,...`."""
        if not self.easycache:
            return None
        settings = (
            ("threshold", self.easycache_threshold),
            ("start", self.easycache_start),
            ("end", self.easycache_end),
        )
        return ",".join(f"{key}={value}" for key, value in settings if value is not None) or None

    @property
    def vae_tile_size(self) -> str | None:
        """`--vae-tile-size WxH`, only where tiling is on and both sides are set (0 leaves sd.cpp's default)."""
        x, y = self.vae_tile_size_x, self.vae_tile_size_y
        return f"{x}x{y}" if self.vae_tiling and x and y and x > 0 and y > 0 else None


class PreviewOptions(msgspec.Struct, frozen=True):
    """sd-cli's live previews (our worker takes them in its job line; sd-server has none)."""

    preview_mode: str
    preview_path: str
    preview_noisy: bool = False


PREVIEW_FLAGS: tuple[Flag, ...] = (
    Flag("preview_mode", "--preview"),
    Flag("preview_path", "--preview-path"),
    Flag("preview_noisy", "--preview-noisy", "switch"),
)


def _not_positive(value: Any) -> bool:
    return value <= 0


class UpscaleOptions(msgspec.Struct, frozen=True):
    """What sd-cli's upscale mode (`--mode upscale`) takes: an ESRGAN model run over one image."""

    upscale_model: str
    init_image: str
    output: str
    upscale_repeats: int = 1  # passes of the model, each multiplying the size by its scale
    upscale_tile_size: int = 128
    n_threads: int = -1  # at or below 0: sd.cpp's default (the physical cores)


UPSCALE_FLAGS: tuple[Flag, ...] = (
    Flag("upscale_model", "--upscale-model"),
    Flag("init_image", "--init-img"),
    Flag("output", "--output"),
    Flag("upscale_repeats", "--upscale-repeats"),
    Flag("upscale_tile_size", "--upscale-tile-size"),
    Flag("n_threads", "--threads", omit_when=_not_positive),
)


# ------------------------------------------------------------------------------ sd-server native JSON


class JsonField(msgspec.Struct, frozen=True):
    """One API field placed at `path` in sd-server's native img_gen / vid_gen body."""

    field: str
    path: tuple[str, ...]
    omit_when: Callable[[Any], bool] | None = None


_SAMPLE = ("sample_params",)
_GUIDANCE = ("sample_params", "guidance")
_SLG = ("sample_params", "guidance", "slg")
_HIGH = ("high_noise_sample_params",)
_HIGH_GUIDANCE = ("high_noise_sample_params", "guidance")
_HIGH_SLG = ("high_noise_sample_params", "guidance", "slg")
_TILING = ("vae_tiling_params",)

SERVER_FIELDS: tuple[JsonField, ...] = (
    *(
        JsonField(name, (name,))
        for name in (
            "prompt",
            "negative_prompt",
            "width",
            "height",
            "seed",
            "batch_count",
            "clip_skip",
            "strength",
            "control_strength",
            "auto_resize_ref_image",
            "increase_ref_index",
            "video_frames",
            "fps",
            "moe_boundary",
            "vace_strength",
            "cache_mode",
            "cache_option",
            "lora",
            "init_image",
            "mask_image",
            "end_image",
            "control_image",
            "ref_images",
            "control_frames",
        )
    ),
    JsonField("steps", (*_SAMPLE, "sample_steps")),
    JsonField("sampler", (*_SAMPLE, "sample_method"), omit_when=empty),
    JsonField("scheduler", (*_SAMPLE, "scheduler"), omit_when=empty),
    JsonField("eta", (*_SAMPLE, "eta"), omit_when=_zero),
    JsonField("shifted_timestep", (*_SAMPLE, "shifted_timestep")),
    JsonField("custom_sigmas", (*_SAMPLE, "custom_sigmas")),
    JsonField("flow_shift", (*_SAMPLE, "flow_shift"), omit_when=_auto_float),
    JsonField("cfg_scale", (*_GUIDANCE, "txt_cfg")),
    JsonField("img_cfg_scale", (*_GUIDANCE, "img_cfg"), omit_when=negative),
    JsonField("distilled_guidance", (*_GUIDANCE, "distilled_guidance")),
    JsonField("slg_scale", (*_SLG, "scale")),
    JsonField("skip_layers", (*_SLG, "layers")),
    JsonField("slg_start", (*_SLG, "layer_start")),
    JsonField("slg_end", (*_SLG, "layer_end")),
    JsonField("high_noise_steps", (*_HIGH, "sample_steps")),
    JsonField("high_noise_sampler", (*_HIGH, "sample_method"), omit_when=empty),
    JsonField("high_noise_cfg_scale", (*_HIGH_GUIDANCE, "txt_cfg")),
    JsonField("high_noise_distilled_guidance", (*_HIGH_GUIDANCE, "distilled_guidance")),
    JsonField("high_noise_slg_scale", (*_HIGH_SLG, "scale")),
    JsonField("high_noise_skip_layers", (*_HIGH_SLG, "layers")),
    JsonField("high_noise_slg_start", (*_HIGH_SLG, "layer_start")),
    JsonField("high_noise_slg_end", (*_HIGH_SLG, "layer_end")),
    JsonField("vae_tiling", (*_TILING, "enabled")),
    JsonField("vae_tile_size_x", (*_TILING, "tile_size_x")),
    JsonField("vae_tile_size_y", (*_TILING, "tile_size_y")),
    JsonField("vae_tile_overlap", (*_TILING, "target_overlap")),
)


def build_server_body(options: GenerationOptions) -> dict[str, object]:
    """sd-server's native request body (JSON data) for the options: unset fields keep the server's default."""
    body: dict[str, object] = {}
    for spec in SERVER_FIELDS:
        value = getattr(options, spec.field)
        if value is None or (spec.omit_when is not None and spec.omit_when(value)):
            continue
        node = body
        for key in spec.path[:-1]:
            node = cast(dict[str, object], node.setdefault(key, {}))
        node[spec.path[-1]] = msgspec.to_builtins(value)
    return body


def fields_from_server_body(body: Mapping[str, object]) -> dict[str, object]:
    """The inverse of `build_server_body`: API fields from a native sd-server body (what sd-server's clients embed
    as `<sd_cpp_extra_args>{...}</sd_cpp_extra_args>`). Paths the table does not know are left out."""
    fields: dict[str, object] = {}
    for spec in SERVER_FIELDS:
        node: object = body
        for key in spec.path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            fields[spec.field] = node
    return fields
