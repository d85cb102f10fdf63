"""A worker host (`sdcpp-restapi worker`, or `serve` with a PostgreSQL store for its own [[workers]]): this host's
workers (core/workers pool, the generation engine) run as one Procrastinate worker with one job per worker at once,
listening only on the queues of the models whose files this host has (looked at with each heartbeat), so a host
without the file never takes the job. It keeps no job store: a job's spec and its model's load request come in the Procrastinate job.

What it reports: status, progress and previews as notices on our channel (previews through their table), the
outcome in sdcpp_hosts.outcomes before the task returns, then a notice. Its workers, their state and resident
models go to the host registry with each heartbeat. Cut off from the database, Procrastinate's worker stops; this
host then takes no jobs, logs it, and starts again once the database answers (the API hosts show its workers
`offline` meanwhile). Models load lazily on the worker a job lands on and stay resident there; a load asked on an
API host (POST /models/load) loads on every worker here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import anyio
import msgspec
import psycopg
from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.job_context import AbortReason
from procrastinate.worker import Worker

from core.errors import ServiceError
from core.events.bus import Event, EventBus, utc_timestamp
from core.events.types import JobPreview
from core.generation.specs import GenerationJob
from core.hosts.database import DatabaseDown, Link, listen
from core.hosts.schemas import (
    TASK,
    Ended,
    HostChanged,
    HostRow,
    LoadAsked,
    Notice,
    Outcome,
    PreviewPosted,
    RemoteJob,
    Started,
    Stepped,
    queue_for,
)
from core.jobs.queue import JobFailed, Transfer
from core.jobs.records import JobCodec, JobRecord
from core.jobs.schemas import Job, Progress
from core.models.manager import ModelManager
from core.models.types import MODEL_TYPES
from runners.progress import SamplingStep

if TYPE_CHECKING:
    from core.generation.engine import GenerationEngine

log = logging.getLogger("sdcpp_restapi")
CANCELLED = "Cancelled by client while processing"
CUT_OFF = "worker host %s: cut off from the shared database (%s): taking no jobs until it answers"
_remote_job = msgspec.json.Decoder(RemoteJob)


class WorkerHost:
    def __init__(
        self,
        name: str,
        url: str,
        heartbeat_s: float,
        models: ModelManager,
        engine: GenerationEngine,
        bus: EventBus,
        codec: JobCodec,
    ) -> None:
        self.name, self.url, self.heartbeat_s = name, url, heartbeat_s
        self.models, self.engine, self.codec = models, engine, codec
        self.link = Link(url)  # outcomes, previews, the registry
        self.notices = Link(url)  # notices, in the order they are sent
        self.state = "starting"
        self._taking: Worker | None = None  # Procrastinate's worker while it takes jobs
        self._listening: list[str] = []  # the models whose queues it listens on
        self.running: set[str] = set()  # our job ids running here
        self._send, self._outbox = anyio.create_memory_object_stream[Notice | JobPreview](1000)
        bus.subscribe(self._on_event)
        self.app = App(connector=PsycopgConnector(conninfo=url, min_size=1, max_size=4))
        self.app.task(name=TASK, pass_context=True)(self.generate)

    def model_names(self) -> list[str]:
        """The main model files this host has: it takes the jobs of their queues."""
        library = self.models.library
        return sorted({found.name for kind in MODEL_TYPES if kind.loadable for found in library.scan(kind)})

    # ------------------------------------------------------------------------------------------ running

    async def run(self) -> None:
        while True:
            try:
                await self.link.prepare()
                break
            except DatabaseDown as exc:
                log.error("worker host %s: %s; trying again in 2 s", self.name, exc.message)
                await anyio.sleep(2.0)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._sender)
            tasks.start_soon(self._heartbeat)
            tasks.start_soon(self._listen)
            try:
                await self._take_jobs()
            finally:
                with anyio.CancelScope(shield=True):
                    self.state = "stopped"
                    with anyio.move_on_after(2):
                        await self._beat()
                tasks.cancel_scope.cancel()

    async def _take_jobs(self) -> None:
        workers = len(self.models.pool.workers)
        while True:
            models = await anyio.to_thread.run_sync(self.model_names)
            queues = [queue_for(model) for model in models]
            if not queues:
                log.error("worker host %s: no model file in the models folder: taking no jobs", self.name)
                await anyio.sleep(10.0)
                continue
            try:
                await self.app.open_async()
                self.state = "up"
                log.info("worker host %s: taking jobs for %d model(s) on %d worker(s)", self.name, len(models), workers)
                worker = self._taking = Worker(
                    app=self.app,
                    queues=queues,
                    name=self.name,
                    concurrency=workers,
                    wait=True,
                    install_signal_handlers=False,
                    update_heartbeat_interval=max(self.heartbeat_s / 4, 0.2),
                    stalled_worker_timeout=self.heartbeat_s,
                    abort_job_polling_interval=1.0,
                    fetch_job_polling_interval=5.0,
                    listen_notify=True,
                )
                self._listening = models
                await worker.run()  # until stopped: the database went away, or the model files changed
                if self._listening is not models:
                    continue  # restarted on the new queues
            except (psycopg.Error, OSError, DatabaseDown, Exception) as exc:
                if self.state != "no database":
                    log.error(CUT_OFF, self.name, str(exc).strip() or type(exc).__name__)
                self.state = "no database"
            finally:
                self._taking = None
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await self.app.close_async()
            await anyio.sleep(2.0)

    async def _heartbeat(self) -> None:
        announced = False
        while True:
            try:
                await self._beat()
                if self.state == "no database" and self._taking is not None:
                    self.state = "up"  # Procrastinate's worker lived through it (its pool reconnected)
                    log.info("worker host %s: the shared database answers again: taking jobs", self.name)
                    await self._beat()
                if not announced:
                    await self.notices.notify(HostChanged(self.name))
                    announced = True
            except DatabaseDown as exc:
                if self.state != "no database":
                    log.error(CUT_OFF, self.name, exc.message)
                self.state, announced = "no database", False
            await anyio.sleep(max(self.heartbeat_s / 3, 0.2))

    async def _beat(self) -> None:
        models = await anyio.to_thread.run_sync(self.model_names)
        if self._taking is not None and models != self._listening:
            # model files added or removed: listen on their queues (running jobs finish first)
            log.info("worker host %s: its model files changed; taking jobs for %d model(s)", self.name, len(models))
            self._listening = models
            self._taking.stop()
        await self.link.beat(HostRow(self.name, self.state, self.models.workers(), models))

    async def _listen(self) -> None:
        """Model loads asked on an API host."""
        while True:
            try:
                async for notice in listen(self.url):
                    if isinstance(notice, LoadAsked):
                        self.models.task_group and self.models.task_group.start_soon(self._load, notice)
            except (psycopg.Error, OSError):
                await anyio.sleep(1.0)

    async def _load(self, asked: LoadAsked) -> None:
        try:
            await self.models.load(asked.request)
            log.info("worker host %s: loaded %s on its workers", self.name, asked.request.model_name)
        except ServiceError as exc:
            log.warning("worker host %s: could not load %s: %s", self.name, asked.request.model_name, exc.message)

    async def _sender(self) -> None:
        """Notices in the order they were made; progress and previews are dropped while the database is away."""
        async for item in self._outbox:
            try:
                if isinstance(item, JobPreview):
                    row = await self.notices.post_preview(item.job_id, msgspec.json.encode(item))
                    item = PreviewPosted(item.job_id, row)
                await self.notices.notify(item)
            except DatabaseDown as exc:
                log.debug("worker host %s: notice dropped: %s", self.name, exc.message)

    def _on_event(self, event: Event) -> None:
        data = event.data
        if isinstance(data, JobPreview) and data.job_id in self.running:
            self._post(data)

    def _post(self, item: Notice | JobPreview) -> None:
        with contextlib.suppress(anyio.WouldBlock):  # sent faster than the database takes them: this one is skipped
            self._send.send_nowait(item)

    # ------------------------------------------------------------------------------------------- a job

    async def generate(self, context: JobContext, job_id: str, body: str) -> None:
        """The Procrastinate task: run the job on a worker of this host and report how it ended."""
        remote = _remote_job.decode(body)
        attempt = context.job.attempts
        spec = self.codec.spec(remote.spec.encode())
        if isinstance(spec, GenerationJob) and not spec.request.model:
            spec = msgspec.structs.replace(spec, request=msgspec.structs.replace(spec.request, model=remote.model))
        await self.models.remember_profile(remote.load)
        pool = self.models.pool
        worker = await pool.assign(job_id, remote.model)
        job = Job(
            job_id=job_id,
            type=spec.job_type,
            status="processing",
            progress=Progress(total_images=spec.total_images),
            created_at=utc_timestamp(),
            params=spec.params(),
        )
        job.worker = f"{self.name}/{worker}"
        self.running.add(job_id)
        self._post(Started(job_id, attempt, job.worker))

        def report(step: SamplingStep | Transfer) -> None:
            if isinstance(step, SamplingStep):
                self._post(Stepped(job_id, attempt, step.image_index, step.step, step.total, time.time()))

        outcome: Outcome
        try:
            outputs = await self.engine.execute(JobRecord(job, spec), report)
            outcome = Outcome(job_id, attempt, "completed", outputs, None, job.worker)
        except asyncio.CancelledError:
            self.running.discard(job_id)
            pool.release(worker)
            if context.abort_reason() == AbortReason.USER_REQUEST:
                with anyio.CancelScope(shield=True):
                    await self._finish(Outcome(job_id, attempt, "cancelled", [], CANCELLED, job.worker))
            raise  # a shutdown: Procrastinate retries it elsewhere
        except (JobFailed, ServiceError) as exc:
            outcome = Outcome(job_id, attempt, "failed", [], str(exc), job.worker)
        except Exception as exc:  # a bug fails the job, not the host
            log.exception("job %s failed with an internal error", job_id)
            outcome = Outcome(job_id, attempt, "failed", [], f"Internal error: {type(exc).__name__}: {exc}", job.worker)
        self.running.discard(job_id)
        pool.release(worker)
        await self._finish(outcome)

    async def _finish(self, outcome: Outcome) -> None:
        """The outcome into its table (tried again while the database is away), then the notice."""
        while True:
            try:
                await self.link.write_outcome(outcome)
                break
            except DatabaseDown as exc:
                log.warning("worker host %s: outcome of job %s not yet written: %s", self.name, outcome.job_id, exc)
                await anyio.sleep(1.0)
        self._post(Ended(outcome.job_id, outcome.attempt))
