"""Which model is loaded, with which components and options, and the resident process that holds it.

"Loaded" means loaded: a load makes the model resident on every worker of the pool (core/workers/) and keeps it for
the following jobs: in our worker (`sdcpp-worker`, JSON lines on stdin/stdout) when the worker's backend has it, else
in an sd-server on a private loopback port. Unload stops them. A load or unload takes every worker
(`WorkerPool.exclusive`), so it waits for the running jobs instead of pulling the model from under them.

Resident model caches: our worker keeps several models within its worker's `memory_mib` budget (least recently used
out, by the estimate of their files' sizes), so a job naming another model (`model`) loads it on the worker that
runs it only, beside the default model when the budget allows, and a later job for either loads nothing. A worker
with no budget set, or on sd-server, holds one model at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import msgspec
from anyio.abc import TaskGroup

from core.errors import BadRequest, NotFound, ServiceError
from core.events.bus import EventBus
from core.events.types import ModelLoaded, ModelLoadingProgress, ModelUnloaded
from core.models.architecture import Architecture, UnreadableModel, detect_file, missing_components, preset_of
from core.models.components import COMPONENTS, REPORTED_COMPONENTS
from core.models.embeddings import embeddings_for_sdcpp
from core.models.library import ModelFile, ModelLibrary
from core.models.schemas import LoadedComponents, LoadModelRequest, MainModelType, ModelInspection
from core.stored_values import ValueStore
from core.workers.pool import Resident, Worker, WorkerInfo, WorkerPool, WorkerSpec
from runners.flags import build_argv
from runners.options import CONTEXT_FLAGS, ContextOptions
from runners.progress import Bar, LogLine, Piece
from runners.resident_worker import ResidentWorker, WorkerFailed
from runners.sdserver import ResidentServer, ServerFailed

__all__ = ["LoadFailed", "LoadedModel", "ModelManager", "Resident"]

# The message of a load's first progress event: the moment a load starts (after any running job let go).
LOAD_STARTING = "starting"
LOADED_MODEL_KEY = "loaded_model"  # the load request, restored after a restart
LOAD_PROFILES_KEY = "load_profiles"  # model name -> its last successful load request


class LoadFailed(ServiceError):
    status = 500


# Load options that are not sd.cpp context options, with why (tests/unit/test_seam.py holds every other load option
# to a field of ContextOptions).
LOAD_OPTIONS_NOT_AT_LOAD: dict[str, str] = {
    "vae_decode_only": "sd.cpp decides it per run itself (no flag); accepted for the contract",
    "free_params_immediately": "fixed by the binary (sd-cli frees, sd-server keeps); accepted for the contract",
    "flow_shift": "sd.cpp applies it per generation: the job's default (with_load_defaults)",
    "vae_tiling": "sd.cpp applies it per generation: the job's default (with_load_defaults)",
    "vae_tile_size_x": "per generation, with vae_tiling",
    "vae_tile_size_y": "per generation, with vae_tiling",
    "vae_tile_overlap": "per generation, with vae_tiling",
}


class LoadedModel(msgspec.Struct):
    request: LoadModelRequest
    context: ContextOptions  # the model files by role and the load options, as sd.cpp takes them
    architecture: Architecture | None = None
    mib: int = 0  # the estimate of what it takes resident: its files' sizes (as the worker counts them)

    @property
    def name(self) -> str:
        return self.request.model_name or ""

    def components(self) -> LoadedComponents:
        return LoadedComponents(**{field: getattr(self.request, field) for field in REPORTED_COMPONENTS})


class ModelManager:
    def __init__(
        self,
        library: ModelLibrary,
        bus: EventBus,
        store: ValueStore,
        sd_server: Path,
        ready_timeout_s: float = 600.0,
        worker: Path | None = None,
        stall_timeout_s: float = 300.0,
        workers: list[WorkerSpec] | None = None,
    ) -> None:
        self.library = library
        self.store = store
        self.bus = bus
        self.sd_server = sd_server
        self.worker = worker
        self.stall_timeout_s = stall_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.loaded: LoadedModel | None = None
        self.loading_name: str | None = None
        self.last_error: str | None = None
        # one worker on the server's binaries unless the config declares [[workers]]
        self.pool = WorkerPool(workers or [WorkerSpec("default", "", sd_server, worker)])
        self.pool.revive = self._revive
        # worker name -> the models its resident process holds, by name (their order: the worker's `models`)
        self.held: dict[str, dict[str, LoadedModel]] = {}
        self.configured: Mapping[str, LoadModelRequest] = {}  # the config's [models] load profiles
        self.task_group: TaskGroup | None = None  # set by the service: resident processes live in it
        # An API host whose generation jobs run on worker hosts (a PostgreSQL store): a load checks the model and
        # makes it the default, and the worker hosts load it (core/hosts/); no resident process here.
        self.remote = False

    # --------------------------------------------------------------------------------- resolution

    def resolve_context(self, request: LoadModelRequest) -> tuple[ContextOptions, Architecture | None]:
        """Every named file resolved safely in its folder, and the main model's architecture.
        Blocking (reads file headers): run off the event loop."""
        if not request.model_name:
            raise BadRequest("model_name is required")
        try:
            main = self.library.resolve(request.model_type, request.model_name, "model_name")
        except NotFound:
            raise LoadFailed(f"Internal error: Model not found: {request.model_name}") from None
        files: dict[str, str] = {request.model_type: str(main)}  # role -> path
        for component in COMPONENTS:
            field, model_type = component.field, component.model_type
            name = getattr(request, field)
            if name:
                try:
                    files[field] = str(self.library.resolve(model_type, name, field))
                except NotFound:
                    raise BadRequest(f"{field}: model not found in the {model_type} folder: {name}") from None
        diffusion_only = request.model_type == "diffusion"
        try:
            architecture = detect_file(main, diffusion_only)
        except UnreadableModel:
            architecture = None  # torch pickles are not inspected; sd.cpp itself decides at load
        if architecture is not None:
            missing = missing_components(architecture.family, set(files), diffusion_only)
            if missing:
                raise BadRequest(
                    f"{architecture.variant} needs {', '.join(missing)}: add "
                    f"{' and '.join(repr(m) for m in missing)} to the load request"
                )
        embeddings = self.library.folder_of("embedding")
        folders = {
            "lora_dir": str(self.library.folder_of("lora")),
            # f16 embeddings as f32 copies: sd.cpp misreads them (core/models/embeddings.py)
            "embeddings_dir": str(embeddings_for_sdcpp(embeddings)) if embeddings.is_dir() else None,
        }
        options = msgspec.to_builtins(request.options)
        for per_generation in LOAD_OPTIONS_NOT_AT_LOAD:
            options.pop(per_generation)
        return msgspec.convert({**files, **folders, **options}, ContextOptions), architecture

    def _loaded(self, request: LoadModelRequest) -> LoadedModel:
        """The request resolved, with its estimate. Blocking: run off the event loop."""
        context, architecture = self.resolve_context(request)
        loaded = LoadedModel(request, context, architecture, files_mib(context))
        self.pool.model_mib[loaded.name] = loaded.mib
        return loaded

    # --------------------------------------------------------------------------------- life cycle

    def _loading_listener(self, name: str) -> Callable[[Piece], None]:
        def listen(piece: Piece) -> None:
            if isinstance(piece, Bar) and piece.unit in ("MB/s", "GB/s"):
                self.bus.publish(
                    ModelLoadingProgress(
                        name,
                        step=piece.step,
                        total_steps=piece.total,
                        percentage=round(100.0 * piece.step / max(piece.total, 1), 1),
                    )
                )
            elif isinstance(piece, LogLine) and piece.message.startswith("loading "):
                self.bus.publish(ModelLoadingProgress(name, message=piece.message))

        return listen

    async def _start_resident(self, worker: Worker, loaded: LoadedModel, report: bool = True) -> Resident:
        """Start a resident process on the worker holding the model; `report`: publish its loading progress (one
        worker's only when all load at once, so the events read as one load)."""
        assert self.task_group is not None, "the service must be running"
        spec = worker.spec
        flags = self._flags(worker, loaded)
        resident: Resident = (
            ResidentWorker(
                [str(spec.worker), *flags], self.ready_timeout_s, self.stall_timeout_s, resident_name=loaded.name
            )
            if spec.worker
            else ResidentServer([str(spec.sd_server), *flags], self.ready_timeout_s)
        )
        resident.env = dict(spec.env)
        resident.listener = self._loading_listener(loaded.name) if report else None
        try:
            await self.task_group.start(resident.run)
        finally:
            resident.listener = None
        worker.resident, worker.last_error = resident, None
        worker.models, worker.loads = {loaded.name: loaded.mib}, worker.loads + 1
        self.held[worker.name] = {loaded.name: loaded}
        return resident

    @staticmethod
    def _flags(worker: Worker, loaded: LoadedModel) -> list[str]:
        threads = worker.spec.threads
        context = msgspec.structs.replace(loaded.context, n_threads=threads) if threads else loaded.context
        return build_argv(CONTEXT_FLAGS, context)

    def _holds(self, worker: Worker, loaded: LoadedModel) -> bool:
        """Whether the worker's live process holds this model, loaded with this request."""
        held = self.held.get(worker.name, {}).get(loaded.name)
        return (
            worker.resident is not None
            and worker.resident.alive
            and held is not None
            and held.request == loaded.request
            and loaded.name in worker.models
        )

    async def _make_resident(self, worker: Worker, loaded: LoadedModel, report: bool = True) -> Resident:
        """The model resident on the worker: already (now its most recently used), or loaded beside the others into
        our live worker after evicting the least recently used ones the budget needs, or in a new process."""
        resident = worker.resident
        if self._holds(worker, loaded):
            worker.touch(loaded.name)
            assert resident is not None
            return resident
        if not isinstance(resident, ResidentWorker) or not resident.alive or not worker.holds_several:
            await self.stop_resident(worker)
            return await self._start_resident(worker, loaded, report)
        held = self.held.setdefault(worker.name, {})
        for name in worker.evictions(loaded.name, loaded.mib) + ([loaded.name] if loaded.name in worker.models else []):
            await resident.unload(name)
            held.pop(name, None)
            worker.models.pop(name, None)
        await resident.load(loaded.name, self._flags(worker, loaded))
        worker.loads += 1
        held[loaded.name] = loaded
        worker.models = {model.name: model.mib for model in resident.models if model.name in held}
        worker.last_error = None
        return resident

    async def stop_resident(self, worker: Worker | None = None) -> None:
        """Stop one worker's resident process (to cancel sd-server's running job: it cannot stop one; our worker
        cancels its own job and is stopped only when it does not in time), or every worker's (on unload and
        shutdown); `ensure_resident` starts it again for the next job while a model is loaded."""
        for each in [worker] if worker else self.pool.workers:
            resident, each.resident, each.models = each.resident, None, {}
            self.held.pop(each.name, None)
            if resident is not None:
                await resident.stop()

    async def _start_everywhere(self, loaded: LoadedModel) -> None:
        """The model resident on every worker at once (beside others where the budget allows); if one fails, none
        keeps it."""
        failures: list[str] = []

        async def start(worker: Worker) -> None:
            try:
                await self._make_resident(worker, loaded, report=worker is self.pool.workers[0])
            except (ServerFailed, WorkerFailed) as exc:
                worker.last_error = str(exc)
                failures.append(f"{worker.name}: {exc}" if len(self.pool.workers) > 1 else str(exc))

        async with anyio.create_task_group() as starting:
            for worker in self.pool.workers:
                starting.start_soon(start, worker)
        if failures:
            await self.stop_resident()
            raise WorkerFailed("; ".join(failures))

    def _revive(self, worker: Worker) -> bool:
        """After a job: a worker whose process died (a crash) or was stopped (a cancelled job) starts it again in
        the background, so the next job finds it ready; True when it does."""
        held = self.held.get(worker.name, {})
        target = held.get(worker.model or "") or self.loaded
        if target is None or self.task_group is None or (worker.resident is not None and worker.resident.alive):
            return False
        self.task_group.start_soon(self._restart, worker, target)
        return True

    async def _restart(self, worker: Worker, target: LoadedModel) -> None:
        try:
            await self._start_resident(worker, target)
        except (ServerFailed, WorkerFailed) as exc:
            worker.last_error = f"Failed to restart model: {target.name}: {exc}"
        finally:
            self.pool.ready(worker)

    async def load(self, request: LoadModelRequest) -> LoadedModel:
        self.loading_name = request.model_name
        try:
            async with self.pool.exclusive():
                self.bus.publish(ModelLoadingProgress(request.model_name, message=LOAD_STARTING))
                try:
                    loaded = await anyio.to_thread.run_sync(self._loaded, request)
                except ServiceError as exc:
                    self.last_error = exc.message
                    raise
                architecture = loaded.architecture
                self._forget_default()
                try:
                    if not self.remote:
                        await self._start_everywhere(loaded)
                except (ServerFailed, WorkerFailed) as exc:
                    self.last_error = f"Failed to load model: {request.model_name}: {exc}"
                    raise LoadFailed(self.last_error) from None
                self.loaded, self.last_error = loaded, None
                self.pool.default_model = loaded.name
                profiles = await self.store.value(LOAD_PROFILES_KEY, dict[str, LoadModelRequest]) or {}
                profiles[loaded.name] = request
                await self.store.set_value(LOAD_PROFILES_KEY, profiles)
        finally:
            self.loading_name = None
            with anyio.CancelScope(shield=True):
                await self.store.set_value(LOADED_MODEL_KEY, self.loaded.request if self.loaded else None)
        self.bus.publish(ModelLoaded(loaded.name, request.model_type, architecture.variant if architecture else None))
        return loaded

    def _forget_default(self) -> None:
        """The loaded (default) model is no more; on a load it may stay resident as a cache where budgets allow."""
        self.pool.default_model = None
        if self.loaded is not None:
            name, self.loaded = self.loaded.name, None
            self.bus.publish(ModelUnloaded(name))

    async def _unload_locked(self) -> None:
        await self.stop_resident()
        self._forget_default()

    async def unload(self) -> None:
        async with self.pool.exclusive():
            await self._unload_locked()
            await self.store.set_value(LOADED_MODEL_KEY, None)

    async def remember_profile(self, request: LoadModelRequest) -> None:
        """Keep a model's load request as its profile (a worker host: how the API host that sent a job loads it)."""
        profiles = await self.store.value(LOAD_PROFILES_KEY, dict[str, LoadModelRequest]) or {}
        if request.model_name and profiles.get(request.model_name) != request:
            profiles[request.model_name] = request
            await self.store.set_value(LOAD_PROFILES_KEY, profiles)

    async def load_profile(self, model_name: str) -> LoadModelRequest | None:
        """The components and options of the model's last successful load, if any."""
        profiles = await self.store.value(LOAD_PROFILES_KEY, dict[str, LoadModelRequest]) or {}
        return profiles.get(model_name)

    async def inspect(self, model_type: MainModelType, model_name: str) -> ModelInspection:
        """The architecture read from the file's header, its preset and the model's load profile: a load form
        offers the components the architecture needs before anything is loaded."""
        path = await anyio.to_thread.run_sync(self.library.resolve, model_type, model_name, "model_name")
        try:
            architecture = await anyio.to_thread.run_sync(detect_file, path, model_type == "diffusion")
        except UnreadableModel:
            architecture = None
        preset = preset_of(architecture)
        return ModelInspection(
            model_name,
            model_type,
            architecture.family if architecture and preset else None,
            architecture.variant if architecture else None,
            preset,
            await self.load_profile(model_name),
        )

    async def select(self, name: str, configured: Mapping[str, LoadModelRequest], field: str = "model") -> LoadedModel:
        """The model a client names, loaded if it is not already: with its load profile, else the config's
        `[models."<name>"]` table, else the file alone (a missing component is a 400 naming it)."""
        found = await anyio.to_thread.run_sync(self.library.find_main_model, name, field)
        if self.loaded is not None and self.loaded.name == found.name and self.loaded.request.model_type == found.type:
            return self.loaded
        return await self.load(await self._request_for(found, configured))

    async def _request_for(self, found: ModelFile, configured: Mapping[str, LoadModelRequest]) -> LoadModelRequest:
        """How a model chosen by name is loaded: its load profile, else the config's `[models."<name>"]` table, else
        the file alone."""
        stem = Path(found.name).with_suffix("").as_posix()
        request = (
            await self.load_profile(found.name)
            or configured.get(found.name)
            or configured.get(stem)
            or LoadModelRequest(model_name=found.name, model_type=found.type)  # type: ignore[arg-type]
        )
        return msgspec.structs.replace(request, model_name=found.name, model_type=found.type)

    async def model_named(self, name: str | None, field: str = "model") -> LoadedModel:
        """The model a job runs on: the loaded one (None), else the named one as a worker holds it or would load it
        (not loaded anywhere by this call). An unknown name or a missing component is a 400 naming `field`."""
        if not name:
            return self.require_loaded()
        found = await anyio.to_thread.run_sync(self.library.find_main_model, name, field)
        for known in (self.loaded, *(model for held in self.held.values() for model in held.values())):
            if known is not None and known.name == found.name and known.request.model_type == found.type:
                return known
        request = await self._request_for(found, self.configured)
        try:
            return await anyio.to_thread.run_sync(self._loaded, request)
        except ServiceError as exc:
            raise BadRequest(f"{field}: {found.name}: {exc.message}") from None

    async def restore(self) -> LoadModelRequest | None:
        """The model that was loaded when the server last stopped (loaded again by the service)."""
        return await self.store.value(LOADED_MODEL_KEY, LoadModelRequest)

    async def ensure_resident(self, worker: Worker, loaded: LoadedModel | None = None) -> Resident:
        """The worker's resident process holding the job's model (default: the loaded one): resident already, loaded
        beside the others (least recently used out), or in a process restarted after a crash or a stop: on this
        worker only, the others go on (call while the worker runs the job)."""
        loaded = loaded or self.require_loaded()
        try:
            return await self._make_resident(worker, loaded)
        except (ServerFailed, WorkerFailed) as exc:
            worker.last_error = self.last_error = f"Failed to restart model: {loaded.name}: {exc}"
            raise LoadFailed(self.last_error) from None

    @asynccontextmanager
    async def worker_for(self, job_id: str) -> AsyncIterator[Worker]:
        """The worker the queue handed the job to (the scheduler marked it busy for the job)."""
        worker = self.pool.running(job_id)
        if worker is None:
            raise LoadFailed(f"job {job_id} was not handed to a worker")
        yield worker

    def workers(self) -> list[WorkerInfo]:
        return self.pool.infos()

    # ------------------------------------------------------------------------------------- queries

    def require_loaded(self) -> LoadedModel:
        if self.loaded is None:
            raise BadRequest("No model loaded")
        return self.loaded

    def preset_name(self) -> str | None:
        architecture = self.loaded.architecture if self.loaded else None
        return architecture.family if architecture and preset_of(architecture) else None


def files_mib(context: ContextOptions) -> int:
    """The estimate of what a model takes resident: its files' sizes in MiB, each rounded up, as our worker counts
    them (runners/worker/worker.cpp: every load argument that is a regular file; folders are not counted)."""
    total = 0
    for value in msgspec.structs.astuple(context):
        if isinstance(value, str) and value:
            path = Path(value)
            if path.is_file():
                total += (path.stat().st_size + (1 << 20) - 1) >> 20
    return total
