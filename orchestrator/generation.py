"""Turn generation requests into queued jobs, and queued jobs into sd-cli runs.

Submission checks what the request structs cannot (configured limits, the binary's sampler list, LoRA
files), resolves the seed so the job records the one really used, and stores a spec the worker can run
even after a restart. Execution builds argv from the flag tables and collects the files written.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio
import msgspec

from orchestrator.errors import BadRequest
from orchestrator.lora_tags import parse_lora_tags
from orchestrator.models import ModelManager
from orchestrator.queue import JobFailed, JobQueue, JobRecord, ProgressReport
from orchestrator.schemas import GenerationRequest, JobAccepted, JobType
from orchestrator.settings import Limits
from orchestrator.store import atomic_write_json
from runners.capabilities import Capabilities
from runners.process import run_binary
from runners.progress import ProgressTracker
from runners.sdcli import generation_argv

IMAGE_PATTERN = "image_%d.png"
MAX_SEED = 2**31 - 1


class GenerationService:
    def __init__(self, queue: JobQueue, models: ModelManager, sd_cli: Path, capabilities: Capabilities,
                 limits: Limits) -> None:
        self.queue = queue
        self.models = models
        self.sd_cli = sd_cli
        self.capabilities = capabilities
        self.limits = limits

    # ------------------------------------------------------------------------------------- submission

    def validate(self, request: GenerationRequest) -> None:
        limits = self.limits
        bounds = {"width": limits.max_width, "height": limits.max_height, "steps": limits.max_steps,
                  "batch_count": limits.max_batch_count}
        for field, maximum in bounds.items():
            if getattr(request, field) > maximum:
                raise BadRequest(f"{field} must be at most {maximum} (got {getattr(request, field)})")
        for field, allowed in (("sampler", self.capabilities.samplers), ("scheduler", self.capabilities.schedulers)):
            value = getattr(request, field)
            if value and value not in allowed:
                raise BadRequest(f"{field} '{value}' is not supported by this sd.cpp build; use one of: {', '.join(allowed)}")

    async def submit(self, job_type: JobType, request: GenerationRequest) -> JobAccepted:
        self.models.require_loaded()
        self.validate(request)
        lora_dir = self.models.library.folder_of("lora")
        await anyio.to_thread.run_sync(parse_lora_tags, request.prompt, lora_dir)
        fields = msgspec.to_builtins(request)
        if fields["seed"] < 0:
            fields["seed"] = random.randint(0, MAX_SEED)
        return await self.queue.submit(job_type, params=fields, spec=fields, total_images=request.batch_count)

    # -------------------------------------------------------------------------------------- execution

    async def execute(self, record: JobRecord, report: ProgressReport) -> list[str]:
        job = record.job
        loaded = self.models.require_loaded()
        job_dir = self.queue.output_root / job.job_id
        await anyio.to_thread.run_sync(lambda: job_dir.mkdir(parents=True, exist_ok=True))
        argv = generation_argv(self.sd_cli, "img_gen", loaded.context, record.spec, job_dir / IMAGE_PATTERN)
        tracker = ProgressTracker()

        def on_piece(piece: Any) -> None:
            if (step := tracker.observe(piece)) is not None:
                report(step)

        result = await run_binary(argv, on_piece, cwd=job_dir)
        expected = [job_dir / (IMAGE_PATTERN % i) for i in range(int(record.spec.get("batch_count", 1)))]
        written = [path for path in expected if path.is_file()]
        if not result.ok or not written:
            raise JobFailed(result.failure_reason("sd-cli"))
        config = {"job_id": job.job_id, "type": job.type, "model": loaded.name,
                  "model_type": loaded.request.model_type, "components": msgspec.to_builtins(loaded.components()),
                  "params": job.params, "argv": argv}
        await anyio.to_thread.run_sync(atomic_write_json, job_dir / "config.json", config)
        return [path.relative_to(self.queue.output_root).as_posix() for path in written]
