from __future__ import annotations

from litestar import Response, get, put

from core.errors import NotFound
from core.generation.previews import PreviewSettings, PreviewSettingsUpdate, PreviewSettingsUpdated
from core.service import Service


@get("/preview/settings", sync_to_thread=False, summary="Live preview settings")
def get_settings(service: Service) -> PreviewSettings:
    return service.previews.settings


@put("/preview/settings", summary="Change live preview settings (persisted)")
async def put_settings(data: PreviewSettingsUpdate, service: Service) -> PreviewSettingsUpdated:
    return PreviewSettingsUpdated(True, await service.previews.update(data))


@get("/queue/{job_id:str}/preview", summary="The latest preview of a running job (JPEG)",
     media_type="image/jpeg")
async def job_preview(service: Service, job_id: str) -> Response[bytes]:
    """The latest preview of a running job, for clients without WebSocket."""
    await service.queue.get(job_id)  # 404 for an unknown job
    jpeg = service.previews.latest.get(job_id)
    if jpeg is None:
        raise NotFound("No preview for this job (not running, previews off, or no step yet)")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


ROUTES = [get_settings, put_settings, job_preview]
