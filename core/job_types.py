"""Every job type of the service, composed where the service is assembled: each feature declares its own job specs
(with their params and result types), and the store reads stored jobs back through the codec made from this list
(the tagged union of the specs)."""

from __future__ import annotations

from core.generation.specs import Img2ImgJob, Txt2ImgJob, Txt2VidJob
from core.jobs.records import JobCodec
from core.models.specs import ConvertJob, DownloadJob, HashJob
from core.upscale.specs import UpscaleJob

JOB_SPECS = (Txt2ImgJob, Img2ImgJob, Txt2VidJob, UpscaleJob, ConvertJob, DownloadJob, HashJob)
JOB_CODEC = JobCodec(JOB_SPECS)
