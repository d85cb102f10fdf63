"""The component models a main model may be loaded with: one row per field of the load request, read everywhere.

The load request's component fields, `loaded_components` of /health and /models/load, the manager's file
resolution and the web UI's load form (through GET /models/types) all come from `COMPONENTS`; the tests check
the explicit structs (`LoadModelRequest`, `LoadedComponents`) and the runners' context flags against it.
"""

from __future__ import annotations

import msgspec


class Component(msgspec.Struct, frozen=True):
    field: str  # the load request's field, and the file's role in the binaries' context options
    model_type: str  # the model type (core.models.types) whose folder holds the file
    # Named in `loaded_components` (the contract lists these seven); the others are loaded but not reported.
    reported: bool


# In the load request's field order.
COMPONENTS: tuple[Component, ...] = (
    Component("vae", "vae", reported=True),
    Component("clip_l", "clip", reported=True),
    Component("clip_g", "clip", reported=True),
    Component("clip_vision", "clip", reported=False),
    Component("t5xxl", "t5", reported=True),
    Component("controlnet", "controlnet", reported=True),
    Component("llm", "llm", reported=True),
    Component("llm_vision", "llm", reported=True),
    Component("taesd", "taesd", reported=False),
    Component("high_noise_diffusion_model", "diffusion", reported=False),
    Component("photo_maker", "checkpoint", reported=False),
)
REPORTED_COMPONENTS: tuple[str, ...] = tuple(component.field for component in COMPONENTS if component.reported)
