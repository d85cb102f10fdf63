"""The job as clients see it (`GET /queue`, `GET /queue/{id}`), and the bases of every job type's spec, params and
result."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, cast

import msgspec
from msgspec import Meta

JobType = Literal["txt2img", "img2img", "txt2vid", "upscale", "convert", "download", "hash"]
JobStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
Lane = Literal["generation", "downloads"]
ACTIVE: frozenset[str] = frozenset({"pending", "processing"})
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class JobParams(msgspec.Struct):
    """Base of each job type's `params`: the request as understood (seed resolved, input images replaced by their
    saved files as {path, width, height}). Free-form by the contract; typed here, one struct per job type
    (`JobSpecBase.params_type`)."""


class JobResult(msgspec.Struct):
    """Base of what a job type reports besides its output files (the hash job's digest), in the job's `result`."""


PARAMS_DESCRIPTION = (
    "The request as understood: the seed resolved, omitted fields filled (default_sources says from "
    "where), each input image as the file it was saved to: {path (in the job's output folder), "
    "width, height}. One shape per job type."
)
RESULT_DESCRIPTION = "What a completed job found besides its outputs: the hash job's {sha256}."


ANONYMOUS = "anonymous"  # the key id of jobs submitted without an API key (a server without keys)


class JobSpecBase(msgspec.Struct, tag_field="type", kw_only=True):
    """What a job of one type needs to run, stored with the job (one subclass per type, tagged by `type`)."""

    # The id of the API key that submitted the job (never the key; "anonymous" without keys): the scheduler shares
    # the workers between keys (core/workers/pool.py FairOrder). Stored in the spec; keyword-only, so each type's
    # own fields keep their places.
    key_id: str = ANONYMOUS

    # Jobs run one at a time per lane: downloads (network-bound) never hold up generation.
    lane: ClassVar[Lane] = "generation"
    # What the store decodes this type's stored `params` and `result` as.
    params_type: ClassVar[type[JobParams]] = JobParams
    result_type: ClassVar[type[JobResult] | None] = None

    def params(self) -> JobParams:
        """The job's parameters as clients see them in `params` (the request as understood)."""
        raise NotImplementedError

    @classmethod
    def read_old_params(cls, fields: dict[str, Any]) -> tuple[JobParams, JobResult | None]:
        """Params stored by a version before typed params (a free-form dict), and the result it wrote into them.
        Fields this version no longer has are dropped."""
        known = {name: value for name, value in fields.items() if name in cls.params_type.__struct_fields__}
        return msgspec.convert(known, cls.params_type, strict=False), None

    @property
    def wanted_model(self) -> str | None:
        """The model the job runs on, where it names one: the scheduler prefers a worker that holds it."""
        return None

    @property
    def priority(self) -> int:
        """Higher goes first (the request's `priority` where the type has one)."""
        return 0

    @property
    def job_type(self) -> JobType:
        return cast(JobType, self.__struct_config__.tag)

    @property
    def total_images(self) -> int:
        return 1

    @property
    def prompt(self) -> str:
        """What `GET /queue?search=` matches."""
        return ""


class Progress(msgspec.Struct):
    step: int = 0
    total_steps: int = 0
    current_image: int = 0
    total_images: int = 1
    all_steps: int = 0
    current_all_steps: int = 0
    percentage: float = 0.0


class Job(msgspec.Struct, omit_defaults=True):
    job_id: str
    type: JobType
    status: JobStatus
    progress: Progress
    created_at: str
    outputs: list[str] = []
    # The request as understood, built by the job type's spec (its params_type).
    params: Annotated[JobParams, Meta(description=PARAMS_DESCRIPTION)] = msgspec.field(default_factory=JobParams)
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None
    result: Annotated[JobResult, Meta(description=RESULT_DESCRIPTION)] | None = None
    worker: str | None = None  # the worker ([[workers]] name) that runs or ran it


class JobAccepted(msgspec.Struct):
    job_id: str
    status: JobStatus
    position: int


class QueueListing(msgspec.Struct, omit_defaults=True):
    """Counts cover the whole history; `items` is the window the query asked for, oldest first."""

    pending_count: int
    processing_count: int
    completed_count: int
    failed_count: int
    total_count: int
    items: list[Job]
    cancelled_count: int = 0
    matched_count: int | None = None  # jobs matching the filters, when a filter or a limit was given


DEFAULT_FINISHED_LISTED = 100


class QueueQuery(msgspec.Struct, frozen=True):
    """`GET /queue` filters. Without `limit`: every pending and processing job plus the newest
    DEFAULT_FINISHED_LISTED finished ones. With `limit`: pages counted back from the newest matching job
    (`offset` skips that many newer ones); `limit=0` lists every matching job."""

    status: tuple[JobStatus, ...] = ()
    type: tuple[JobType, ...] = ()
    search: str = ""
    limit: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    offset: Annotated[int, Meta(ge=0, le=2**31 - 1)] = 0

    @property
    def filtered(self) -> bool:
        return bool(self.status or self.type or self.search)


class JobConfig(msgspec.Struct, omit_defaults=True):
    """config.json in the job folder: every effective parameter and what ran it."""

    job_id: str
    type: str
    params: JobParams
    engine: str
    model: str | None = None
    model_type: str | None = None
    model_architecture: str | None = None
    components: dict[str, str | None] | None = None
    upscaler: str | None = None
    scale_per_pass: int | None = None
    passes: int | None = None
    worker: str | None = None  # the [[workers]] name that ran it
