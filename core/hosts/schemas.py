"""What travels between hosts: a Procrastinate job's argument (`RemoteJob`), the notices on our NOTIFY channel
(`Notice`, each well under PostgreSQL's 8000-byte payload limit: a preview travels as the row that holds it), and a
host's row in the registry."""

from __future__ import annotations

import hashlib

import msgspec

from core.jobs.schemas import JobStatus
from core.models.schemas import LoadModelRequest
from core.workers.schemas import WorkerInfo

TASK = "sdcpp.generate"  # the Procrastinate task every generation job runs as
CHANNEL = "sdcpp_hosts"  # our NOTIFY channel
# Procrastinate listens on `procrastinate_queue_v1#<queue>`: PostgreSQL cuts identifiers at 63 bytes.
MAX_QUEUE = 63 - len("procrastinate_queue_v1#")


def queue_for(model: str) -> str:
    """The Procrastinate queue of jobs that need the model (a main model file name): only hosts that have the
    file listen on it. A name too long for a channel is shortened with a digest."""
    name = f"model:{model}"
    if len(name.encode()) <= MAX_QUEUE:
        return name
    digest = hashlib.sha256(model.encode()).hexdigest()[:12]
    return f"model:{model.encode()[: MAX_QUEUE - 20].decode(errors='ignore')}~{digest}"


class RemoteJob(msgspec.Struct, frozen=True):
    """Everything a worker host needs to run a job, carried in the Procrastinate job's arguments (workers hosts
    keep no job store): the spec as the store keeps it, the model it runs on, and how that model is loaded."""

    job_id: str
    spec: str  # the spec's JSON (core/job_types.py JOB_CODEC reads it)
    model: str
    load: LoadModelRequest


class Started(msgspec.Struct, tag="started"):
    job_id: str
    attempt: int
    worker: str  # "<host>/<worker>"


class Stepped(msgspec.Struct, tag="step"):
    job_id: str
    attempt: int
    image_index: int
    step: int
    total: int
    sent: float  # time.time() on the worker host when it read the step (the bench measures the latency)


class PreviewPosted(msgspec.Struct, tag="preview"):
    job_id: str
    row: int  # sdcpp_hosts.previews.id


class Ended(msgspec.Struct, tag="ended"):
    job_id: str
    attempt: int  # its outcome is the row (job_id, attempt) of sdcpp_hosts.outcomes


class HostChanged(msgspec.Struct, tag="host"):
    name: str


class LoadAsked(msgspec.Struct, tag="load"):
    """An API host loaded a model (POST /models/load): every worker host loads it on its workers."""

    request: LoadModelRequest


Notice = Started | Stepped | PreviewPosted | Ended | HostChanged | LoadAsked


class Outcome(msgspec.Struct):
    """How one attempt of a job ended, as the worker host wrote it."""

    job_id: str
    attempt: int
    status: JobStatus
    outputs: list[str] = []
    error: str | None = None
    worker: str | None = None


class HostRow(msgspec.Struct):
    """A host in the registry: its workers as its own /health shows them, refreshed with each heartbeat."""

    name: str
    state: str  # "up", "stopped", "no database" (written when it comes back)
    workers: list[WorkerInfo]
    models: list[str]  # the main model files it has (it takes their jobs)
    age_s: float = 0.0  # seconds since its last heartbeat (read time)
