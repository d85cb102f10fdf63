"""The assembled service: settings -> library, model manager, upscaler, queue and generation; start-up
restores the queue and the model and upscaler that were loaded."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import anyio
import msgspec

from orchestrator.event_stream import EventHub
from orchestrator.events import Event, EventBus, utc_timestamp
from orchestrator.output_folder import OutputFolder
from orchestrator.previews import PreviewStore
from orchestrator.prompt_help import Assistant, PromptEnhancer
from orchestrator.generation import GenerationService
from orchestrator.hashing import HashCache
from orchestrator.library import ModelLibrary
from orchestrator.models import ModelManager
from orchestrator.conversion import ConversionService
from orchestrator.downloads import DownloadService
from orchestrator.queue import DOWNLOAD_TYPES, LANES, JobQueue, JobRecord, ProgressReport
from orchestrator.schemas import LoadModelRequest
from orchestrator.settings import Settings
from orchestrator.upscaler import UpscalerLoadRequest, UpscalerManager
from runners.binaries import Binaries, locate_binaries
from runners.capabilities import Capabilities, read_capabilities
from runners.process import CHILDREN

log = logging.getLogger("sdcpp_restapi")
HASH_CACHE_FILE = ".hash_cache.json"
CHILDREN_FILE = ".children.json"


class Service:
    def __init__(self, settings: Settings, binaries: Binaries, capabilities: Capabilities) -> None:
        self.settings = settings
        self.binaries = binaries
        self.capabilities = capabilities
        self.bus = EventBus()
        self.hub = EventHub(self.bus)
        self.started_monotonic = time.monotonic()
        self.library = ModelLibrary(settings.model_folders())
        self.models = ModelManager(self.library, self.bus, binaries.sd_server, settings.load_timeout_s)
        self.upscaler = UpscalerManager(self.library, self.bus)
        self.output_root: Path = settings.output_root()
        self.hashes = HashCache(self.output_root / HASH_CACHE_FILE)
        self.previews = PreviewStore(self.output_root)
        self.output = OutputFolder(self.output_root)
        self.queue = JobQueue(self.output_root, self.bus, settings.max_history)
        self.queue.model_state = lambda: msgspec.to_builtins(self.models.loaded.request) if self.models.loaded else None
        self.queue.upscaler_state = (
            lambda: msgspec.to_builtins(self.upscaler.loaded.request) if self.upscaler.loaded else None)
        self.generation = GenerationService(self.queue, self.models, self.upscaler, binaries.sd_cli, capabilities,
                                            settings.limits, self.previews, self.hub.watching, self.bus)
        self.enhancer = PromptEnhancer(self.output_root / ".ollama_state.json", settings.ollama)
        self.assistant = Assistant(self.output_root / ".assistant_state.json", settings.assistant)
        self.conversion = ConversionService(self.queue, self.library, binaries.sd_cli, capabilities)
        self.downloads = DownloadService(self.queue, self.library, self.hashes, settings.downloads)

    async def execute(self, record: JobRecord, report: ProgressReport) -> list[str]:
        """The queue workers' executor: each job type to the service that runs it."""
        if record.job.type == "convert":
            return await self.conversion.execute(record)
        if record.job.type in DOWNLOAD_TYPES:
            return await self.downloads.execute(record, report)
        return await self.generation.execute(record, report)

    def status_data(self) -> dict[str, object]:
        listing = self.queue.listing()
        loaded = self.models.loaded
        return {
            "pending_count": listing.pending_count, "processing_count": listing.processing_count,
            "completed_count": listing.completed_count, "failed_count": listing.failed_count,
            "total_count": listing.total_count,
            "model_loaded": loaded is not None, "model_name": loaded.name if loaded else None,
            "model_loading": self.models.loading_name is not None,
            "upscaler_loaded": self.upscaler.loaded is not None,
            "uptime_seconds": round(time.monotonic() - self.started_monotonic, 1),
        }

    def status_event(self) -> Event:
        return Event("server_status", utc_timestamp(), self.status_data())

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.settings.status_interval_s)
            self.bus.publish("server_status", self.status_data())

    async def _restore(self) -> None:
        await anyio.to_thread.run_sync(self.queue.restore)
        if self.queue.restored_upscaler:
            upscaler = msgspec.convert(self.queue.restored_upscaler, UpscalerLoadRequest)
            try:
                await self.upscaler.load(upscaler)
            except Exception as exc:
                log.warning("could not restore upscaler %s: %s", upscaler.model_name, exc)
        if self.queue.restored_model:
            request = msgspec.convert(self.queue.restored_model, LoadModelRequest)
            try:
                await self.models.load(request)
                log.info("restored loaded model %s", request.model_name)
            except Exception as exc:  # the model may have been removed meanwhile: start without it
                log.warning("could not restore model %s: %s", request.model_name, exc)

    @asynccontextmanager
    async def running(self) -> AsyncIterator["Service"]:
        """Restore state, run the worker while the context is open; on exit stop the worker and any
        resident sd-server."""
        for folder in self.library.folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        self.output_root.mkdir(parents=True, exist_ok=True)
        CHILDREN.configure(self.output_root / CHILDREN_FILE)
        if stale := CHILDREN.reap_stale():
            log.warning("killed %d sd.cpp process(es) left by a previous run: %s", len(stale), stale)
        async with anyio.create_task_group() as tasks:
            self.models.task_group = tasks
            await self._restore()
            for lane in LANES:
                tasks.start_soon(self.queue.run_worker, self.execute, lane)
            tasks.start_soon(self._heartbeat)
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self.models.stop_server()
                tasks.cancel_scope.cancel()


async def build_service(settings: Settings) -> Service:
    selected = settings.selected_backend()
    binaries = locate_binaries(settings.backend, selected.sd_cli, selected.sd_server)
    capabilities = await read_capabilities(binaries.sd_cli)
    return Service(settings, binaries, capabilities)
