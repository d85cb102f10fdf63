"""Running a compatibility request as an ordinary job: choose the model by name, submit, wait, read the images
back. Shared by the AUTOMATIC1111 and OpenAI routes."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import anyio
from PIL import Image

from core.errors import ServiceError
from core.generation.requests import GenerationRequest
from core.jobs.schemas import Job, JobAccepted
from core.models.schemas import LoadModelRequest
from core.upscale.schemas import UpscaleRequest


class ModelChoice(Protocol):
    async def select(self, name: str, configured: Mapping[str, LoadModelRequest], field: str = "model") -> object: ...


class Submission(Protocol):
    async def submit(self, job_type: str, request: GenerationRequest) -> JobAccepted: ...


class UpscaleSubmission(Protocol):
    async def submit(self, request: UpscaleRequest) -> JobAccepted: ...


class LoadProfiles(Protocol):
    @property
    def models(self) -> Mapping[str, LoadModelRequest]:
        """How a model chosen by name is loaded ([models."<name>"] in the config)."""


class CompatBackend(Protocol):
    """What a compatibility run needs of the service: nothing else of it."""

    @property
    def models(self) -> ModelChoice: ...

    @property
    def generation(self) -> Submission: ...

    @property
    def upscale(self) -> UpscaleSubmission: ...

    @property
    def settings(self) -> LoadProfiles: ...

    @property
    def output_root(self) -> Path: ...


class JobDidNotComplete(ServiceError):
    """The job behind a waiting request failed or was cancelled: the request fails with its reason."""

    status = 500


class CompatRuns:
    def __init__(self, service: CompatBackend) -> None:
        self.service = service

    async def choose_model(self, name: str | None, field: str = "model") -> None:
        """Load the named model (waiting for the running job) unless it is the loaded one; None keeps it."""
        if name:
            await self.service.models.select(name, self.service.settings.models, field)

    async def submit(self, job_type: str, request: GenerationRequest | UpscaleRequest) -> JobAccepted:
        if isinstance(request, UpscaleRequest):
            return await self.service.upscale.submit(request)
        return await self.service.generation.submit(job_type, request)

    @staticmethod
    def require_completed(job: Job) -> Job:
        if job.status != "completed":
            raise JobDidNotComplete(f"job {job.job_id} {job.status}: {job.error or 'no reason given'}")
        return job

    async def images(self, job: Job) -> list[tuple[bytes, str]]:
        """(PNG bytes, sd.cpp's `parameters` text) of each image the job wrote, in order."""
        root = self.service.output_root
        paths = [root / output for output in job.outputs if output.endswith(".png")]
        return await anyio.to_thread.run_sync(lambda: [_read_png(path) for path in paths])

    @staticmethod
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")


def _read_png(path: Path) -> tuple[bytes, str]:
    data = path.read_bytes()
    with Image.open(path) as image:
        return data, str(image.info.get("parameters", ""))
