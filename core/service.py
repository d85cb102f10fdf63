"""The assembled service: settings -> store, library, model manager, upscaler, queue, generation and the other
features; start-up restores the queue and the model and upscaler that were loaded."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import msgspec

from core.events.bus import Event, EventBus
from core.events.replay import EventLog
from core.events.stream import EventHub
from core.events.types import ServerStatus
from core.generation.engine import GenerationEngine
from core.generation.previews import PreviewStore
from core.generation.specs import GenerationJob
from core.generation.submit import GenerationSubmitter
from core.hosts.dispatch import RemoteQueue
from core.hosts.worker import WorkerHost
from core.job_types import JOB_CODEC
from core.jobs.idempotency import IdempotentSubmits
from core.jobs.queue import LANES, JobFailed, JobQueue, ProgressReport
from core.jobs.records import JobRecord
from core.jobs.schemas import Job
from core.legacy_json import import_legacy_files
from core.login_sessions import LoginSessions
from core.metrics import ServiceMetrics
from core.models.architecture import PRESETS, Architectures, size_multiple
from core.models.conversion import ConversionService
from core.models.downloads import Destinations, DownloadService
from core.models.hashing import HashCache
from core.models.library import ModelLibrary
from core.models.manager import ModelManager
from core.models.schemas import HealthResponse, LoadedModelInfo
from core.models.specs import ConvertJob, DownloadJob, HashJob
from core.output.folder import OutputFolder
from core.prompt_help.features import Assistant, PromptEnhancer
from core.settings import Settings
from core.store import Store
from core.store.postgres import PostgresStore
from core.store.sqlite import STORE_FILE, SqliteStore
from core.upscale.specs import UpscaleJob
from core.upscale.submit import UpscaleSubmitter
from core.upscale.upscaler import UpscalerManager
from core.webhooks.delivery import Webhooks, webhook_secret
from core.workers.pool import WorkerSpec
from core.workers.schemas import WorkerInfo
from runners.binaries import Binaries, locate_binaries
from runners.capabilities import Capabilities, read_capabilities
from runners.devices import device_environment
from runners.process import CHILDREN

log = logging.getLogger("sdcpp_restapi")


class Service:
    def __init__(
        self,
        settings: Settings,
        binaries: Binaries,
        capabilities: Capabilities,
        store: Store,
        session_secret: bytes = b"",
        webhooks_secret: str = "",
    ) -> None:
        self.settings = settings
        self.session_secret = session_secret or secrets.token_bytes(32)  # signs login cookies
        self.binaries = binaries
        self.capabilities = capabilities
        self.store = store
        self.sessions = LoginSessions(store, self.session_secret)  # browser sign-ins, revocable
        self.bus = EventBus()
        self.hub = EventHub(self.bus)
        self.event_log = EventLog(self.bus, self._read_job)  # what a reconnecting client missed
        self.started_monotonic = time.monotonic()
        self.output_root: Path = settings.output_root()
        self.library = ModelLibrary(settings.model_folders())
        self.models = ModelManager(
            self.library,
            self.bus,
            store,
            binaries.sd_server,
            settings.load_timeout_s,
            binaries.worker,
            settings.worker_stall_timeout_s,
            worker_specs(settings, binaries),
        )
        self.models.configured = settings.models
        self.upscaler = UpscalerManager(self.library, self.bus, store)
        self.hashes = HashCache(store)
        self.previews = PreviewStore(store)
        self.output = OutputFolder(self.output_root)
        self.queue = JobQueue(store, self.output_root, self.bus, settings.retention, settings.limits.max_pending)
        self.idempotency = IdempotentSubmits(store, settings.idempotency_window_s)
        self.generation = GenerationSubmitter(self.queue, self.models, self.upscaler, capabilities, settings.limits)
        self.upscale = UpscaleSubmitter(self.queue, self.upscaler, settings.limits)
        self.engine = GenerationEngine(
            self.queue, self.models, self.upscaler, binaries.sd_cli, self.previews, self.hub.watching, self.bus
        )
        self.enhancer = PromptEnhancer(store, settings.ollama)
        self.assistant = Assistant(store, settings.assistant)
        self.conversion = ConversionService(self.queue, self.library, binaries.sd_cli, capabilities)
        self.downloads = DownloadService(self.queue, self.library, self.hashes, settings.downloads)
        self.metrics = ServiceMetrics(self.bus, self.queue, self.models)
        self.webhooks = Webhooks(
            store, settings.webhooks, Destinations(settings.downloads, settings.on_loopback), webhooks_secret
        )
        self.queue.check_admission(self.webhooks.check_job)
        self.queue.watch_finished(self.webhooks.job_finished)
        # With a PostgreSQL store, generation jobs run on the worker hosts (core/hosts/), not here.
        self.remote: RemoteQueue | None = None
        if settings.store.url:
            self.remote = RemoteQueue(settings.store.url, self.queue, self.models, self.bus, settings.heartbeat_s)
            self.models.remote = True

    async def execute(self, record: JobRecord, report: ProgressReport) -> list[str]:
        """The queue workers' executor: each job type to the feature that runs it."""
        spec = record.spec
        if isinstance(spec, (GenerationJob, UpscaleJob)):
            return await self.engine.execute(record, report)
        if isinstance(spec, ConvertJob):
            return await self.conversion.execute(spec)
        if isinstance(spec, DownloadJob):
            return await self.downloads.download(spec, report)
        if isinstance(spec, HashJob):
            record.job.result = await self.downloads.check_hash(spec)
            return []
        raise JobFailed(f"no executor for {record.job.type} jobs")

    def health(self) -> HealthResponse:
        models, upscaler = self.models, self.upscaler.loaded
        loaded = models.loaded
        return HealthResponse(
            status="ok",
            model_loaded=loaded is not None,
            model_loading=models.loading_name is not None,
            loading_model_name=models.loading_name,
            last_error=models.last_error,
            model_name=loaded.name if loaded else None,
            model_type=loaded.request.model_type if loaded else None,
            model_architecture=loaded.architecture.variant if loaded and loaded.architecture else None,
            loaded_components=msgspec.structs.asdict(loaded.components()) if loaded else {},
            upscaler_loaded=upscaler is not None,
            upscaler_name=upscaler.request.model_name if upscaler else None,
            workers=self.workers(),
        )

    def workers(self) -> list[WorkerInfo]:
        """This host's workers, or with a PostgreSQL store every worker host's."""
        return self.remote.worker_infos() if self.remote is not None else self.models.workers()

    def loaded_model(self) -> LoadedModelInfo:
        loaded, upscaler = self.models.loaded, self.upscaler.loaded
        return LoadedModelInfo(
            model_name=loaded.name if loaded else None,
            model_type=loaded.request.model_type if loaded else None,
            model_architecture=loaded.architecture.variant if loaded and loaded.architecture else None,
            load_request=loaded.request if loaded else None,
            upscaler_name=upscaler.request.model_name if upscaler else None,
        )

    def architectures(self) -> Architectures:
        loaded = self.models.loaded
        preset_name = self.models.preset_name()
        architecture = loaded.architecture if loaded else None
        current = PRESETS[preset_name] if preset_name else None
        if current is not None:  # the loaded variant's own multiple (Wan2.2 TI2V: 32 where Wan's is 16)
            current = msgspec.structs.replace(current, multiple=size_multiple(architecture) or current.multiple)
        return Architectures(PRESETS, architecture.variant if architecture else None, current)

    def status(self) -> ServerStatus:
        counts = self.queue.counts
        loaded = self.models.loaded
        return ServerStatus(
            pending_count=counts["pending"],
            processing_count=counts["processing"],
            completed_count=counts["completed"],
            failed_count=counts["failed"],
            total_count=sum(counts.values()),
            model_loaded=loaded is not None,
            model_name=loaded.name if loaded else None,
            model_loading=self.models.loading_name is not None,
            upscaler_loaded=self.upscaler.loaded is not None,
            uptime_seconds=round(time.monotonic() - self.started_monotonic, 1),
        )

    def status_event(self) -> Event:
        return self.bus.current(self.status())

    async def _read_job(self, job_id: str) -> Job | None:
        record = await self.queue.record(job_id)
        return record.job if record else None

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.settings.status_interval_s)
            self.bus.publish(self.status())

    async def _restore(self) -> None:
        await self.sessions.restore()
        await self.hashes.restore()
        await self.previews.restore()
        await self.enhancer.restore()
        await self.assistant.restore()
        await self.queue.restore()
        if upscaler := await self.upscaler.restore():
            try:
                await self.upscaler.load(upscaler)
            except Exception as exc:
                log.warning("could not restore upscaler %s: %s", upscaler.model_name, exc)
        if model := await self.models.restore():
            try:
                await self.models.load(model)
                log.info("restored loaded model %s", model.model_name)
            except Exception as exc:  # the model may have been removed meanwhile: start without it
                log.warning("could not restore model %s: %s", model.model_name, exc)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Service]:
        """Restore state, run the queue's workers while the context is open; on exit stop them and the resident
        process (worker or sd-server) of the loaded model."""
        await anyio.to_thread.run_sync(self._prepare_folders)
        CHILDREN.configure(self.store)
        if stale := await anyio.to_thread.run_sync(CHILDREN.reap_stale):
            log.warning("killed %d sd.cpp process(es) left by a previous run: %s", len(stale), stale)
        async with anyio.create_task_group() as tasks:
            self.models.task_group = tasks
            await self._restore()
            if self.remote is not None:
                await tasks.start(self.remote.run)
            for lane in LANES:  # generation jobs go to the worker pool, as many at once as it has workers
                tasks.start_soon(
                    self.queue.run_worker, self.execute, lane, self.models.pool if lane == "generation" else None
                )
            tasks.start_soon(self._heartbeat)
            tasks.start_soon(self.webhooks.run)
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self.models.stop_resident()
                tasks.cancel_scope.cancel()
        CHILDREN.configure(None)
        await self.store.aclose()

    def _prepare_folders(self) -> None:
        for folder in self.library.folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        self.output_root.mkdir(parents=True, exist_ok=True)


