"""/upscale requests become queued jobs: the factor is checked against the loaded upscaler's scale per pass and the
input image is saved in the job folder, so the stored spec runs the same after a restart."""

from __future__ import annotations

from core.errors import BadRequest
from core.jobs.inputs import with_saved_inputs
from core.jobs.queue import JobQueue
from core.jobs.schemas import JobAccepted
from core.limits import Limits
from core.upscale.schemas import UpscaleRequest
from core.upscale.specs import UpscaleJob
from core.upscale.upscaler import UpscalerManager


class UpscaleSubmitter:
    def __init__(self, queue: JobQueue, upscaler: UpscalerManager, limits: Limits) -> None:
        self.queue, self.upscaler, self.limits = queue, upscaler, limits

    async def submit(self, request: UpscaleRequest) -> JobAccepted:
        upscaler = self.upscaler.require_loaded()
        passes = request.repeats
        if request.upscale_factor != upscaler.scale**passes:
            # With repeats 1, a factor that is a power of the model's scale sets the number of passes.
            achievable = {upscaler.scale**k: k for k in range(1, 5)}
            if request.repeats != 1 or request.upscale_factor not in achievable:
                raise BadRequest(
                    f"upscale_factor {request.upscale_factor} is not reachable: the loaded upscaler "
                    f"scales x{upscaler.scale} per pass (repeats {request.repeats})"
                )
            passes = achievable[request.upscale_factor]
        job_id = self.queue.new_job_id()
        limits = self.limits
        stored, inputs = await with_saved_inputs(
            request, self.queue.output_root / job_id, limits.max_image_bytes, limits.max_image_pixels
        )
        return await self.queue.submit(UpscaleJob(request=stored, passes=passes, inputs=inputs), job_id)
