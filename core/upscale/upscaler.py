"""The loaded ESRGAN upscaler. sd-server has no standalone upscaling, so "loaded" means resolved, inspected
(scale from its tensor names, as sd.cpp's esrgan.hpp infers it) and remembered; jobs run sd-cli -M upscale."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import msgspec

from core.errors import BadRequest, NotFound
from core.events.bus import EventBus
from core.events.types import UpscalerLoaded, UpscalerUnloaded
from core.models.architecture import UnreadableModel, tensor_table
from core.models.library import ModelLibrary
from core.stored_values import ValueStore
from core.upscale.schemas import UpscalerLoadRequest

_OLD_INDEX = re.compile(r"^model\.(\d+)\.")
LOADED_UPSCALER_KEY = "loaded_upscaler"  # the load request, restored after a restart


class LoadedUpscaler(msgspec.Struct):
    request: UpscalerLoadRequest
    path: str
    scale: int


def esrgan_scale(table: dict[str, list[int]]) -> int:
    """sd.cpp's rule: old naming (model.0.weight) scales by the highest model.K index, new naming by
    the presence of conv_up2 (x4) / conv_up1 (x2)."""
    if "model.0.weight" in table:
        highest = max((int(m[1]) for name in table if (m := _OLD_INDEX.match(name))), default=0)
        return 1 if highest <= 4 else 2 if highest <= 7 else 4
    if "conv_up2.weight" in table:
        return 4
    return 2 if "conv_up1.weight" in table else 1


def inspect_upscaler(path: Path) -> int:
    try:
        table = tensor_table(path)
    except UnreadableModel as exc:
        raise BadRequest(f"model_name: cannot read the upscaler: {exc}") from None
    if "conv_first.weight" not in table and "model.0.weight" not in table:
        raise BadRequest("model_name: not an ESRGAN/RRDBNet model (no conv_first or model.0 tensors)")
    return esrgan_scale(table)


class UpscalerManager:
    def __init__(self, library: ModelLibrary, bus: EventBus, store: ValueStore) -> None:
        self.library, self.bus, self.store = library, bus, store
        self.loaded: LoadedUpscaler | None = None

    async def restore(self) -> UpscalerLoadRequest | None:
        return await self.store.value(LOADED_UPSCALER_KEY, UpscalerLoadRequest)

    async def load(self, request: UpscalerLoadRequest) -> LoadedUpscaler:
        if not request.model_name:
            raise BadRequest("model_name is required")
        try:
            path = await anyio.to_thread.run_sync(self.library.resolve, "esrgan", request.model_name, "model_name")
        except NotFound:
            raise NotFound(f"Model not found: {request.model_name}") from None
        scale = await anyio.to_thread.run_sync(inspect_upscaler, path)
        self.loaded = LoadedUpscaler(request, str(path), scale)
        await self.store.set_value(LOADED_UPSCALER_KEY, request)
        self.bus.publish(UpscalerLoaded(request.model_name, scale))
        return self.loaded

    async def unload(self) -> None:
        if self.loaded is not None:
            name, self.loaded = self.loaded.request.model_name, None
            await self.store.set_value(LOADED_UPSCALER_KEY, None)
            self.bus.publish(UpscalerUnloaded(name))

    def require_loaded(self) -> LoadedUpscaler:
        if self.loaded is None:
            raise BadRequest("No upscaler loaded: POST /upscaler/load first")
        return self.loaded
