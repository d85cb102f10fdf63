"""The API host's side of the hosts (with a PostgreSQL store): generation jobs, committed to the store as always,
are deferred as Procrastinate jobs to the queue of the model they need (`queue_for`), and what the worker hosts
report comes back here: every API host LISTENs on our channel, republishes status, progress and previews on its
EventBus (WebSocket, SSE, MCP and A1111 progress see them as if the job ran here) and applies outcomes to its store
(a job already ended is left alone). Outcomes written while no API host listened are applied at the next start.

Priority across hosts is Procrastinate's (higher first, then the oldest): a job's is `priority * FAIRNESS_SPAN -
n`, n being how many jobs its API key already had pending at submit, so one key's 100 jobs interleave with
another key's one. Bound: while a key has fewer than FAIRNESS_SPAN pending jobs, its jobs never pass a job of a
higher `priority`; the n-th pending job of a key waits for at most the jobs of every other key that were at most
n-th when submitted (and the older jobs of its own key).

A lost worker host (no heartbeat for `heartbeat_s`): its running job goes back to the queue once (to any host
that has the model); lost a second time it fails with `LOST_TWICE`. An outcome of an attempt that is not the job's
current one (a host that came back after its job was re-queued) is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque

import anyio
import msgspec
import psycopg
from anyio.abc import TaskStatus
from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException
from procrastinate.jobs import Status

from core.events.bus import Event, EventBus
from core.events.types import JobPreview
from core.generation.specs import GenerationJob
from core.hosts.database import STALLED_LOCK, DatabaseDown, Link, listen
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
from core.jobs.queue import JobQueue
from core.jobs.records import JobRecord
from core.jobs.schemas import JobSpecBase
from core.models.manager import ModelManager
from core.workers.schemas import WorkerInfo
from runners.progress import SamplingStep

log = logging.getLogger("sdcpp_restapi")
FAIRNESS_SPAN = 10_000
LOST_TWICE = "Its worker host stopped answering (no heartbeat for {s:g} s) twice: not re-queued again"
ENDED_UNREPORTED = "Its worker host ended it without reporting how (Procrastinate status {status})"


class RemoteQueue:
    """The queue's `Forwarder` (core/jobs/queue.py) on an API host."""

    def __init__(self, url: str, queue: JobQueue, models: ModelManager, bus: EventBus, heartbeat_s: float) -> None:
        self.url, self.queue, self.models, self.bus, self.heartbeat_s = url, queue, models, bus, heartbeat_s
        self.link = Link(url)
        self.app = App(connector=PsycopgConnector(conninfo=url, min_size=1, max_size=4))
        self.hosts: list[HostRow] = []
        self._hosts_read = time.monotonic()  # when `hosts` was read (while the database is away it ages)
        self.latencies_ms: deque[float] = deque(maxlen=1000)  # worker host read a step -> published here
        self._answering_since: float | None = None  # since when the database answers (None: it did not lately)
        self._undeferred: set[str] = set()  # committed, not yet deferred (the database was away): sent later
        self._outbox_send, self._outbox = anyio.create_memory_object_stream[LoadAsked](16)
        queue.forwarder = self
        bus.subscribe(self._on_event)

    # ----------------------------------------------------------------------------------- the Forwarder

    def handles(self, spec: JobSpecBase) -> bool:
        return isinstance(spec, GenerationJob)

    async def forward(self, record: JobRecord) -> None:
        try:
            await self._defer(record)
        except (DatabaseDown, ConnectorException, psycopg.Error, OSError) as exc:
            # committed already: the job is safe, and is sent when the database answers again
            self._undeferred.add(record.job.job_id)
            log.warning("job %s waits for the shared database to be sent to a worker host: %s", record.job.job_id, exc)

    async def _defer(self, record: JobRecord) -> None:
        spec = record.spec
        assert isinstance(spec, GenerationJob)
        job_id = record.job.job_id
        loaded = await self.models.model_named(spec.request.model)  # the default model unless the job names one
        ahead = sum(
            1
            for each in self.queue.active.values()
            if each.job.status == "pending"
            and each.spec is not None
            and each.spec.key_id == spec.key_id
            and self.handles(each.spec)
            and each.job.job_id != job_id
        )
        body = RemoteJob(job_id, msgspec.json.encode(spec).decode(), loaded.name, loaded.request)
        deferrer = self.app.configure_task(
            TASK, queue=queue_for(loaded.name), priority=spec.priority * FAIRNESS_SPAN - ahead, queueing_lock=job_id
        )
        with contextlib.suppress(AlreadyEnqueued):  # deferred before (a restart between defer and our bookkeeping)
            await deferrer.defer_async(job_id=job_id, body=msgspec.json.encode(body).decode())
        self._undeferred.discard(job_id)

    async def cancel(self, record: JobRecord) -> bool:
        job_id = record.job.job_id
        if job_id in self._undeferred:
            self._undeferred.discard(job_id)
            return True
        found = await self.link.procrastinate_job(job_id)
        if found is None:
            return True
        manager = self.app.job_manager
        try:
            if found[1] == "todo" and await manager.cancel_job_by_id_async(found[0]):
                return True
            # running on a host: Procrastinate's abort reaches its task, which cancels the job and reports it
            await manager.cancel_job_by_id_async(found[0], abort=True)
        except ConnectorException as exc:
            raise DatabaseDown(f"the shared database is unreachable: {exc}") from None
        return False

    # --------------------------------------------------------------------------------------- running

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.link.prepare()
        await self.app.open_async()
        try:
            await self.catch_up()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._listen)
                tasks.start_soon(self._every, self.heartbeat_s / 2, self._requeue_lost)
                tasks.start_soon(self._every, self.heartbeat_s / 2, self._refresh_hosts)
                tasks.start_soon(self._send_loads)
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True):
                await self.app.close_async()
                await self.link.close()

    async def _every(self, period: float, work: object) -> None:
        assert callable(work)
        while True:
            try:
                await work()
            except (DatabaseDown, ConnectorException, psycopg.Error, OSError) as exc:
                self._answering_since = None
                log.debug("hosts: %s", exc)
            await anyio.sleep(period)

    async def _listen(self) -> None:
        reconnected = False
        while True:
            try:
                async for notice in listen(self.url):
                    if reconnected:  # what was missed meanwhile: outcomes are in their table
                        reconnected = False
                        await self.catch_up()
                    await self._apply(notice)
            except (psycopg.Error, OSError, DatabaseDown) as exc:
                log.warning("lost the shared database (%s); listening again in 1 s", str(exc).strip())
                reconnected = True
                await anyio.sleep(1.0)

    async def catch_up(self) -> None:
        """Every job of the store that a host runs or should run: deferred if it never was, its outcome applied if a
        host wrote one (while no API host listened), back to pending if it was re-queued."""
        for record in list(self.queue.active.values()):
            if record.spec is None or not self.handles(record.spec):
                continue
            job_id = record.job.job_id
            found = await self.link.procrastinate_job(job_id)
            if found is None:
                await self.forward(record)
                continue
            _, status, attempt = found
            if await self._settle(job_id, attempt):
                continue
            if status in ("failed", "aborted", "cancelled", "succeeded"):
                error = None if status == "cancelled" else ENDED_UNREPORTED.format(status=status)
                await self.queue.remote_ended(job_id, "cancelled" if status == "cancelled" else "failed", [], error)
            elif status == "todo":
                await self.queue.remote_requeued(job_id)

    async def _apply(self, notice: Notice) -> None:
        queue = self.queue
        if isinstance(notice, Stepped):
            queue.remote_progress(notice.job_id, SamplingStep(notice.image_index, notice.step, notice.total))
            latency_ms = 1000.0 * (time.time() - notice.sent)
            self.latencies_ms.append(latency_ms)
            log.debug("hosts: event latency %.2f ms (job %s step %d)", latency_ms, notice.job_id, notice.step)
        elif isinstance(notice, Started):
            await queue.remote_started(notice.job_id, notice.worker)
        elif isinstance(notice, PreviewPosted):
            if notice.job_id in queue.active and (body := await self.link.preview(notice.row)):
                self.bus.publish(msgspec.json.decode(body, type=JobPreview))
        elif isinstance(notice, Ended):
            await self._settle(notice.job_id, notice.attempt)
        elif isinstance(notice, HostChanged):
            await self._refresh_hosts()

    async def _settle(self, job_id: str, attempt: int) -> bool:
        """Apply the attempt's outcome, if written and if it is the job's current attempt; True when applied."""
        if job_id not in self.queue.active:
            return False
        found = await self.link.procrastinate_job(job_id)
        if found is not None and found[2] != attempt:
            log.info("job %s: ignored the outcome of attempt %d (the job is at attempt %d)", job_id, attempt, found[2])
            return False
        outcome = await self.link.outcome(job_id, attempt)
        if outcome is None:
            return False
        return await self.queue.remote_ended(job_id, outcome.status, outcome.outputs, outcome.error, outcome.worker)

    async def _requeue_lost(self) -> None:
        """Jobs of worker hosts without a heartbeat for `heartbeat_s`: re-queued once, then failed. One API host at
        a time (an advisory lock), so a job is never re-queued twice for one loss."""
        for job_id in list(self._undeferred):
            if (record := self.queue.active.get(job_id)) is not None:
                await self._defer(record)
            else:
                self._undeferred.discard(job_id)

        if self._answering_since is None:
            self._answering_since = time.monotonic()
        if time.monotonic() - self._answering_since < 2 * self.heartbeat_s:
            return  # after an outage, worker hosts need a heartbeat's time to be seen alive again

        async def work(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
            locked = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (STALLED_LOCK,))).fetchone()
            if not (locked and locked[0]):
                return
            try:
                await self._requeue_locked()
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (STALLED_LOCK,))

        await self.link.run(work)

    async def _requeue_locked(self) -> None:
        manager = self.app.job_manager
        for job in await manager.get_stalled_jobs(task_name=TASK, seconds_since_heartbeat=self.heartbeat_s):
            job_id = str(job.task_kwargs.get("job_id"))
            assert job.id is not None
            if job.attempts < 1:
                await manager.retry_job(job)
                log.warning("job %s: its worker host stopped answering; re-queued on the other hosts", job_id)
                await self.queue.remote_requeued(job_id)
                continue
            await manager.finish_job_by_id_async(job.id, Status.FAILED, delete_job=False)
            error = LOST_TWICE.format(s=self.heartbeat_s)
            await self.link.write_outcome(Outcome(job_id, job.attempts, "failed", [], error))
            await self.link.notify(Ended(job_id, job.attempts))
            log.warning("job %s: failed: %s", job_id, error)

    async def _refresh_hosts(self) -> None:
        self.hosts = await self.link.hosts()
        self._hosts_read = time.monotonic()

    def worker_infos(self) -> list[WorkerInfo]:
        """Every worker of every host, named `<host>/<worker>`; a host without a recent heartbeat shows its
        workers as `offline` (a host that lost the database says so in its state when it is back)."""
        infos = []
        since = time.monotonic() - self._hosts_read
        for host in self.hosts:
            gone = host.state != "up" or host.age_s + since > 2 * self.heartbeat_s
            for worker in host.workers:
                infos.append(
                    msgspec.structs.replace(
                        worker,
                        name=f"{host.name}/{worker.name}",
                        state="offline" if gone else worker.state,
                        last_error=worker.last_error or (f"host {host.name}: {host.state}" if gone else None),
                    )
                )
        return infos

    # ------------------------------------------------------------------------- loads reach every host

    def _on_event(self, event: Event) -> None:
        loaded = self.models.loaded
        if event.event == "model_loaded" and loaded is not None:
            try:
                self._outbox_send.send_nowait(LoadAsked(loaded.request))
            except anyio.WouldBlock:
                log.warning("hosts: too many model loads at once; %s not sent to the worker hosts", loaded.name)

    async def _send_loads(self) -> None:
        async for asked in self._outbox:
            try:
                await self.link.notify(asked)
            except DatabaseDown as exc:
                log.warning("could not ask the worker hosts to load %s: %s", asked.request.model_name, exc.message)
