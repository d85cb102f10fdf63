"""Upscaling with the loaded ESRGAN model: standalone `/upscale` jobs and `upscale: true` after a generation.
sd-server has no ESRGAN endpoint, so both run `sd-cli -M upscale`."""

from __future__ import annotations

from pathlib import Path

import anyio
from PIL import Image

from core.jobs.queue import JobFailed
from core.jobs.schemas import JobConfig
from core.upscale.specs import UpscaleJob
from core.upscale.upscaler import LoadedUpscaler, UpscalerManager
from runners.options import UpscaleOptions
from runners.process import run_binary
from runners.sdcli import upscale_argv

OUTPUT_NAME = "image_0.png"


class Upscaling:
    def __init__(self, upscaler: UpscalerManager, sd_cli: Path) -> None:
        self.upscaler, self.sd_cli = upscaler, sd_cli

    async def run_job(self, job: UpscaleJob, job_dir: Path) -> tuple[list[Path], JobConfig]:
        upscaler = self.upscaler.require_loaded()
        if job.inputs.image is None:
            raise JobFailed("the job has no input image")
        target = job_dir / OUTPUT_NAME
        await self.upscale_file(upscaler, job_dir / job.inputs.image.path, target, job.passes, job.request.tile_size)
        return [target], JobConfig(
            "",
            "",
            job.params(),
            "sd-cli (upscale mode)",
            upscaler=upscaler.request.model_name,
            scale_per_pass=upscaler.scale,
            passes=job.passes,
        )

    async def chain(self, images: list[Path], repeats: int, upscaler: LoadedUpscaler | None = None) -> list[Path]:
        """`upscale: true`: each generated image upscaled beside it as `<name>_upscaled.png`, with `upscaler` (the
        one loaded when the job started: another worker's job may unload it meanwhile) or the loaded one."""
        upscaler = upscaler or self.upscaler.require_loaded()
        results = []
        for image in images:
            target = image.with_name(image.stem + "_upscaled.png")
            await self.upscale_file(upscaler, image, target, repeats, upscaler.request.tile_size)
            results.append(target)
        return results

    async def upscale_file(
        self, upscaler: LoadedUpscaler, source: Path, target: Path, repeats: int, tile_size: int
    ) -> None:
        options = UpscaleOptions(
            upscale_model=upscaler.path,
            init_image=str(source),
            output=str(target),
            upscale_repeats=repeats,
            upscale_tile_size=tile_size,
            n_threads=upscaler.request.n_threads,
        )
        argv = upscale_argv(self.sd_cli, options)
        result = await run_binary(argv, cwd=target.parent)
        # sd-cli's upscale mode exits 0 and writes the unmodified input when the upscaler fails.
        if not result.ok or result.error_lines or not target.is_file():
            raise JobFailed(result.failure_reason("sd-cli upscale"))
        expected = await anyio.to_thread.run_sync(_scaled_size, source, upscaler.scale**repeats)
        actual = await anyio.to_thread.run_sync(_image_size, target)
        if actual != expected:
            raise JobFailed(f"sd-cli upscale wrote {actual[0]}x{actual[1]}, expected {expected[0]}x{expected[1]}")


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _scaled_size(path: Path, factor: int) -> tuple[int, int]:
    width, height = _image_size(path)
    return width * factor, height * factor
