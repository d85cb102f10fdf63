"""POST /txt2img, /img2img, /txt2vid, /upscale and /convert: each accepted job is committed before its 202."""

from __future__ import annotations

from litestar import post

from core.generation.requests import Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest, UpscaleRequest
from core.jobs.schemas import JobAccepted
from core.models.schemas import ConvertAccepted, ConvertRequest
from core.service import Service


@post("/txt2img", status_code=202, summary="Queue a text-to-image job")
async def txt2img(data: Txt2ImgRequest, service: Service) -> JobAccepted:
    return await service.generation.submit("txt2img", data)


@post("/img2img", status_code=202, summary="Queue an image-to-image (or inpainting) job")
async def img2img(data: Img2ImgRequest, service: Service) -> JobAccepted:
    return await service.generation.submit("img2img", data)


@post("/txt2vid", status_code=202, summary="Queue a text-to-video job (needs a video model)")
async def txt2vid(data: Txt2VidRequest, service: Service) -> JobAccepted:
    return await service.generation.submit("txt2vid", data)


@post("/upscale", status_code=202, summary="Queue an upscale job with the loaded upscaler")
async def upscale(data: UpscaleRequest, service: Service) -> JobAccepted:
    return await service.generation.submit_upscale(data)


@post("/convert", status_code=202, summary="Queue a model conversion (sd-cli -M convert)")
async def convert(data: ConvertRequest, service: Service) -> ConvertAccepted:
    return await service.conversion.submit(data)


ROUTES = [txt2img, img2img, txt2vid, upscale, convert]
