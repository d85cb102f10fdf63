"""Generation jobs: requests become queued jobs, queued jobs become sd-server or sd-cli runs.

Submission checks what the request structs cannot (configured limits, the binary's sampler list, LoRA
files, the loaded model's abilities), decodes input images into the job folder, and resolves the seed, so
the stored spec can run even after a restart.

Execution rule: a job on a loaded model goes to its resident sd-server, unless it needs something only
sd-cli has (`CLI_ONLY`): then sd-cli runs with the same model flags. Upscale jobs always use sd-cli
(sd-server has no standalone ESRGAN).
"""

from __future__ import annotations

import base64
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import anyio
import msgspec
from PIL import Image

from orchestrator.architecture import size_multiple
from orchestrator.errors import BadRequest
from orchestrator.events import EventBus
from orchestrator.previews import PreviewSettings, PreviewStore, PreviewWatcher
from orchestrator.images import save_input
from orchestrator.lora_tags import LORA_TAG, parse_lora_tags
from orchestrator.models import LoadedModel, ModelManager
from orchestrator.queue import JobFailed, JobQueue, JobRecord, ProgressReport
from orchestrator.schemas import GenerationRequest, JobAccepted, JobType, UpscaleRequest
from orchestrator.settings import Limits
from orchestrator.store import atomic_write_json
from orchestrator.upscaler import UpscalerManager
from runners.capabilities import Capabilities
from runners.options import build_server_body
from runners.process import RunResult, run_binary
from runners.progress import Bar, Piece, ProgressTracker
from runners.sdcli import CliMode, generation_argv, upscale_argv
from runners.sdserver import ServerFailed, decode_images

MAX_SEED = 2**31 - 1
IMAGE_NAME = "image_{}.png"
VIDEO_NAME = "video.webm"  # VP8 WebM: written by sd.cpp itself, plays and seeks in browsers
VIDEO_ARCHITECTURES = frozenset({"Wan", "SVD"})
PREVIEW_DIR = ".preview"  # hidden from the output browser

# API field with one base64 image -> (spec field, Pillow mode it is converted to)
IMAGE_INPUTS: dict[str, tuple[str, str]] = {
    "init_image_base64": ("init_image", "RGB"),
    "mask_image_base64": ("mask_image", "L"),
    "control_image_base64": ("control_image", "RGB"),
    "end_image_base64": ("end_image", "RGB"),
    "image_base64": ("image", "RGB"),
}
# API field with a list of base64 images -> the sd-cli flag source it becomes (a file list or a folder)
IMAGE_LIST_INPUTS: dict[str, str] = {"ref_images": "ref_images", "control_frames": "control_video",
                                     "pm_id_images": "pm_id_images_dir"}
FOLDER_INPUTS = frozenset({"control_video", "pm_id_images_dir"})

# What makes a job run on sd-cli instead of the resident sd-server, with the reason recorded in config.json.
CLI_ONLY: tuple[tuple[Callable[[dict[str, Any]], bool], str], ...] = (
    (lambda f: bool(f.get("pm_id_images") or f.get("pm_id_embed_path")), "PhotoMaker inputs exist only in sd-cli"),
    (lambda f: f.get("batch_count", 1) > 8, "sd-server caps batch_count at 8"),
    (lambda f: f.get("steps", 1) > 100, "sd-server caps steps at 100"),
)


