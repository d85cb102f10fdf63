"""Which model is loaded, with which components and options, and the load / unload life cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import msgspec

from orchestrator.errors import BadRequest, NotFound, ServiceError
from orchestrator.events import EventBus
from orchestrator.library import ModelLibrary
from orchestrator.schemas import COMPONENT_FIELDS, LoadedComponents, LoadModelRequest

# Load-request field -> model type whose folder holds it.
COMPONENT_TYPES: dict[str, str] = {
    "vae": "vae",
    "clip_l": "clip",
    "clip_g": "clip",
    "clip_vision": "clip",
    "t5xxl": "t5",
    "controlnet": "controlnet",
    "llm": "llm",
    "llm_vision": "llm",
    "taesd": "taesd",
    "high_noise_diffusion_model": "diffusion",
    "photo_maker": "checkpoint",
}


class LoadFailed(ServiceError):
    status = 500


class LoadedModel(msgspec.Struct):
    request: LoadModelRequest
    # Flag source for runners.options.CONTEXT_FLAGS: role -> file path, plus the load options.
    context: dict[str, Any]
    architecture: str | None = None

    @property
    def name(self) -> str:
        return self.request.model_name or ""

    def components(self) -> LoadedComponents:
        return LoadedComponents(**{field: getattr(self.request, field) for field in COMPONENT_FIELDS})


class ModelManager:
    def __init__(self, library: ModelLibrary, bus: EventBus) -> None:
        self.library = library
        self.bus = bus
        self.loaded: LoadedModel | None = None
        self.loading_name: str | None = None
        self.last_error: str | None = None
        self._lock = anyio.Lock()

    def resolve_context(self, request: LoadModelRequest) -> dict[str, Any]:
        """Every named file resolved safely in its folder; BadRequest / NotFound name the field."""
        if not request.model_name:
            raise BadRequest("model_name is required")
        try:
            main = self.library.resolve(request.model_type, request.model_name, "model_name")
        except NotFound:
            raise LoadFailed(f"Internal error: Model not found: {request.model_name}") from None
        context: dict[str, Any] = {request.model_type: str(main)}
        for field, model_type in COMPONENT_TYPES.items():
            name = getattr(request, field)
            if name:
                try:
                    context[field] = str(self.library.resolve(model_type, name, field))
                except NotFound:
                    raise BadRequest(f"{field}: model not found in {model_type} folder: {name}") from None
        context.update(msgspec.to_builtins(request.options))
        context["lora_dir"] = str(self.library.folder_of("lora"))
        embeddings = self.library.folder_of("embedding")
        if embeddings.is_dir():
            context["embeddings_dir"] = str(embeddings)
        return context

    async def load(self, request: LoadModelRequest) -> LoadedModel:
        async with self._lock:
            self.loading_name = request.model_name
            self.bus.publish("model_loading_progress", {"model_name": request.model_name, "stage": "resolving"})
            try:
                context = await anyio.to_thread.run_sync(self.resolve_context, request)
                loaded = LoadedModel(request=request, context=context)
            except ServiceError as exc:
                self.last_error = exc.message
                raise
            finally:
                self.loading_name = None
            self.loaded, self.last_error = loaded, None
            self.bus.publish("model_loaded", {"model_name": loaded.name, "model_type": request.model_type})
            return loaded

    async def unload(self) -> None:
        async with self._lock:
            if self.loaded is not None:
                name, self.loaded = self.loaded.name, None
                self.bus.publish("model_unloaded", {"model_name": name})

    def require_loaded(self) -> LoadedModel:
        if self.loaded is None:
            raise BadRequest("No model loaded")
        return self.loaded

    def model_path(self) -> Path | None:
        if self.loaded is None:
            return None
        return Path(self.loaded.context[self.loaded.request.model_type])
