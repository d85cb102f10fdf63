"""Job specs of the model jobs: conversion, and a download with the hash job that checks it; each with the params
clients see, and the hash job's result."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from core.jobs.schemas import JobParams, JobResult, JobSpecBase, Lane
from core.models.schemas import ConvertRequest, DownloadRequest, DownloadSource


class ConvertParams(JobParams, forbid_unknown_fields=True):
    input_path: str
    output_type: str  # as sd-cli takes it (lower case)
    output_path: str  # "<folder>/<file>", the default one filled in
    vae_path: str | None = None
    tensor_type_rules: str = ""


class ConvertJob(JobSpecBase, tag="convert"):
    params_type: ClassVar[type[JobParams]] = ConvertParams
    request: ConvertRequest
    source: str  # absolute paths, resolved inside the model folders at submit
    target: str
    weight_type: str
    vae: str | None
    output_reference: str  # "<folder>/<file>" as clients name it

    def params(self) -> ConvertParams:
        return ConvertParams(
            self.request.input_path,
            self.weight_type,
            self.output_reference,
            self.request.vae_path,
            self.request.tensor_type_rules,
        )


class DownloadParams(DownloadRequest, JobParams, forbid_unknown_fields=True):
    """The request, with the source it resolved to and where the file goes (relative to the type's folder)."""

    source: DownloadSource = "url"
    path: str = ""


class DownloadJob(JobSpecBase, tag="download"):
    lane: ClassVar[Lane] = "downloads"
    params_type: ClassVar[type[JobParams]] = DownloadParams
    request: DownloadRequest
    source: DownloadSource
    url: str  # tokens are added at download time, never stored
    target: str
    path: str  # relative to the type's folder

    def params(self) -> DownloadParams:
        fields = msgspec.structs.asdict(self.request)
        fields.update(source=self.source, path=self.path)
        return DownloadParams(**fields)


class HashParams(JobParams, forbid_unknown_fields=True):
    model_type: str
    path: str  # relative to the type's folder
    expected_sha256: str | None = None  # what the source publishes (None: it publishes none)


class HashResult(JobResult):
    sha256: str  # the downloaded file's digest (it matched expected_sha256 when that was given)


class HashJob(JobSpecBase, tag="hash"):
    lane: ClassVar[Lane] = "downloads"
    params_type: ClassVar[type[JobParams]] = HashParams
    result_type: ClassVar[type[JobResult] | None] = HashResult
    model_type: str
    path: str
    target: str
    expected_sha256: str | None
    download_job_id: str

    def params(self) -> HashParams:
        return HashParams(self.model_type, self.path, self.expected_sha256)

    @classmethod
    def read_old_params(cls, fields: dict[str, Any]) -> tuple[JobParams, JobResult | None]:
        """Versions before typed results wrote the digest into params."""
        digest = fields.get("sha256")
        params, _ = super().read_old_params(fields)
        return params, HashResult(digest) if isinstance(digest, str) else None