def with_load_defaults(fields: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Load options that sd.cpp applies per generation (VAE tiling, flow shift) become the job's defaults:
    a request that says nothing about them gets what the model was loaded with."""
    merged = dict(fields)
    if context.get("vae_tiling") and not fields.get("vae_tiling"):
        merged["vae_tiling"] = True
        for key in ("vae_tile_size_x", "vae_tile_size_y", "vae_tile_overlap"):
            merged[key] = context.get(key, fields.get(key))
    if fields.get("flow_shift") is None and context.get("flow_shift") is not None:
        merged["flow_shift"] = context["flow_shift"]
    return merged


def cli_reason(fields: dict[str, Any]) -> str | None:
    return next((reason for needs_cli, reason in CLI_ONLY if needs_cli(fields)), None)


class GenerationService:
    def __init__(self, queue: JobQueue, models: ModelManager, upscaler: UpscalerManager, sd_cli: Path,
                 capabilities: Capabilities, limits: Limits, previews: PreviewStore,
                 watched: Callable[[str], bool], bus: EventBus) -> None:
        self.previews = previews
        self.watched = watched
        self.bus = bus
        self.queue = queue
        self.models = models
        self.upscaler = upscaler
        self.sd_cli = sd_cli
        self.capabilities = capabilities
        self.limits = limits

    # ------------------------------------------------------------------------------------- submission

    def validate(self, job_type: JobType, request: GenerationRequest) -> LoadedModel:
        loaded = self.models.require_loaded()
        limits = self.limits
        bounds = {"width": limits.max_width, "height": limits.max_height, "steps": limits.max_steps,
                  "batch_count": limits.max_batch_count}
        for field, maximum in bounds.items():
            if getattr(request, field) > maximum:
                raise BadRequest(f"{field} must be at most {maximum} (got {getattr(request, field)})")
        samplers = self.capabilities.samplers
        for field, allowed in (("sampler", samplers), ("scheduler", self.capabilities.schedulers),
                               ("high_noise_sampler", samplers)):
            value = getattr(request, field, "")
            if value and value not in allowed:
                raise BadRequest(f"{field} '{value}' is not supported by this sd.cpp build; use one of: {', '.join(allowed)}")
        if request.slg_start >= request.slg_end and request.slg_scale > 0:
            raise BadRequest("slg_start must be below slg_end")
        if request.easycache and not request.easycache_start < request.easycache_end:
            raise BadRequest("easycache_start must be below easycache_end")
        if job_type == "img2img" and not getattr(request, "init_image_base64", ""):
            raise BadRequest("init_image_base64 is required for img2img")
        architecture = loaded.architecture
        multiple = size_multiple(architecture)
        if multiple and architecture and (request.width % multiple or request.height % multiple):
            rounded = (-(-request.width // multiple) * multiple, -(-request.height // multiple) * multiple)
            raise BadRequest(f"width and height must be multiples of {multiple} for {architecture.variant} "
                             f"(sd.cpp would silently make {request.width}x{request.height} into "
                             f"{rounded[0]}x{rounded[1]})")
        if job_type == "txt2vid" and (architecture is None or architecture.family not in VIDEO_ARCHITECTURES):
            name = architecture.variant if architecture else "an unrecognised architecture"
            raise BadRequest(f"txt2vid needs a video model (Wan); the loaded model is {name}")
        if request.upscale:
            self.upscaler.require_loaded()
        return loaded

    def _save_inputs(self, request: Any, job_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """Decode every input image into job_dir/inputs; returns (spec paths, params placeholders)."""
        limits = self.limits
        paths: dict[str, Any] = {}
        placeholders: dict[str, Any] = {}
        for field, (target, mode) in IMAGE_INPUTS.items():
            data = getattr(request, field, None)
            if data:
                relative = f"inputs/{target}.png"
                width, height = save_input(data, field, job_dir / relative, limits.max_image_bytes,
                                           limits.max_image_pixels, mode)
                paths[target], placeholders[field] = relative, f"<{width}x{height} image: {relative}>"
        for field, target in IMAGE_LIST_INPUTS.items():
            items = getattr(request, field, None) or []
            saved = []
            for index, data in enumerate(items):
                relative = f"inputs/{field}/{index:04d}.png"
                save_input(data, f"{field}[{index}]", job_dir / relative, limits.max_image_bytes,
                           limits.max_image_pixels)
                saved.append(relative)
            if saved:
                paths[target] = f"inputs/{field}" if target in FOLDER_INPUTS else saved
                paths[f"{field}_files"] = saved
                placeholders[field] = [f"<image: {relative}>" for relative in saved]
        return paths, placeholders

    async def _submit(self, job_type: JobType, request: Any, total_images: int,
                      extra_spec: dict[str, Any] | None = None) -> JobAccepted:
        job_id = self.queue.new_job_id()
        job_dir = self.queue.output_root / job_id
        try:
            inputs, placeholders = await anyio.to_thread.run_sync(self._save_inputs, request, job_dir)
        except BaseException:
            await anyio.to_thread.run_sync(_remove_tree, job_dir)
            raise
        params = msgspec.to_builtins(request)
        for field in (*IMAGE_INPUTS, *IMAGE_LIST_INPUTS):
            params.pop(field, None)
        params.update(placeholders)
        if "seed" in params and params["seed"] < 0:
            params["seed"] = random.randint(0, MAX_SEED)
        spec = {**params, "inputs": inputs, **(extra_spec or {})}
        return await self.queue.submit(job_type, params=params, spec=spec, total_images=total_images, job_id=job_id)

    async def submit(self, job_type: JobType, request: GenerationRequest) -> JobAccepted:
        self.validate(job_type, request)
        await anyio.to_thread.run_sync(parse_lora_tags, request.prompt, self.models.library.folder_of("lora"))
        return await self._submit(job_type, request, request.batch_count)

    async def submit_upscale(self, request: UpscaleRequest) -> JobAccepted:
        upscaler = self.upscaler.require_loaded()
        passes = request.repeats
        if request.upscale_factor != upscaler.scale ** passes:
            # With repeats 1, a factor that is a power of the model's scale sets the number of passes.
            achievable = {upscaler.scale ** k: k for k in range(1, 5)}
            if request.repeats != 1 or request.upscale_factor not in achievable:
                raise BadRequest(f"upscale_factor {request.upscale_factor} is not reachable: the loaded upscaler "
                                 f"scales x{upscaler.scale} per pass (repeats {request.repeats})")
            passes = achievable[request.upscale_factor]
        return await self._submit("upscale", request, 1, {"passes": passes})

    # -------------------------------------------------------------------------------------- execution

    async def execute(self, record: JobRecord, report: ProgressReport) -> list[str]:
        job_dir = self.queue.output_root / record.job.job_id
        await anyio.to_thread.run_sync(lambda: job_dir.mkdir(parents=True, exist_ok=True))
        if record.job.type == "upscale":
            outputs, details = await self._run_upscale(record, job_dir)
        else:
            outputs, details = await self._run_generation(record, job_dir, report)
        config = {"job_id": record.job.job_id, "type": record.job.type, "params": record.job.params, **details}
        await anyio.to_thread.run_sync(atomic_write_json, job_dir / "config.json", config)
        return [path.relative_to(self.queue.output_root).as_posix() for path in outputs]

    def _fields(self, spec: dict[str, Any], job_dir: Path) -> dict[str, Any]:
        """The stored spec with input paths made absolute (flag source for the argv builder)."""
        fields = {key: value for key, value in spec.items() if key != "inputs"}
        for key, value in spec.get("inputs", {}).items():
            fields[key] = [str(job_dir / v) for v in value] if isinstance(value, list) else str(job_dir / value)
        return fields

    async def _run_generation(self, record: JobRecord, job_dir: Path, report: ProgressReport) -> tuple[list[Path], dict[str, Any]]:
        fields = self._fields(record.spec, job_dir)
        mode: CliMode = "vid_gen" if record.job.type == "txt2vid" else "img_gen"
        tracker = ProgressTracker()

        def on_piece(piece: Piece) -> None:
            if (step := tracker.observe(piece)) is not None:
                report(step)

        async with self.models.in_use:
            loaded = self.models.require_loaded()
            fields = with_load_defaults(fields, loaded.context)
            plan = await anyio.to_thread.run_sync(self._preview_plan, record.job.job_id, loaded, fields, mode, job_dir)
            reason = cli_reason(fields) or ("live previews are sd-cli only" if plan else None)
            if reason is None:
                outputs = await self._on_server(mode, fields, job_dir, on_piece)
                engine = "sd-server (resident)"
            else:
                outputs = await self._on_cli(mode, loaded, fields, job_dir, on_piece, record.job.job_id, plan)
                engine = f"sd-cli ({reason})"
        details: dict[str, Any] = {"engine": engine, "model": loaded.name, "model_type": loaded.request.model_type,
                                   "model_architecture": loaded.architecture.variant if loaded.architecture else None,
                                   "components": msgspec.to_builtins(loaded.components())}
        if fields.get("upscale") and mode == "img_gen":
            outputs += await self._chain_upscale(outputs, int(fields.get("upscale_repeats", 1)))
            details["upscaler"] = self.upscaler.loaded.request.model_name if self.upscaler.loaded else None
            if fields.get("upscale_auto_unload", True):
                self.upscaler.unload()
        return outputs, details

    async def _on_server(self, mode: CliMode, fields: dict[str, Any], job_dir: Path,
                         on_piece: Callable[[Piece], None]) -> list[Path]:
        server = await self.models.ensure_server()
        body = await anyio.to_thread.run_sync(self._server_body, mode, fields)
        try:
            result = await server.generate(mode, body, on_piece)
        except ServerFailed as exc:
            raise JobFailed(f"sd-server failed: {exc}") from None
        except anyio.get_cancelled_exc_class():
            # sd-server cannot interrupt a running generation: stop it; the next job restarts it.
            with anyio.CancelScope(shield=True):
                await self.models.stop_server()
            raise
        return await anyio.to_thread.run_sync(_write_server_result, mode, result, job_dir)

    def _server_body(self, mode: CliMode, fields: dict[str, Any]) -> dict[str, Any]:
        """sd-server takes images as base64 and LoRAs as a structured list (it ignores prompt tags)."""
        lora_dir = self.models.library.folder_of("lora")
        tags = parse_lora_tags(fields["prompt"], lora_dir)
        source = {**fields, "prompt": LORA_TAG.sub("", fields["prompt"]).strip(),
                  "lora": [{"path": t.path, "multiplier": t.multiplier, "is_high_noise": t.is_high_noise} for t in tags]}
        for target in ("init_image", "mask_image", "control_image", "end_image"):
            if target in fields:
                source[target] = _b64_file(Path(fields[target]))
        for field in ("ref_images", "control_frames"):
            if f"{field}_files" in fields:
                source[field] = [_b64_file(Path(p)) for p in fields[f"{field}_files"]]
        body = build_server_body(source)
        body["output_format"] = "webm" if mode == "vid_gen" else "png"
        return body

    def _preview_plan(self, job_id: str, loaded: LoadedModel, fields: dict[str, Any], mode: CliMode,
                      job_dir: Path) -> PreviewPlan | None:
        """Whether this job previews, and how. `tae` needs a TAESD: the model's own, else a fitting one from
        taesd/ (preview-only), else the cheap `proj` projection (said in the events' `note`)."""
        settings, wanted = self.previews.settings, fields.get("preview")
        if wanted is False or (wanted is None and not (settings.active and self.watched(job_id))):
            return None
        if not settings.active:
            settings = msgspec.structs.replace(settings, enabled=True, mode="proj")
        context: dict[str, Any] = {}
        note = None
        if settings.mode == "tae" and "taesd" not in loaded.context:
            family = loaded.architecture.family if loaded.architecture else None
            taesd = find_taesd(self.models.library.folder_of("taesd"), family)
            if taesd is not None:
                context = {"taesd": str(taesd), "tae_preview_only": True}
            else:
                settings = msgspec.structs.replace(settings, mode="proj")
                note = f"no TAESD in taesd/ fits {family or 'this model'}: showing proj previews instead of tae"
        extension = ".webp" if mode == "vid_gen" else ".png"  # animated WebP for video previews
        return PreviewPlan(settings, context, job_dir / PREVIEW_DIR / f"preview{extension}", note)

    async def _on_cli(self, mode: CliMode, loaded: LoadedModel, fields: dict[str, Any], job_dir: Path,
                      on_piece: Callable[[Piece], None], job_id: str = "", plan: PreviewPlan | None = None) -> list[Path]:
        context = loaded.context
        watcher: PreviewWatcher | None = None
        if plan is not None:
            context = {**context, **plan.context}
            fields = {**fields, "preview_mode": plan.settings.mode, "preview_path": str(plan.path)}
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
            expected = [job_dir / IMAGE_NAME.format(i) for i in range(int(fields.get("batch_count", 1)))]
        argv = generation_argv(self.sd_cli, mode, context, fields, output)
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

    async def _chain_upscale(self, images: list[Path], repeats: int) -> list[Path]:
        upscaler = self.upscaler.require_loaded()
        results = []
        for image in images:
            target = image.with_name(image.stem + "_upscaled.png")
            await self._upscale_file(Path(upscaler.path), image, target, repeats, upscaler.request.tile_size,
                                     upscaler.request.n_threads, upscaler.scale)
            results.append(target)
        return results

    async def _run_upscale(self, record: JobRecord, job_dir: Path) -> tuple[list[Path], dict[str, Any]]:
        upscaler = self.upscaler.require_loaded()
        spec = record.spec
        passes = spec["passes"]
        target = job_dir / IMAGE_NAME.format(0)
        await self._upscale_file(Path(upscaler.path), job_dir / spec["inputs"]["image"], target, passes,
                                 spec["tile_size"], upscaler.request.n_threads, upscaler.scale)
        return [target], {"engine": "sd-cli (upscale mode)", "upscaler": upscaler.request.model_name,
                          "scale_per_pass": upscaler.scale, "passes": passes}

    async def _upscale_file(self, model: Path, source: Path, target: Path, repeats: int, tile_size: int,
                            n_threads: int, scale: int) -> None:
        argv = upscale_argv(self.sd_cli, model, source, target, repeats, tile_size, n_threads)
        result: RunResult = await run_binary(argv, cwd=target.parent)
        # sd-cli's upscale mode exits 0 and writes the unmodified input when the upscaler fails.
        if not result.ok or result.error_lines or not target.is_file():
            raise JobFailed(result.failure_reason("sd-cli upscale"))
        expected = await anyio.to_thread.run_sync(_scaled_size, source, scale ** repeats)
        actual = await anyio.to_thread.run_sync(_image_size, target)
        if actual != expected:
            raise JobFailed(f"sd-cli upscale wrote {actual[0]}x{actual[1]}, expected {expected[0]}x{expected[1]}")


class PreviewPlan(msgspec.Struct):
    settings: PreviewSettings
    context: dict[str, Any]  # context overrides (a preview-only TAESD)
    path: Path
    note: str | None = None


# Which TAESD file names fit which architecture family (madebyollin's naming).
TAESD_NAMES: dict[str, tuple[str, ...]] = {
    "SD1": ("taesd_", "taesd."), "SD2": ("taesd_", "taesd."), "SDXL": ("taesdxl",), "SD3": ("taesd3",),
    "Flux": ("taef1",), "Chroma": ("taef1",), "FLUX.2": ("taef2",), "Wan": ("taew2",), "Qwen-Image": ("taew2_1", "taeqwen"),
}


def find_taesd(folder: Path, family: str | None) -> Path | None:
    fragments = TAESD_NAMES.get(family or "", ())
    if not fragments or not folder.is_dir():
        return None
    for path in sorted(folder.rglob("*")):
        if path.is_file() and any(fragment in path.name.lower() for fragment in fragments):
            return path
    return None


def _b64_file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _scaled_size(path: Path, factor: int) -> tuple[int, int]:
    width, height = _image_size(path)
    return width * factor, height * factor


def _write_server_result(mode: CliMode, result: dict[str, Any], job_dir: Path) -> list[Path]:
    if mode == "vid_gen":
        target = job_dir / VIDEO_NAME
        target.write_bytes(base64.b64decode(result["b64_json"]))
        return [target]
    written = []
    for index, data in enumerate(decode_images(result)):
        target = job_dir / IMAGE_NAME.format(index)
        target.write_bytes(data)
        written.append(target)
    return written


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

