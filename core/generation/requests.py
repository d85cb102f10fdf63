"""Request bodies of the generation endpoints (/txt2img, /img2img, /txt2vid).

Defaults are declared here once: the job spec stores the request as understood (seed resolved, images moved
to files, omitted architecture-following fields filled by `core.generation.defaults`), so what runs, what
`GET /queue/{id}` shows and what config.json records all come from these.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from core.request_types import (
    INT_MAX,
    Base64Image,
    CallbackUrl,
    CInt,
    NonNegFloat,
    NonNegInt,
    PosInt,
    Priority,
    Request,
    Unit,
)
from core.upscale.schemas import Passes

# sd.cpp's seed is an int64; below 0 means random (resolved when the job is accepted).
FOLLOWS = (
    "follows the architecture: when omitted, the loaded architecture's generationDefaults "
    "(GET /architectures), else the contract's default"
)
ArchPosInt = Annotated[int, Meta(ge=1, le=INT_MAX, description=FOLLOWS)] | None
ArchNonNegFloat = Annotated[float, Meta(ge=0.0, description=FOLLOWS)] | None
ArchName = Annotated[str, Meta(description=FOLLOWS)] | None
Seed = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1, description="below 0: random, resolved when the job is accepted")]


class GenerationRequest(Request):
    """Fields shared by txt2img, img2img and txt2vid (defaults are txt2img's)."""

    prompt: str
    negative_prompt: str = ""
    width: ArchPosInt = None
    height: ArchPosInt = None
    steps: ArchPosInt = None
    cfg_scale: ArchNonNegFloat = None
    distilled_guidance: ArchNonNegFloat = None
    eta: NonNegFloat = 0.0
    shifted_timestep: Annotated[int, Meta(ge=0, le=1000)] = 0
    seed: Seed = -1
    sampler: ArchName = None
    scheduler: ArchName = None
    batch_count: PosInt = 1
    clip_skip: CInt = -1
    slg_scale: NonNegFloat = 0.0
    skip_layers: Annotated[list[NonNegInt], Meta(max_length=128)] = msgspec.field(default_factory=lambda: [7, 8, 9])
    slg_start: Unit = 0.01
    slg_end: Unit = 0.2
    custom_sigmas: Annotated[list[float], Meta(max_length=1000)] = []
    ref_images: Annotated[list[Base64Image], Meta(max_length=16)] = []
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
    pm_id_images: Annotated[list[Base64Image], Meta(max_length=64)] = []
    pm_id_embed_path: str = ""  # a file in the embeddings folder
    pm_style_strength: NonNegFloat = 20.0
    upscale: bool = False
    upscale_repeats: Passes = 1
    upscale_auto_unload: bool = True
    # Not in the spec: live previews for this job. None follows the preview settings and previews only
    # while a WebSocket client watches the job; true forces them (for clients polling
    # /queue/{id}/preview); false never. Previewed jobs run on sd-cli (sd-server has no previews).
    preview: bool | None = None
    # Not in the spec: how many previews to spread evenly over each image's sampling steps, in place of one every
    # `interval` steps of the preview settings (None). The OpenAI face asks for its `partial_images`: the worker
    # decodes no preview that nobody will see, so streaming costs little more than not streaming.
    preview_count: Annotated[int, Meta(ge=1, le=100)] | None = None
    # Not in the spec: the model to run on, by file name (with or without extension) or load-profile name, as the
    # AUTOMATIC1111 and OpenAI faces name it. The job goes first to a worker that holds it; else a worker loads it
    # (its load profile, else the config's [models] table, else the file alone) in place of its model. None: the
    # loaded model.
    model: str | None = None
    # Not in the spec: higher runs first (-10..10); equal priorities share the workers fairly between API keys,
    # FIFO within one (README "Priority and fair sharing"). The compat faces leave it at 0.
    priority: Priority = 0
    callback_url: CallbackUrl | None = None  # not in the spec: our webhook when the job ends (README "Webhooks")


class Txt2ImgRequest(GenerationRequest):
    pass


class Img2ImgRequest(GenerationRequest):
    init_image_base64: Base64Image = ""
    strength: Unit = 0.75
    img_cfg_scale: float = -1.0
    mask_image_base64: str | None = None


class Txt2VidRequest(GenerationRequest):
    video_frames: ArchPosInt = None
    fps: PosInt = 16
    # At or below 0: sd.cpp's automatic shift for the model (0 itself would zero every sigma).
    flow_shift: Annotated[float, Meta(description=FOLLOWS + "; a load-time flow_shift comes first")] | None = None
    init_image_base64: str | None = None
    end_image_base64: str | None = None
    strength: Unit = 0.75
    control_frames: Annotated[list[Base64Image], Meta(max_length=1000)] = []
    high_noise_steps: CInt = -1
    high_noise_cfg_scale: NonNegFloat = 7.0
    high_noise_sampler: str = ""
    high_noise_distilled_guidance: NonNegFloat = 3.5
    high_noise_slg_scale: NonNegFloat = 0.0
    high_noise_skip_layers: Annotated[list[NonNegInt], Meta(max_length=128)] = msgspec.field(
        default_factory=lambda: [7, 8, 9]
    )
    high_noise_slg_start: Unit = 0.01
    high_noise_slg_end: Unit = 0.2
    moe_boundary: Unit = 0.875
    vace_strength: NonNegFloat = 1.0
