from __future__ import annotations

import msgspec
from litestar import get

from core.models.schemas import HealthResponse
from core.service import Service


@get("/health", sync_to_thread=False, summary="Server, model and upscaler state")
def health(service: Service) -> HealthResponse:
    models = service.models
    loaded = models.loaded
    upscaler = service.upscaler.loaded
    return HealthResponse(
        status="ok",
        model_loaded=loaded is not None,
        model_loading=models.loading_name is not None,
        loading_model_name=models.loading_name,
        last_error=models.last_error,
        model_name=loaded.name if loaded else None,
        model_type=loaded.request.model_type if loaded else None,
        model_architecture=loaded.architecture.variant if loaded and loaded.architecture else None,
        loaded_components=msgspec.structs.asdict(loaded.components()) if loaded else {},
        upscaler_loaded=upscaler is not None,
        upscaler_name=upscaler.request.model_name if upscaler else None,
    )


ROUTES = [health]
