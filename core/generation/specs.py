"""Job specs of the generation types: the request as understood (seed resolved, input images moved to files in
the job folder) is what runs, after a restart too."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest
from core.jobs.inputs import InputFiles, params_struct, read_old_image_fields, request_params
from core.jobs.schemas import JobParams, JobResult, JobSpecBase

Txt2ImgParams = params_struct(Txt2ImgRequest, "Txt2ImgParams")
Img2ImgParams = params_struct(Img2ImgRequest, "Img2ImgParams")
Txt2VidParams = params_struct(Txt2VidRequest, "Txt2VidParams")


class GenerationJob(JobSpecBase):
    request: GenerationRequest  # omitted architecture-following fields already filled (core.generation.defaults)
    inputs: InputFiles = msgspec.field(default_factory=InputFiles)
    default_sources: dict[str, str] = {}  # field the client omitted -> where its value came from

    def params(self) -> JobParams:
        return request_params(self.request, self.inputs, self.params_type, default_sources=dict(self.default_sources))

    @classmethod
    def read_old_params(cls, fields: dict[str, Any]) -> tuple[JobParams, JobResult | None]:
        return super().read_old_params(read_old_image_fields(fields))

    @property
    def total_images(self) -> int:
        return self.request.batch_count

    @property
    def wanted_model(self) -> str | None:
        return self.request.model

    @property
    def priority(self) -> int:
        return self.request.priority

    @property
    def prompt(self) -> str:
        return self.request.prompt


class Txt2ImgJob(GenerationJob, tag="txt2img"):
    params_type: ClassVar[type[JobParams]] = Txt2ImgParams
    request: Txt2ImgRequest


class Img2ImgJob(GenerationJob, tag="img2img"):
    params_type: ClassVar[type[JobParams]] = Img2ImgParams
    request: Img2ImgRequest


class Txt2VidJob(GenerationJob, tag="txt2vid"):
    params_type: ClassVar[type[JobParams]] = Txt2VidParams
    request: Txt2VidRequest


GENERATION_JOBS: dict[str, type[GenerationJob]] = {"txt2img": Txt2ImgJob, "img2img": Img2ImgJob, "txt2vid": Txt2VidJob}
