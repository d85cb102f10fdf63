"""A job with its spec (`JobRecord`), the narrow store the queue keeps them in (`JobStore`), and how a store reads
stored jobs back (`JobCodec`). The queue never knows the job types: the service composes them (core/job_types.py)
and hands the store a codec for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, Union

import msgspec

from core.jobs.schemas import Job, JobParams, JobResult, JobSpecBase, JobStatus, QueueQuery


class JobRecord(msgspec.Struct):
    """A job and what it needs to run. `spec` is None only for a finished job imported from an old state file
    whose spec could not be read (it is never run again)."""

    job: Job
    spec: JobSpecBase | None

    @property
    def prompt(self) -> str:
        """What `GET /queue?search=` matches: the spec's prompt, or for an imported job whose spec could not be read,
        the prompt its params show."""
        if self.spec is not None:
            return self.spec.prompt
        shown = getattr(self.job.params, "prompt", "")
        return shown if isinstance(shown, str) else ""


class JobStore(Protocol):
    async def add_job(self, record: JobRecord) -> None:
        """Commit a new job; returns once it is durable."""

    async def save_job(self, record: JobRecord) -> None:
        """Commit a job's changed status, outputs, error, result or spec."""

    async def job(self, job_id: str) -> JobRecord | None: ...

    async def active_jobs(self) -> list[JobRecord]:
        """Pending and processing jobs, oldest first."""

    async def list_jobs(self, query: QueueQuery) -> tuple[list[Job], int | None]:
        """The jobs the query selects, oldest first, and how many jobs match its filters (None when it has
        none: then every job matches)."""

    async def status_counts(self) -> dict[JobStatus, int]: ...

    async def prune_finished(self, keep: int, created_before: str | None) -> list[str]:
        """Delete finished jobs beyond the newest `keep` (0: no count limit) or created before the timestamp;
        returns their ids."""


_NULL = msgspec.Raw(b"null")  # a Raw compares equal only to a Raw


class _TypedParts(msgspec.Struct):
    """The parts of a stored job whose shape depends on its type, kept undecoded until the type is known."""

    type: str
    params: msgspec.Raw = msgspec.Raw(b"{}")
    result: msgspec.Raw = _NULL  # Raw takes any JSON value: null (or absent) when the job has no result


class JobCodec:
    """Reads stored specs and jobs of the given spec types (each tagged by its job type). A job's `params` and
    `result` decode as its type's structs; params stored by a version before typed params (free-form, images as
    "<WxH image: path>" strings) are read through the spec type's `read_old_params`."""

    def __init__(self, specs: Sequence[type[JobSpecBase]]) -> None:
        self.specs = {spec.__struct_config__.tag: spec for spec in specs}
        union: Any = Union[tuple(specs)]  # noqa: UP007 - a union built from a tuple of types
        self._spec = msgspec.json.Decoder(union)
        self._job = msgspec.json.Decoder(Job)  # params and result as their empty bases: filled from _TypedParts
        self._parts = msgspec.json.Decoder(_TypedParts)
        self._params = {tag: msgspec.json.Decoder(spec.params_type) for tag, spec in self.specs.items()}
        self._results = {
            tag: msgspec.json.Decoder(spec.result_type)
            for tag, spec in self.specs.items()
            if spec.result_type is not None
        }

    def spec(self, data: bytes) -> JobSpecBase:
        spec: JobSpecBase = self._spec.decode(data)
        return spec

    def job(self, data: bytes) -> Job:
        job, parts = self._job.decode(data), self._parts.decode(data)
        job.params, job.result = self._typed_parts(parts)
        return job

    def _typed_parts(self, parts: _TypedParts) -> tuple[JobParams, JobResult | None]:
        spec = self.specs.get(parts.type)
        if spec is None:
            return JobParams(), None
        result_decoder = self._results.get(parts.type)
        try:
            params = self._params[parts.type].decode(parts.params)
            result = result_decoder.decode(parts.result) if result_decoder and parts.result != _NULL else None
            return params, result
        except msgspec.ValidationError:
            pass
        try:
            return spec.read_old_params(msgspec.json.decode(parts.params, type=dict[str, Any]))
        except (msgspec.ValidationError, ValueError, TypeError):  # unreadable: the job still lists, without params
            return JobParams(), None