def worker_specs(settings: Settings, binaries: Binaries) -> list[WorkerSpec]:
    """The [[workers]] of the settings with their binaries and device environment: the server's binaries for
    workers on its backend, the named backend's for the others (BinaryNotFound says how to build them)."""
    specs = []
    for worker in settings.worker_list():
        if worker.backend == binaries.backend:
            found = binaries
        else:
            other = settings.selected_backend(worker.backend)
            found = locate_binaries(worker.backend, other.sd_cli, other.sd_server, other.sd_worker)
        specs.append(
            WorkerSpec(
                worker.name,
                worker.backend,
                found.sd_server,
                found.worker,
                worker.device,
                worker.threads,
                worker.memory_mib,
                device_environment(worker.backend, worker.device),
            )
        )
    return specs


async def build_worker_host(settings: Settings) -> tuple[Service, WorkerHost]:
    """A worker host: the service's workers and generation engine, its own state (load profiles, child processes)
    in a private store in the host's state folder (never a job store: jobs come with their specs), outputs into
    the shared output folder. Previews follow the settings (no client of this host watches a job)."""
    selected = settings.selected_backend()
    binaries = locate_binaries(settings.backend, selected.sd_cli, selected.sd_server, selected.sd_worker)
    capabilities = await read_capabilities(binaries.sd_cli)
    state = settings.host_state_dir()
    await anyio.to_thread.run_sync(lambda: state.mkdir(parents=True, exist_ok=True))
    store = await anyio.to_thread.run_sync(open_store, state)
    local = msgspec.structs.replace(settings, store=msgspec.structs.replace(settings.store, url=""))
    service = Service(local, binaries, capabilities, store, await session_secret(store))
    service.engine.watched = lambda _job_id: True
    host = WorkerHost(
        settings.this_host(),
        settings.store.url,
        settings.heartbeat_s,
        service.models,
        service.engine,
        service.bus,
        JOB_CODEC,
    )
    return service, host


