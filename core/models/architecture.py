"""Recognise a model's architecture from its tensor table, without loading weights.

Reads the safetensors JSON header or the GGUF tensor-info table (names and shapes only) and applies the
rules of sd.cpp's `ModelLoader::get_sd_version` (src/model.cpp). Standalone diffusion models are read
with sd.cpp's `model.diffusion_model.` prefix, as the binary does for --diffusion-model.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import BinaryIO

import msgspec

DIFFUSION_PREFIX = "model.diffusion_model."
MAX_HEADER_BYTES = 100 * 1024 * 1024


class UnreadableModel(ValueError):
    pass


class Architecture(msgspec.Struct, frozen=True):
    variant: str  # what sd.cpp calls it, e.g. "FLUX.2 klein", "SDXL (inpaint)"
    family: str  # the preset key in PRESETS


# ------------------------------------------------------------------------------- tensor tables


def _ggml_ne(shape: list[int]) -> list[int]:
    """ggml's ne[] (innermost first, at most 4 dims, the outer ones folded into ne[3])."""
    reverse = [*list(reversed(shape)), 1, 1, 1, 1]
    return [*reverse[:3], math.prod(reverse[3:])]


def _safetensors_table(handle: BinaryIO) -> dict[str, list[int]]:
    head = handle.read(8)
    if len(head) < 8:
        raise UnreadableModel("file is too short for a safetensors header")
    (length,) = struct.unpack("<Q", head)
    if length > MAX_HEADER_BYTES:
        raise UnreadableModel("safetensors header is implausibly large")
    try:
        header = json.loads(handle.read(length))
    except ValueError as exc:
        raise UnreadableModel(f"safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise UnreadableModel("safetensors header is not an object")
    return {
        name: list(info.get("shape", []))
        for name, info in header.items()
        if name != "__metadata__" and isinstance(info, dict)
    }


class _Reader:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        data = self.handle.read(size)
        if len(data) != size:
            raise UnreadableModel("GGUF file ends inside its header")
        return struct.unpack(fmt, data)

    def string(self) -> str:
        (length,) = self.unpack("<Q")
        if length > MAX_HEADER_BYTES:
            raise UnreadableModel("GGUF string is implausibly long")
        return self.handle.read(length).decode("utf-8", "replace")

    # GGUF metadata value types -> struct format (8 = string, 9 = array)
    SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def skip_value(self, value_type: int) -> None:
        if value_type in self.SCALARS:
            self.unpack(self.SCALARS[value_type])
        elif value_type == 8:
            self.string()
        elif value_type == 9:
            item_type, count = self.unpack("<IQ")
            for _ in range(count):
                self.skip_value(item_type)
        else:
            raise UnreadableModel(f"unknown GGUF metadata type {value_type}")


def _gguf_table(handle: BinaryIO) -> dict[str, list[int]]:
    reader = _Reader(handle)
    magic, version = reader.unpack("<4sI")
    if magic != b"GGUF" or version < 2:
        raise UnreadableModel("not a GGUF v2+ file")
    tensor_count, kv_count = reader.unpack("<QQ")
    for _ in range(kv_count):
        reader.string()
        (value_type,) = reader.unpack("<I")
        reader.skip_value(value_type)
    table: dict[str, list[int]] = {}
    for _ in range(tensor_count):
        name = reader.string()
        (dims,) = reader.unpack("<I")
        ne = list(reader.unpack(f"<{dims}Q"))
        reader.unpack("<IQ")  # type, offset
        table[name] = list(reversed(ne))  # as a (outer-first) shape, like safetensors
    return table


def tensor_table(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape (outermost first). Blocking: run off the event loop."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
            handle.seek(0)
            if magic == b"GGUF":
                return _gguf_table(handle)
            if path.suffix.lower() in (".safetensors", ".sft"):
                return _safetensors_table(handle)
    except OSError as exc:
        raise UnreadableModel(f"cannot read {path.name}: {exc.strerror}") from None
    raise UnreadableModel(f"{path.suffix or 'this'} files are not inspected (only safetensors and GGUF)")


# --------------------------------------------------------------------------------- detection


def detect(table: dict[str, list[int]], diffusion_only: bool = False) -> Architecture | None:
    """sd.cpp's get_sd_version over a tensor table; None where sd.cpp would not recognise it either."""
    names = {
        (DIFFUSION_PREFIX + n if diffusion_only and not n.startswith(DIFFUSION_PREFIX) else n): s
        for n, s in table.items()
    }

    def has(fragment: str) -> bool:
        return any(fragment in name for name in names)

    def ne(name: str) -> list[int]:
        return _ggml_ne(names[name]) if name in names else [0, 0, 0, 0]

    early_returns = (
        ("model.diffusion_model.nerf_final_layer_conv.", "Chroma Radiance", "Chroma"),
        ("model.diffusion_model.joint_blocks.", "SD3", "SD3"),
        ("model.diffusion_model.transformer_blocks.0.img_mod.1.weight", "Qwen-Image", "Qwen-Image"),
        ("llm_adapter.blocks.0.cross_attn.q_proj.weight", "Anima", "Anima"),
        ("model.diffusion_model.double_blocks.0.img_mlp.gate_proj.weight", "Ovis-Image", "Flux"),
        ("model.diffusion_model.cap_embedder.0.weight", "Z-Image", "Z-Image"),
        ("model.diffusion_model.layers.0.adaLN_sa_ln.weight", "ERNIE-Image", "ERNIE-Image"),
        ("model.diffusion_model.input_blocks.8.0.time_mixer.mix_factor", "SVD", "SVD"),
    )
    for fragment, variant, family in early_returns:
        if has(fragment):
            return Architecture(variant, family)

    if has("model.diffusion_model.blocks.0.cross_attn.norm_k.weight"):
        channels = ne("model.diffusion_model.patch_embedding.weight")[3]
        img_emb = has("model.diffusion_model.img_emb")
        variant = {184320: "Wan2.2 I2V", 147456: "Wan2.2 TI2V"}.get(channels, "Wan") if not img_emb else "Wan"
        return Architecture(variant, "Wan")

    input_block = next(
        (
            ne(n)
            for n in (
                "model.diffusion_model.input_blocks.0.0.weight",
                "model.diffusion_model.img_in.weight",
                "unet.conv_in.weight",
            )
            if n in names
        ),
        [0, 0, 0, 0],
    )
    is_inpaint, is_ip2p = input_block[2] == 9, input_block[2] == 8
    is_unet = has("model.diffusion_model.input_blocks.") or has("unet.down_blocks.")
    multiple_encoders = has("conditioner.embedders.1") or has("cond_stage_model.1") or has("te.1")
    middle_block_1 = has("model.diffusion_model.middle_block.1.") or has("unet.mid_block.resnets.1.")

    if is_unet and multiple_encoders:
        suffix = " (inpaint)" if is_inpaint else " (pix2pix)" if is_ip2p else ""
        if not middle_block_1:
            return Architecture(
                "SDXL Vega"
                if not has("model.diffusion_model.output_blocks.3.1.transformer_blocks.1")
                and not has("unet.up_blocks.1.attentions.0.transformer_blocks.1")
                else "SSD-1B",
                "SDXL",
            )
        return Architecture("SDXL" + suffix, "SDXL")

    is_flux2 = has("model.diffusion_model.double_stream_modulation_img.lin.weight")
    if has("model.diffusion_model.double_blocks.") and not is_flux2:
        if has("distilled_guidance_layer.in_proj.weight"):
            return Architecture("Chroma", "Chroma")
        variants = {384: "Flux Fill", 128: "Flux Controls", 196: "Flex.2"}
        return Architecture(variants.get(input_block[0], "Flux"), "Flux")
    if is_flux2:
        return Architecture("FLUX.2" if has("single_blocks.47.linear1.weight") else "FLUX.2 klein", "FLUX.2")

    token_names = (
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
        "cond_stage_model.model.token_embedding.weight",
        "text_model.embeddings.token_embedding.weight",
        "te.text_model.embeddings.token_embedding.weight",
        "conditioner.embedders.0.model.token_embedding.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
    )
    token_width = next((ne(n)[0] for n in token_names if n in names), 0)
    suffix = " (inpaint)" if is_inpaint else " (pix2pix)" if is_ip2p else ""
    if token_width == 768:
        return Architecture(("SD1.x" + suffix) if middle_block_1 else "SD1.x tiny", "SD1")
    if token_width == 1024:
        return Architecture(("SD2.x" + suffix) if middle_block_1 else "SD2.x tiny", "SD2")
    return None


def detect_file(path: Path, diffusion_only: bool) -> Architecture | None:
    return detect(tensor_table(path), diffusion_only)


# ------------------------------------------------------------------------------------ presets


class GenerationDefaults(msgspec.Struct, frozen=True, omit_defaults=True):
    """What suits an architecture when a request leaves it out (shown in /architectures)."""

    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str
    scheduler: str | None = None
    distilled_guidance: float | None = None
    video_frames: int | None = None
    flow_shift: float | None = None


class Preset(
    msgspec.Struct,
    frozen=True,
    rename={
        "required": "requiredComponents",
        "optional": "optionalComponents",
        "defaults": "generationDefaults",
        "multiple": "sizeMultiple",
    },
):
    display_name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    defaults: GenerationDefaults
    # Width and height must be multiples of this (sd.cpp's vae_scale_factor x diffusion down factor);
    # sd.cpp silently rounds other sizes up.
    multiple: int = 8


def _defaults(
    width: int, height: int, steps: int, cfg: float, sampler: str = "euler_a", **more: float | str
) -> GenerationDefaults:
    return GenerationDefaults(width, height, steps, cfg, sampler, **more)  # type: ignore[arg-type]


# Components a standalone diffusion model needs (a full checkpoint usually bundles them).
# "vae" is also satisfied by a TAESD (`taesd`), which can decode on its own.
PRESETS: dict[str, Preset] = {
    "SD1": Preset(
        "Stable Diffusion 1.x",
        (),
        ("vae", "taesd", "lora", "controlnet", "embedding"),
        _defaults(512, 512, 20, 7.0),
        multiple=64,
    ),
    "SD2": Preset(
        "Stable Diffusion 2.x", (), ("vae", "taesd", "lora", "embedding"), _defaults(768, 768, 20, 7.0), multiple=64
    ),
    "SDXL": Preset(
        "Stable Diffusion XL",
        (),
        ("vae", "taesd", "lora", "controlnet", "embedding"),
        _defaults(1024, 1024, 25, 7.0),
        multiple=64,
    ),
    "SD3": Preset(
        "Stable Diffusion 3 / 3.5",
        ("clip_l", "clip_g", "t5xxl"),
        ("vae", "lora"),
        _defaults(1024, 1024, 20, 4.5, "euler"),
    ),
    "Flux": Preset(
        "FLUX.1",
        ("clip_l", "t5xxl", "vae"),
        ("lora", "controlnet"),
        _defaults(1024, 1024, 20, 1.0, "euler", distilled_guidance=3.5),
    ),
    "FLUX.2": Preset("FLUX.2", ("llm", "vae"), ("lora", "taesd"), _defaults(1024, 1024, 20, 1.0, "euler"), multiple=16),
    "Chroma": Preset("Chroma", ("t5xxl", "vae"), ("lora",), _defaults(1024, 1024, 26, 4.0, "euler")),
    "Wan": Preset(
        "Wan 2.x (video)",
        ("vae",),
        ("t5xxl", "clip_vision", "high_noise_diffusion_model", "lora"),
        _defaults(832, 480, 30, 6.0, "euler", video_frames=33, flow_shift=3.0),
        multiple=16,
    ),
    "Qwen-Image": Preset(
        "Qwen-Image", ("llm", "vae"), ("llm_vision", "lora"), _defaults(1024, 1024, 20, 2.5, "euler", flow_shift=3.0)
    ),
    "Z-Image": Preset(
        "Z-Image", ("llm", "vae"), ("lora",), _defaults(1024, 1024, 8, 1.0, "euler", scheduler="smoothstep")
    ),
    "SVD": Preset("Stable Video Diffusion", (), ("vae",), _defaults(1024, 576, 25, 2.5), multiple=64),
    "Anima": Preset("Anima", ("llm", "vae"), ("lora",), _defaults(1024, 1024, 30, 4.0, "euler")),
    "ERNIE-Image": Preset("ERNIE-Image", ("llm", "vae"), ("lora",), _defaults(1024, 1024, 20, 4.0, "euler")),
}


class Architectures(msgspec.Struct):
    """GET /architectures."""

    architectures: dict[str, Preset]
    current_architecture: str | None
    current_preset: Preset | None


def preset_of(architecture: Architecture | None) -> Preset | None:
    """The preset of a recognised architecture (None: unknown, or a family without one)."""
    return PRESETS.get(architecture.family) if architecture else None


# Variants whose size multiple differs from their family's (Wan2.2 TI2V has a 16x VAE).
VARIANT_MULTIPLES = {"Wan2.2 TI2V": 32}


# Variants that read a control image through their own input channels (sd.cpp's sd_version_is_control and
# Flex.2); every other architecture needs a ControlNet loaded for one.
CONTROL_IMAGE_VARIANTS = frozenset({"Flux Controls", "Flex.2"})


def takes_control_image(architecture: Architecture | None, controlnet_loaded: bool) -> bool:
    return controlnet_loaded or (architecture is not None and architecture.variant in CONTROL_IMAGE_VARIANTS)


def size_multiple(architecture: Architecture | None) -> int | None:
    if architecture is None or architecture.family not in PRESETS:
        return None
    return VARIANT_MULTIPLES.get(architecture.variant, PRESETS[architecture.family].multiple)


def missing_components(family: str, provided: set[str], diffusion_only: bool) -> list[str]:
    preset = PRESETS.get(family)
    if preset is None or not diffusion_only:
        return []
    present = provided | ({"vae"} if "taesd" in provided else set())
    return [component for component in preset.required if component not in present]
