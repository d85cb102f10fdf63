from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, put

from litestar_app.body import decode_body
from orchestrator.errors import NotFound
from orchestrator.previews import PreviewSettings, PreviewSettingsUpdate
from orchestrator.service import Service


@get("/preview/settings", sync_to_thread=False)
def get_settings(service: Service) -> PreviewSettings:
    return service.previews.settings


@put("/preview/settings")
async def put_settings(request: Request, service: Service) -> dict[str, Any]:
    update = await decode_body(request, PreviewSettingsUpdate)
    return {"success": True, "settings": await service.previews.update(update)}


@get("/queue/{job_id:str}/preview", sync_to_thread=False)
def job_preview(service: Service, job_id: str) -> Response[bytes]:
    """The latest preview of a running job, for clients without WebSocket."""
    service.queue.get(job_id)  # 404 for an unknown job
    jpeg = service.previews.latest.get(job_id)
    if jpeg is None:
        raise NotFound("No preview for this job (not running, previews off, or no step yet)")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


ROUTES = [get_settings, put_settings, job_preview]