SESSION_SECRET_KEY = "session_secret"


async def session_secret(store: Store) -> bytes:
    """A random secret made once and kept in the store, so login cookies survive a restart."""
    if stored := await store.value(SESSION_SECRET_KEY, str):
        return bytes.fromhex(stored)
    made = secrets.token_bytes(32)
    await store.set_value(SESSION_SECRET_KEY, made.hex())
    return made


def open_store(output_root: Path, url: str = "") -> Store:
    """The PostgreSQL store of `[store] url`, else the SQLite store in the output folder with any state files of an
    older version imported first (into PostgreSQL they come through the SQLite store: `import-store`). Blocking;
    raises StoreUnusable (the server stops) for a store or old file it cannot use."""
    if url:
        return PostgresStore(url, JOB_CODEC)
    store = SqliteStore(output_root / STORE_FILE, JOB_CODEC)
    try:
        import_legacy_files(store, output_root)
    except BaseException:
        store.close()
        raise
    return store


async def build_service(settings: Settings) -> Service:
    selected = settings.selected_backend()
    binaries = locate_binaries(settings.backend, selected.sd_cli, selected.sd_server, selected.sd_worker)
    capabilities = await read_capabilities(binaries.sd_cli)
    store = await anyio.to_thread.run_sync(open_store, settings.output_root(), settings.store.url)
    secret, _ = await webhook_secret(settings.webhooks, store)
    return Service(settings, binaries, capabilities, store, await session_secret(store), secret)
