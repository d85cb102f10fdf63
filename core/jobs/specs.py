"""Every job type's spec in one tagged union: the store decodes a job's spec by its `type`."""

from __future__ import annotations

import msgspec

from core.generation.specs import Img2ImgJob, Txt2ImgJob, Txt2VidJob, UpscaleJob
from core.jobs.schemas import Job
from core.models.specs import ConvertJob, DownloadJob, HashJob

JobSpec = Txt2ImgJob | Img2ImgJob | Txt2VidJob | UpscaleJob | ConvertJob | DownloadJob | HashJob


class JobRecord(msgspec.Struct):
    """A job and what it needs to run. `spec` is None only for a finished job imported from an old state file
    whose spec could not be read (it is never run again)."""

    job: Job
    spec: JobSpec | None
