from __future__ import annotations

from typing import Any

from litestar import Request, post

from litestar_app.body import decode_body
from orchestrator.schemas import SuccessMessage
from orchestrator.service import Service
from orchestrator.upscaler import UpscalerLoadRequest


@post("/upscaler/load", status_code=200)
async def load_upscaler(request: Request, service: Service) -> dict[str, Any]:
    body = await decode_body(request, UpscalerLoadRequest)
    loaded = await service.upscaler.load(body)
    await service.queue.persist()
    return {"success": True, "message": "Upscaler loaded successfully", "model_name": body.model_name,
            "upscale_factor": loaded.scale}


@post("/upscaler/unload", status_code=200)
async def unload_upscaler(service: Service) -> SuccessMessage:
    service.upscaler.unload()
    await service.queue.persist()
    return SuccessMessage(True, "Upscaler unloaded")


ROUTES = [load_upscaler, unload_upscaler]
