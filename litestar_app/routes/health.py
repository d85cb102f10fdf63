from __future__ import annotations

from litestar import get

from orchestrator.schemas import HealthResponse
from orchestrator.service import Service


@get("/health", sync_to_thread=False)
def health(service: Service) -> HealthResponse:
    models = service.models
    loaded = models.loaded
    return HealthResponse(
        status="ok",
        model_loaded=loaded is not None,
        model_loading=models.loading_name is not None,
        loading_model_name=models.loading_name,
        last_error=models.last_error,
        model_name=loaded.name if loaded else None,
        model_type=loaded.request.model_type if loaded else None,
        model_architecture=loaded.architecture.variant if loaded and loaded.architecture else None,
        loaded_components=loaded.components() if loaded else {},
        upscaler_loaded=service.upscaler.loaded is not None,
        upscaler_name=service.upscaler.loaded.request.model_name if service.upscaler.loaded else None,
    )


ROUTES = [health]
