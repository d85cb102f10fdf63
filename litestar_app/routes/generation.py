from __future__ import annotations

from litestar import Request, post

from litestar_app.body import decode_body
from orchestrator.schemas import ConvertAccepted, ConvertRequest, Img2ImgRequest, JobAccepted, Txt2ImgRequest, Txt2VidRequest, UpscaleRequest
from orchestrator.service import Service


@post("/txt2img", status_code=202)
async def txt2img(request: Request, service: Service) -> JobAccepted:
    return await service.generation.submit("txt2img", await decode_body(request, Txt2ImgRequest))


@post("/img2img", status_code=202)
async def img2img(request: Request, service: Service) -> JobAccepted:
    return await service.generation.submit("img2img", await decode_body(request, Img2ImgRequest))


@post("/txt2vid", status_code=202)
async def txt2vid(request: Request, service: Service) -> JobAccepted:
    return await service.generation.submit("txt2vid", await decode_body(request, Txt2VidRequest))


@post("/upscale", status_code=202)
async def upscale(request: Request, service: Service) -> JobAccepted:
    return await service.generation.submit_upscale(await decode_body(request, UpscaleRequest))


@post("/convert", status_code=202)
async def convert(request: Request, service: Service) -> ConvertAccepted:
    return await service.conversion.submit(await decode_body(request, ConvertRequest))


ROUTES = [txt2img, img2img, txt2vid, upscale, convert]
