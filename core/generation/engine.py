"""Queued generation jobs become runs of the resident worker, sd-server or sd-cli.

Engine choice: a job on a loaded model goes to its resident process. Our worker runs everything, live previews
included. Where the backend has no worker, the resident is sd-server, and a job that needs something only sd-cli
has (`CLI_ONLY`, or live previews) runs sd-cli with the same model flags. Each job's config.json records the engine
and why.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import anyio
import msgspec

from core.events.bus import EventBus
from core.files import atomic_write_json
from core.generation.defaults import contract_defaults
from core.generation.lora_tags import LORA_TAG, parse_lora_tags
from core.generation.previews import PreviewSettings, PreviewStore, PreviewWatcher
from core.generation.specs import GenerationJob, Txt2VidJob
from core.jobs.inputs import IMAGE_INPUTS
from core.jobs.queue import JobFailed, JobQueue, ProgressReport
from core.jobs.records import JobRecord
from core.jobs.schemas import JobConfig
from core.models.manager import LoadedModel, ModelManager
from core.models.schemas import LoadOptions
from core.upscale.runs import Upscaling
from core.upscale.specs import UpscaleJob
from core.upscale.upscaler import UpscalerManager
from runners.options import GenerationOptions, LoraOption, PreviewOptions, build_server_body
from runners.process import run_binary
from runners.progress import Bar, Piece, ProgressTracker, SamplingStep
from runners.resident_worker import ResidentWorker, WorkerFailed
from runners.sdcli import CliMode, generation_args, generation_argv
from runners.sdserver import ResidentServer, ServerFailed, ServerResult, decode_images
from runners.worker_protocol import JobEvent, JobRequest, Preview, PreviewRequest, Progress, Saved

IMAGE_NAME = "image_{}.png"
VIDEO_NAME = "video.webm"  # VP8 WebM: written by sd.cpp itself, plays and seeks in browsers
PREVIEW_DIR = ".preview"  # hidden from the output browser

# What makes a job run on sd-cli instead of a resident sd-server, with the reason recorded in config.json.
CLI_ONLY: tuple[tuple[Callable[[GenerationJob], bool], str], ...] = (
    (
        lambda job: bool(job.inputs.pm_id_images or job.request.pm_id_embed_path),
        "PhotoMaker inputs exist only in sd-cli",
    ),
    (lambda job: job.request.batch_count > 8, "sd-server caps batch_count at 8"),
    (lambda job: (job.request.steps or 0) > 100, "sd-server caps steps at 100"),
)


class PreviewPlan(msgspec.Struct):
    settings: PreviewSettings
    preview_taesd: str | None  # a TAESD from taesd/ for previews only, where the model has none of its own
    path: Path
    note: str | None = None


# Request fields that are ours, never sd.cpp's, with why. Every other field of a generation request reaches the
# binaries (tests/unit/test_seam.py changes each one and checks the argv or the sd-server body changes), so a new
# field must be either mapped in runners/options.py or listed here.
NOT_FOR_SDCPP: dict[str, str] = {
    "upscale": "ESRGAN upscaling after the generation is ours (core/generation/upscale.py)",
    # Same name as sd-cli's --upscale-repeats, which must not see it: the chaining is ours.
    "upscale_repeats": "passes of our ESRGAN chaining after the generation",
    "upscale_auto_unload": "whether we unload the upscaler after chaining",
    "preview": "chooses the engine and preview plan; the preview flags come from the preview settings",
    "preview_count": "spaces the previews (the preview plan's interval); sd.cpp ignores its own preview interval",
    "model": "chooses the worker and the model it runs on; the model's flags come from its load",
    "priority": "orders the queue (ours: higher first, fair between API keys)",
    "callback_url": "where our webhook is POSTed when the job ends (core/webhooks/)",
}


def generation_options(job: GenerationJob, job_dir: Path, load: LoadOptions) -> GenerationOptions:
    """The one typed step from a job to what sd.cpp takes: the request's fields sd.cpp takes (not `NOT_FOR_SDCPP`),
    its saved input images as absolute paths (and a folder where sd-cli reads a folder), and the load options
    sd.cpp applies per generation as the defaults of a request that says nothing about them."""
    fields = msgspec.structs.asdict(job.request)
    for ours in NOT_FOR_SDCPP:
        fields.pop(ours, None)
    for image_input in IMAGE_INPUTS:
        fields.pop(image_input.field, None)
        saved = getattr(job.inputs, image_input.target)
        if image_input.many and saved:
            files = [str(job_dir / image.path) for image in saved]
            if image_input.folder_flag:
                fields[image_input.folder_flag] = str(job_dir / "inputs" / image_input.field)
            if image_input.target in GenerationOptions.__struct_fields__:
                fields[image_input.target] = files
        elif not image_input.many and saved is not None:
            fields[image_input.target] = str(job_dir / saved.path)
    # GenerationOptions forbids unknown fields: a request field that is neither an option nor ours fails here.
    return with_load_defaults(msgspec.convert(fields, GenerationOptions), load)


def with_load_defaults(options: GenerationOptions, load: LoadOptions) -> GenerationOptions:
    """Load options that sd.cpp applies per generation (VAE tiling, flow shift) become the job's defaults:
    a request that says nothing about them gets what the model was loaded with."""
    if load.vae_tiling and not options.vae_tiling:
        options = msgspec.structs.replace(
            options,
            vae_tiling=True,
            vae_tile_size_x=load.vae_tile_size_x,
            vae_tile_size_y=load.vae_tile_size_y,
            vae_tile_overlap=load.vae_tile_overlap,
        )
    if options.flow_shift is None and load.flow_shift is not None:
        options = msgspec.structs.replace(options, flow_shift=load.flow_shift)
    return options


def cli_reason(job: GenerationJob) -> str | None:
    return next((reason for needs_cli, reason in CLI_ONLY if needs_cli(job)), None)


class GenerationEngine:
    def __init__(
        self,
        queue: JobQueue,
        models: ModelManager,
        upscaler: UpscalerManager,
        sd_cli: Path,
        previews: PreviewStore,
        watched: Callable[[str], bool],
        bus: EventBus,
    ) -> None:
        self.queue, self.models, self.upscaler, self.sd_cli = queue, models, upscaler, sd_cli
        self.previews, self.watched, self.bus = previews, watched, bus
        self.upscaling = Upscaling(upscaler, sd_cli)

    async def execute(self, record: JobRecord, report: ProgressReport) -> list[str]:
        spec = record.spec
        job_dir = self.queue.output_root / record.job.job_id
        await anyio.to_thread.run_sync(lambda: job_dir.mkdir(parents=True, exist_ok=True))
        if isinstance(spec, UpscaleJob):
            outputs, config = await self.upscaling.run_job(spec, job_dir)
        elif isinstance(spec, GenerationJob):
            kept: list[Path] = []  # the images saved so far: a cancelled batch keeps them as its outputs
            try:
                outputs, config = await self._run_generation(spec, record.job.job_id, job_dir, report, kept)
            except anyio.get_cancelled_exc_class():
                record.job.outputs = [path.relative_to(self.queue.output_root).as_posix() for path in kept]
                raise
        else:
            raise JobFailed(f"{record.job.type} is not a generation job")
        config = msgspec.structs.replace(
            config, job_id=record.job.job_id, type=record.job.type, params=record.job.params
        )
        await anyio.to_thread.run_sync(atomic_write_json, job_dir / "config.json", config)
        return [path.relative_to(self.queue.output_root).as_posix() for path in outputs]

    async def _run_generation(
        self, job: GenerationJob, job_id: str, job_dir: Path, report: ProgressReport, kept: list[Path]
    ) -> tuple[list[Path], JobConfig]:
        mode: CliMode = "vid_gen" if isinstance(job, Txt2VidJob) else "img_gen"
        tracker = ProgressTracker()

        def on_piece(piece: Piece) -> None:
            if (step := tracker.observe(piece)) is not None:
                report(step)

        # The upscaler as the job starts: a job on another worker may unload it (upscale_auto_unload) while this one
        # generates; this job chains with the one it was submitted for all the same.
        upscaler = self.upscaler.loaded if job.request.upscale else None
        async with self.models.worker_for(job_id) as worker:  # the worker the queue handed the job to
            loaded = await self.models.model_named(job.request.model)
            options = generation_options(job, job_dir, loaded.request.options)
            plan = await anyio.to_thread.run_sync(
                self._preview_plan,
                job_id,
                job,
                loaded,
                mode,
                job_dir,
                options.steps or contract_defaults(job.request).steps,
            )
            resident = await self.models.ensure_resident(worker, loaded)
            reason = cli_reason(job) or ("live previews are sd-cli only" if plan else None)
            if isinstance(resident, ResidentWorker):  # everything runs on our worker, previews included
                outputs = await self._on_worker(
                    resident, mode, options, job_dir, report, job_id, plan, kept, loaded.name
                )
                engine = "worker (resident)" + (f", {plan.settings.mode} previews" if plan else "")
            elif reason is None:
                outputs = await self._on_server(resident, mode, options, job_dir, on_piece)
                engine = "sd-server (resident)"
            else:
                outputs = await self._on_cli(mode, loaded, options, job_dir, on_piece, job_id, plan)
                engine = f"sd-cli ({reason})"
        config = JobConfig(
            job_id,
            "",
            job.params(),
            engine,
            model=loaded.name,
            model_type=loaded.request.model_type,
            model_architecture=loaded.architecture.variant if loaded.architecture else None,
            components=msgspec.structs.asdict(loaded.components()),
            worker=worker.name,
        )
        if job.request.upscale and mode == "img_gen":
            outputs += await self.upscaling.chain(outputs, job.request.upscale_repeats, upscaler)
            used = upscaler or self.upscaler.loaded
            config.upscaler = used.request.model_name if used else None
            if job.request.upscale_auto_unload:
                await self.upscaler.unload()
        return outputs, config

    async def _on_worker(
        self,
        worker: ResidentWorker,
        mode: CliMode,
        options: GenerationOptions,
        job_dir: Path,
        report: ProgressReport,
        job_id: str,
        plan: PreviewPlan | None,
        kept: list[Path],
        model: str = "",
    ) -> list[Path]:
        """One request line to the resident worker: the same generation flags sd-cli gets, previews by callback.
        Cancelling the job cancels this call; `ResidentWorker.generate` then cancels the job on the worker
        (`ResidentWorker.cancel`): it stops at the next sampling step and the worker keeps its model, or, past the
        bound, the worker is stopped and `ensure_resident` starts a new one for the next job. Each image the worker
        saves goes into `kept` at once, so a cancel mid-batch keeps the finished ones."""
        watcher: PreviewWatcher | None = None
        preview: PreviewRequest | None = None
        if plan is not None:
            settings, note = plan.settings, plan.note
            if plan.preview_taesd:  # a preview-only TAESD would need loading: the worker keeps the model's components
                settings = msgspec.structs.replace(settings, mode="proj")
                note = "the loaded model has no TAESD of its own: showing proj previews instead of tae"
            # Still previews as JPEG: a PNG encode per step costs the worker more than the preview is worth.
            path = plan.path.with_suffix(".jpg") if mode == "img_gen" else plan.path
            await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
            watcher = PreviewWatcher(job_id, path, settings, self.previews, self.bus, note)
            preview = PreviewRequest(
                settings.mode,  # type: ignore[arg-type]
                str(path),
                settings.preview_noisy,
                settings.interval,
            )
        output = job_dir / (VIDEO_NAME if mode == "vid_gen" else IMAGE_NAME.format("%d"))
        request = JobRequest(job_id, mode, generation_args(options), str(output), preview, model)
        images = _ImageCounter(report)
        pending: list[Preview] = []
        wake = anyio.Event()

        def on_event(event: JobEvent) -> None:
            if isinstance(event, Progress):
                images.step(event.step, event.steps)
            elif isinstance(event, Saved):
                kept.append(Path(event.path))
                images.saved()
            elif watcher is not None:
                pending.append(event)
                wake.set()

        async def publish_previews() -> None:
            nonlocal wake
            while True:
                await wake.wait()
                wake = anyio.Event()
                while pending and watcher is not None:
                    event = pending.pop(0)
                    if not pending:  # only the newest counts when they arrive faster than they are shown
                        await watcher.offer(Path(event.path), event.step, images.total, event.is_noisy)

        written: list[str] = []
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(publish_previews)
                try:
                    written = await worker.generate(request, on_event)
                finally:
                    tasks.cancel_scope.cancel()
        except* WorkerFailed as failures:
            raise JobFailed(f"the resident worker failed: {failures.exceptions[0]}") from None
        finally:
            self.previews.latest.pop(job_id, None)
        return [Path(path) for path in written]

    async def _on_server(
        self,
        server: ResidentServer,
        mode: CliMode,
        options: GenerationOptions,
        job_dir: Path,
        on_piece: Callable[[Piece], None],
    ) -> list[Path]:
        body = await anyio.to_thread.run_sync(self._server_body, mode, options)
        try:
            result = await server.generate(mode, body, on_piece)
        except ServerFailed as exc:
            raise JobFailed(f"sd-server failed: {exc}") from None
        except anyio.get_cancelled_exc_class():
            # sd-server cannot interrupt a running generation: stop it (this worker's only); it restarts for the next.
            with anyio.CancelScope(shield=True):
                await server.stop()
            raise
        return await anyio.to_thread.run_sync(_write_server_result, mode, result, job_dir)

    def _server_body(self, mode: CliMode, options: GenerationOptions) -> dict[str, object]:
        """sd-server takes images as base64 and LoRAs as a structured list (it ignores prompt tags).
        Blocking (reads files): run off the event loop."""
        tags = parse_lora_tags(options.prompt, self.models.library.folder_of("lora"))
        images = {  # every input image option (IMAGE_INPUTS' targets), its files as base64
            image.target: _b64_files(getattr(options, image.target))
            if image.many
            else _b64_file(getattr(options, image.target))
            for image in IMAGE_INPUTS
            if image.target in GenerationOptions.__struct_fields__
        }
        for_server = msgspec.structs.replace(
            options,
            prompt=LORA_TAG.sub("", options.prompt).strip(),
            lora=[LoraOption(tag.path, tag.multiplier, tag.is_high_noise) for tag in tags],
            **images,
        )
        body = build_server_body(for_server)
        body["output_format"] = "webm" if mode == "vid_gen" else "png"
        return body

    def _preview_plan(
        self, job_id: str, job: GenerationJob, loaded: LoadedModel, mode: CliMode, job_dir: Path, steps: int
    ) -> PreviewPlan | None:
        """Whether this job previews, and how. `tae` needs a TAESD: the model's own, else a fitting one from
        taesd/ (preview-only), else the cheap `proj` projection (said in the events' `note`). A request's
        `preview_count` spreads that many previews over the `steps` (the last step always previews)."""
        settings, wanted = self.previews.settings, job.request.preview
        if wanted is False or (wanted is None and not (settings.active and self.watched(job_id))):
            return None
        if not settings.active:
            settings = msgspec.structs.replace(settings, enabled=True, mode="proj")
        if job.request.preview_count is not None:
            interval = max(1, steps // (job.request.preview_count + 1))
            settings = msgspec.structs.replace(settings, interval=min(interval, 100))
        preview_taesd = None
        note = None
        if settings.mode == "tae" and loaded.context.taesd is None:
            family = loaded.architecture.family if loaded.architecture else None
            taesd = find_taesd(self.models.library.folder_of("taesd"), family)
            if taesd is not None:
                preview_taesd = str(taesd)
            else:
                settings = msgspec.structs.replace(settings, mode="proj")
                note = f"no TAESD in taesd/ fits {family or 'this model'}: showing proj previews instead of tae"
        extension = ".webp" if mode == "vid_gen" else ".png"  # animated WebP for video previews
        return PreviewPlan(settings, preview_taesd, job_dir / PREVIEW_DIR / f"preview{extension}", note)

    async def _on_cli(
        self,
        mode: CliMode,
        loaded: LoadedModel,
        options: GenerationOptions,
        job_dir: Path,
        on_piece: Callable[[Piece], None],
        job_id: str,
        plan: PreviewPlan | None,
        model: str = "",
    ) -> list[Path]:
        context = loaded.context
        watcher: PreviewWatcher | None = None
        preview: PreviewOptions | None = None
        if plan is not None:
            if plan.preview_taesd is not None:
                context = msgspec.structs.replace(context, taesd=plan.preview_taesd, tae_preview_only=True)
            preview = PreviewOptions(plan.settings.mode, str(plan.path), plan.settings.preview_noisy)
            await anyio.Path(plan.path.parent).mkdir(parents=True, exist_ok=True)
            watcher = PreviewWatcher(job_id, plan.path, plan.settings, self.previews, self.bus, plan.note)
            inner = on_piece

            def on_piece(piece: Piece) -> None:
                if isinstance(piece, Bar) and piece.unit in ("it/s", "s/it"):
                    watcher.on_step(piece.step, piece.total)
                inner(piece)

        if mode == "vid_gen":
            output, expected = job_dir / VIDEO_NAME, [job_dir / VIDEO_NAME]
        else:
            output = job_dir / IMAGE_NAME.format("%d")
            expected = [job_dir / IMAGE_NAME.format(i) for i in range(options.batch_count or 1)]
        argv = generation_argv(self.sd_cli, mode, context, options, output, preview)
        if watcher is None:
            result = await run_binary(argv, on_piece, cwd=job_dir)
        else:
            try:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(watcher.run)
                    result = await run_binary(argv, on_piece, cwd=job_dir)
                    tasks.cancel_scope.cancel()
            finally:
                self.previews.latest.pop(job_id, None)
        written = [path for path in expected if path.is_file()]
        if not result.ok or not written:
            raise JobFailed(result.failure_reason("sd-cli"))
        return written


# Which TAESD file names fit which architecture family (madebyollin's naming).
TAESD_NAMES: dict[str, tuple[str, ...]] = {
    "SD1": ("taesd_", "taesd."),
    "SD2": ("taesd_", "taesd."),
    "SDXL": ("taesdxl",),
    "SD3": ("taesd3",),
    "Flux": ("taef1",),
    "Chroma": ("taef1",),
    "FLUX.2": ("taef2",),
    "Wan": ("taew2",),
    "Qwen-Image": ("taew2_1", "taeqwen"),
}


def find_taesd(folder: Path, family: str | None) -> Path | None:
    fragments = TAESD_NAMES.get(family or "", ())
    if not fragments or not folder.is_dir():
        return None
    for path in sorted(folder.rglob("*")):
        if path.is_file() and any(fragment in path.name.lower() for fragment in fragments):
            return path
    return None


class _ImageCounter:
    """The worker reports (step, steps) per image of a batch; the queue wants the image index too."""

    def __init__(self, report: ProgressReport) -> None:
        self.report, self.image, self.last, self.total = report, 0, 0, 0

    def step(self, step: int, steps: int) -> None:
        if step < self.last:  # the next image of the batch started
            self.image += 1
        self.last, self.total = step, steps
        self.report(SamplingStep(self.image, step, steps))

    def saved(self) -> None:
        """An image was saved: the next step reported is the next image's (also when each has one step)."""
        self.image, self.last = self.image + 1, 0


def _b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _b64_file(path: str | None) -> str | None:
    return None if path is None else _b64(path)


def _b64_files(paths: list[str] | None) -> list[str] | None:
    return None if paths is None else [_b64(path) for path in paths]


def _write_server_result(mode: CliMode, result: ServerResult, job_dir: Path) -> list[Path]:
    if mode == "vid_gen":
        if not result.b64_json:
            raise JobFailed("sd-server finished the video job without a video")
        target = job_dir / VIDEO_NAME
        target.write_bytes(base64.b64decode(result.b64_json))
        return [target]
    written = []
    for index, data in enumerate(decode_images(result)):
        target = job_dir / IMAGE_NAME.format(index)
        target.write_bytes(data)
        written.append(target)
    return written
