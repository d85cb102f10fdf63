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
from core.jobs.idempotency import IdempotentSubmits
from core.jobs.schemas import Job, JobAccepted
from core.models.schemas import LoadModelRequest
from core.upscale.schemas import UpscaleRequest


class NamedModel(Protocol):
    @property
    def name(self) -> str: ...


class ModelChoice(Protocol):
    async def select(self, name: str, configured: Mapping[str, LoadModelRequest], field: str = "model") -> object: ...

    async def model_named(self, name: str | None, field: str = "model") -> NamedModel: ...


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
    def idempotency(self) -> IdempotentSubmits: ...

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
        """Load the named model on every worker (waiting for the running jobs) unless it is the loaded one; None
        keeps it. For a setting that changes the default model (A1111's POST /options); a request that names a model
        for itself names it in its job instead (`job_model`)."""
        if name:
            await self.service.models.select(name, self.service.settings.models, field)

    async def job_model(self, name: str | None, field: str = "model") -> str | None:
        """The model a request names for its own job, checked (a 400 naming `field` when unknown or missing a
        component) but not loaded: the worker that runs the job loads it beside its resident models, the others go
        on with theirs. None: the loaded model."""
        return (await self.service.models.model_named(name, field)).name if name else None

    async def submit(
        self,
        job_type: str,
        request: GenerationRequest | UpscaleRequest,
        idempotency_key: str | None = None,
        route: str = "",
    ) -> JobAccepted:
        """Queue the job; a retry with the client's Idempotency-Key on the same route gets the first one's job."""

        async def submit() -> JobAccepted:
            if isinstance(request, UpscaleRequest):
                return await self.service.upscale.submit(request)
            return await self.service.generation.submit(job_type, request)

        return await self.service.idempotency.submit(idempotency_key, route, request, submit, JobAccepted)

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
