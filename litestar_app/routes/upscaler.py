from __future__ import annotations

from litestar import post

from core.models.schemas import UpscalerLoaded, UpscalerLoadRequest
from core.request_types import SuccessMessage
from core.service import Service


@post("/upscaler/load", status_code=200, summary="Load an ESRGAN upscaler")
async def load_upscaler(data: UpscalerLoadRequest, service: Service) -> UpscalerLoaded:
    loaded = await service.upscaler.load(data)
    return UpscalerLoaded(True, "Upscaler loaded successfully", loaded.request.model_name or "", loaded.scale)


@post("/upscaler/unload", status_code=200, summary="Unload the upscaler")
async def unload_upscaler(service: Service) -> SuccessMessage:
    await service.upscaler.unload()
    return SuccessMessage(True, "Upscaler unloaded")


ROUTES = [load_upscaler, unload_upscaler]
