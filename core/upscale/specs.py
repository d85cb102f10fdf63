"""The upscale job's spec: the request as understood (the input image saved in the job folder, the passes that
reach the asked factor with the loaded upscaler)."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from core.jobs.inputs import InputFiles, params_struct, read_old_image_fields, request_params
from core.jobs.schemas import JobParams, JobResult, JobSpecBase
from core.upscale.schemas import UpscaleRequest

UpscaleParams = params_struct(UpscaleRequest, "UpscaleParams", default_sources=False)


class UpscaleJob(JobSpecBase, tag="upscale"):
    params_type: ClassVar[type[JobParams]] = UpscaleParams
    request: UpscaleRequest
    passes: int  # ESRGAN passes that reach upscale_factor
    inputs: InputFiles = msgspec.field(default_factory=InputFiles)

    def params(self) -> JobParams:
        return request_params(self.request, self.inputs, self.params_type)

    @property
    def priority(self) -> int:
        return self.request.priority

    @classmethod
    def read_old_params(cls, fields: dict[str, Any]) -> tuple[JobParams, JobResult | None]:
        return super().read_old_params(read_old_image_fields(fields))
