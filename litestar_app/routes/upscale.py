"""The routes of core.upscale: loading and unloading the ESRGAN upscaler (/upscaler/*) and POST /upscale (each
accepted job is committed before its 202)."""

from __future__ import annotations

from litestar import post

from core.jobs.schemas import JobAccepted
from core.request_types import SuccessMessage
from core.service import Service
from core.upscale.schemas import UpscaleRequest, UpscalerLoaded, UpscalerLoadRequest


@post("/upscaler/load", status_code=200, summary="Load an ESRGAN upscaler")
async def load_upscaler(data: UpscalerLoadRequest, service: Service) -> UpscalerLoaded:
    loaded = await service.upscaler.load(data)
    return UpscalerLoaded(True, "Upscaler loaded successfully", loaded.request.model_name or "", loaded.scale)


@post("/upscaler/unload", status_code=200, summary="Unload the upscaler")
async def unload_upscaler(service: Service) -> SuccessMessage:
    await service.upscaler.unload()
    return SuccessMessage(True, "Upscaler unloaded")


@post("/upscale", status_code=202, summary="Queue an upscale job with the loaded upscaler")
async def upscale(data: UpscaleRequest, service: Service) -> JobAccepted:
    return await service.upscale.submit(data)


ROUTES = [load_upscaler, unload_upscaler, upscale]
