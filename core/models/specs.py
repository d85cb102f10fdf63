"""Job specs of the model jobs: conversion, and a download with the hash job that checks it."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from core.jobs.schemas import JobSpecBase, Lane
from core.models.schemas import ConvertRequest, DownloadRequest, DownloadSource


class ConvertJob(JobSpecBase, tag="convert"):
    request: ConvertRequest
    source: str  # absolute paths, resolved inside the model folders at submit
    target: str
    weight_type: str
    vae: str | None
    output_reference: str  # "<folder>/<file>" as clients name it

    def params(self) -> dict[str, object]:
        return {"input_path": self.request.input_path, "output_type": self.weight_type,
                "output_path": self.output_reference, "vae_path": self.request.vae_path,
                "tensor_type_rules": self.request.tensor_type_rules}


class DownloadJob(JobSpecBase, tag="download"):
    lane: ClassVar[Lane] = "downloads"
    request: DownloadRequest
    source: DownloadSource
    url: str  # tokens are added at download time, never stored
    target: str
    path: str  # relative to the type's folder

    def params(self) -> dict[str, object]:
        return {**msgspec.to_builtins(self.request), "source": self.source, "path": self.path}


class HashJob(JobSpecBase, tag="hash"):
    lane: ClassVar[Lane] = "downloads"
    model_type: str
    path: str
    target: str
    expected_sha256: str | None
    download_job_id: str
    sha256: str | None = None  # the result, shown in params once computed

    def params(self) -> dict[str, object]:
        params: dict[str, object] = {"model_type": self.model_type, "path": self.path,
                                     "expected_sha256": self.expected_sha256}
        if self.sha256 is not None:
            params["sha256"] = self.sha256
        return params
