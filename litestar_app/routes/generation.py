from __future__ import annotations

from litestar import Request, post

from litestar_app.body import decode_body
from orchestrator.schemas import JobAccepted, Txt2ImgRequest
from orchestrator.service import Service


@post("/txt2img", status_code=202)
async def txt2img(request: Request, service: Service) -> JobAccepted:
    body = await decode_body(request, Txt2ImgRequest)
    return await service.generation.submit("txt2img", body)


ROUTES = [txt2img]
