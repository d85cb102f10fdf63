from __future__ import annotations

from litestar import get

from core.models.schemas import HealthResponse
from core.service import Service


@get("/health", sync_to_thread=False, summary="Server, model and upscaler state")
def health(service: Service) -> HealthResponse:
    return service.health()


ROUTES = [health]
