"""One struct per event type. The bus wraps each in `{"event": <name>, "timestamp", "data": <struct>}`."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from core.jobs.schemas import JobStatus, JobType


class EventData(msgspec.Struct):
    name: ClassVar[str]

    @property
    def job_key(self) -> str | None:
        """Whose event this is, for `?job_id=` subscriptions and coalescing (None: a server-wide event)."""
        return None


class JobEvent(EventData):
    job_id: str

    @property
    def job_key(self) -> str | None:
        return self.job_id


class JobAdded(JobEvent):
    name = "job_added"
    type: JobType
    position: int


class JobStatusChanged(JobEvent):
    name = "job_status_changed"
    status: JobStatus
    previous_status: JobStatus
    outputs: list[str] = msgspec.field(default_factory=list)
    worker: str | None = None  # the worker that runs the job (None: not handed to one yet, or not a generation)


class JobProgress(JobEvent):
    name = "job_progress"
    step: int
    total_steps: int
    current_image: int
    total_images: int
    percentage: float
    worker: str | None = None


class JobTransferProgress(JobEvent):
    """A transfer job's (a download's) progress in bytes; `job_progress` stays for sampling steps."""

    name = "job_transfer_progress"
    bytes_done: int
    bytes_total: int | None  # None: the source did not announce a size
    percentage: float | None  # None while the size is unknown


class JobPreview(JobEvent, omit_defaults=True):
    name = "job_preview"
    step: int
    frame_count: int
    width: int
    height: int
    is_noisy: bool
    image: str  # data:image/jpeg;base64,...
    mode: str
    note: str | None = None  # e.g. why `tae` fell back to `proj`


class JobCancelled(JobEvent):
    name = "job_cancelled"


class ModelLoadingProgress(EventData, omit_defaults=True):
    name = "model_loading_progress"
    model_name: str | None
    message: str | None = None
    step: int | None = None
    total_steps: int | None = None
    percentage: float | None = None


class ModelLoaded(EventData):
    name = "model_loaded"
    model_name: str
    model_type: str
    model_architecture: str | None


class ModelUnloaded(EventData):
    name = "model_unloaded"
    model_name: str


class UpscalerLoaded(EventData):
    name = "upscaler_loaded"
    model_name: str
    upscale_factor: int


class UpscalerUnloaded(EventData):
    name = "upscaler_unloaded"
    model_name: str | None


class EventGap(EventData):
    """Sent to a client that reconnected with `since` too old to replay (or from before a restart): it missed events
    and should read what it needs again (GET /queue, /health). Its `seq` is where it stands now."""

    name = "gap"
    since: int
    oldest_seq: int  # the oldest number a reconnect can resume from now
    latest_seq: int
    reason: str


class ServerStatus(EventData):
    name = "server_status"
    pending_count: int
    processing_count: int
    completed_count: int
    failed_count: int
    total_count: int
    model_loaded: bool
    model_name: str | None
    model_loading: bool
    upscaler_loaded: bool
    uptime_seconds: float
