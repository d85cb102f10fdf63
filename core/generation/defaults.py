"""What a generation field the client left out becomes.

A field that follows the architecture (size, steps, guidance, sampler, scheduler, video length, flow shift) takes,
in order: what the model was loaded with (a load-time flow shift), the loaded architecture's preset
(`GET /architectures`), then the contract's default for an unknown architecture. The stored spec holds the
values used, and `default_sources` says where each omitted one came from (shown in `params` and config.json).
`GET /defaults` shows every field's default as the contract declares it (no architecture), for clients such as
the web UI that fill a form before anything is loaded.
"""

from __future__ import annotations

import math
from typing import TypeVar

import msgspec

from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest
from core.models.architecture import Architecture, GenerationDefaults, preset_of

R = TypeVar("R", bound=GenerationRequest)

# The request fields that follow the architecture, in GenerationDefaults' names.
FOLLOWS_ARCHITECTURE = (
    "width",
    "height",
    "steps",
    "cfg_scale",
    "sampler",
    "scheduler",
    "distilled_guidance",
    "video_frames",
    "flow_shift",
)

# The contract's defaults: what an omitted field is when the architecture is unknown.
IMAGE_DEFAULTS = GenerationDefaults(512, 512, 20, 7.0, "euler_a", scheduler="discrete", distilled_guidance=3.5)
VIDEO_DEFAULTS = GenerationDefaults(
    832, 480, 30, 6.0, "euler", scheduler="discrete", distilled_guidance=3.5, video_frames=33, flow_shift=3.0
)


class RequestDefaults(msgspec.Struct):
    """GET /defaults: each generation request with every field the client may leave out at its default, the
    architecture-following ones as the contract's (an architecture's own are its preset's, in /architectures)."""

    txt2img: Txt2ImgRequest
    img2img: Img2ImgRequest
    txt2vid: Txt2VidRequest


def request_defaults() -> RequestDefaults:
    return RequestDefaults(
        txt2img=resolve_defaults(Txt2ImgRequest(prompt=""), None)[0],
        img2img=resolve_defaults(Img2ImgRequest(prompt=""), None)[0],
        txt2vid=resolve_defaults(Txt2VidRequest(prompt=""), None)[0],
    )


def contract_defaults(request: GenerationRequest) -> GenerationDefaults:
    return VIDEO_DEFAULTS if isinstance(request, Txt2VidRequest) else IMAGE_DEFAULTS


def default_size(architecture: Architecture | None) -> tuple[int, int]:
    """What an omitted width and height become on this architecture (OpenAI's `size: auto`)."""
    preset = preset_of(architecture)
    defaults = preset.defaults if preset else IMAGE_DEFAULTS
    return defaults.width, defaults.height


def _load_defaults(flow_shift: float | None) -> dict[str, object]:
    """The load options sd.cpp applies per generation, as defaults (a flow shift at or below 0 means auto)."""
    if flow_shift is None or not math.isfinite(flow_shift) or flow_shift <= 0:
        return {}
    return {"flow_shift": flow_shift}


def resolve_defaults(
    request: R, architecture: Architecture | None, load_flow_shift: float | None = None
) -> tuple[R, dict[str, str]]:
    """The request with every omitted architecture-following field filled, and field -> where it came from."""
    preset = preset_of(architecture)
    layers: list[tuple[str, dict[str, object]]] = [("load options", _load_defaults(load_flow_shift))]
    if preset is not None and architecture is not None:
        layers.append((f"architecture {architecture.family}", msgspec.structs.asdict(preset.defaults)))
    layers.append(("contract", msgspec.structs.asdict(contract_defaults(request))))
    filled: dict[str, object] = {}
    sources: dict[str, str] = {}
    for field in FOLLOWS_ARCHITECTURE:
        if not hasattr(request, field) or getattr(request, field) is not None:
            continue
        found = next(((source, layer[field]) for source, layer in layers if layer.get(field) is not None), None)
        if found is not None:
            sources[field], filled[field] = found
    return msgspec.structs.replace(request, **filled), sources
