"""The durable job queue and its workers: one job at a time per lane, or, on a lane with a `Dispatcher` (the
generation lane and its worker pool), a job to each idle worker, so N jobs run at once. Which pending job goes
next is the lane's `FairOrder` (core/workers/pool.py): higher `priority` first, round-robin between the API keys
that submitted them (`SUBMITTER`, recorded on the spec as `key_id`), FIFO within a key.

Every job is committed to the store before its 202 is sent, and every status change is committed as it
happens; progress lives in memory while a job runs. Pending and processing jobs are also kept in memory (they
are few); finished ones are read from the store, so the cost of a status change does not grow with history.
After a restart pending jobs run again, and a job that was processing is failed (it is never re-run blindly:
it may be what crashed).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Protocol, get_args

import anyio
import msgspec

from core.errors import BadRequest, NotFound, ServiceError, TooManyRequests
from core.events.bus import EventBus, utc_timestamp
from core.events.types import JobAdded, JobCancelled, JobProgress, JobStatusChanged, JobTransferProgress
from core.jobs.records import JobRecord, JobStore
from core.jobs.schemas import (
    ANONYMOUS,
    TERMINAL,
    Job,
    JobAccepted,
    JobSpecBase,
    JobStatus,
    Lane,
    Progress,
    QueueListing,
    QueueQuery,
)
from core.workers.pool import FairOrder
from runners.progress import SamplingStep

log = logging.getLogger("sdcpp_restapi")
INTERRUPTED = "Interrupted by a server restart while processing; not re-run automatically"
LANES: tuple[Lane, ...] = get_args(Lane)
RETRY_AFTER_S = 10
# Who submits: the id of the API key the request carried (never the key), set by the HTTP layer for the request's
# duration; a job records it as its spec's `key_id`, and the scheduler shares the workers fairly between them.
SUBMITTER: ContextVar[str] = ContextVar("submitter", default=ANONYMOUS)


class Retention(msgspec.Struct, forbid_unknown_fields=True):
    """How much finished history to keep. Off by default: every job is kept."""

    max_jobs: int = 0  # keep the newest N finished jobs (0: no limit)
    max_age_days: float = 0.0  # forget finished jobs created longer ago (0: no limit)
    delete_outputs: bool = False  # also delete a forgotten job's output folder (else it stays on disk)

    @property
    def active(self) -> bool:
        return self.max_jobs > 0 or self.max_age_days > 0


class JobFailed(Exception):
    """A job's run failed; the message is the reason shown in the job's `error`."""


class Transfer(msgspec.Struct, frozen=True):
    """How far a transfer job (a download) is: bytes written so far, and the size the source announced (0: none)."""

    done_bytes: int
    total_bytes: int = 0


# Generation jobs report sampling steps, transfer jobs bytes.
ProgressReport = Callable[[SamplingStep | Transfer], None]
Executor = Callable[[JobRecord, ProgressReport], Awaitable[list[str]]]


class Dispatcher(Protocol):
    """Hands jobs to workers (core/workers/pool.py): `idle` returns once a worker is idle (then the queue chooses
    the job), `assign` waits, in arrival order, for an idle worker and returns its name; `release` gives it back
    when the job has ended."""

    async def idle(self) -> None: ...

    async def assign(self, job_id: str, model: str | None = None) -> str: ...

    def release(self, name: str) -> None: ...


class Forwarder(Protocol):
    """Sends jobs to other hosts (core/hosts/dispatch.py, with a PostgreSQL store): the jobs it `handles` are
    committed here, then `forward`ed instead of queued locally; their status changes come back through the
    queue's `remote_*` methods. `cancel` returns True when the job was still pending there (now cancelled);
    False when it runs on a host, which reports the cancellation."""

    def handles(self, spec: JobSpecBase) -> bool: ...

    async def forward(self, record: JobRecord) -> None: ...

    async def cancel(self, record: JobRecord) -> bool: ...


class JobQueue:
    def __init__(
        self,
        store: JobStore,
        output_root: Path,
        bus: EventBus,
        retention: Retention | None = None,
        max_pending: int = 0,
    ) -> None:
        self.store = store
        self.max_pending = max_pending  # 0: no limit
        self.output_root = output_root
        self.bus = bus
        self.retention = retention or Retention()
        self.active: dict[str, JobRecord] = {}  # pending and processing jobs, in submission order
        self.counts: Counter[str] = Counter()  # jobs per status over the whole history
        self._lanes: dict[Lane, FairOrder] = {lane: FairOrder() for lane in LANES}  # each lane's pending jobs
        self._arrived = {lane: anyio.Event() for lane in LANES}
        # The job taken out of the order that waits for its worker (a model load holds them all): next in line.
        self._handing: dict[Lane, str] = {}
        self._running: dict[str, tuple[Lane, anyio.CancelScope]] = {}  # job id -> its lane, and what cancels it
        self._finished_watchers: list[Callable[[Job], None]] = []
        self._admission_checks: list[Callable[[Job], Awaitable[None]]] = []
        self.forwarder: Forwarder | None = None  # set by the service with a PostgreSQL store

    def watch_finished(self, watcher: Callable[[Job], None]) -> None:
        """Call `watcher` with each job that ends (completed, failed, cancelled), once its end is committed; it
        must not block. The job's type and times are there, which the job_status_changed event does not carry."""
        self._finished_watchers.append(watcher)

    def check_admission(self, check: Callable[[Job], Awaitable[None]]) -> None:
        """Call `check` with each job before it is committed; what it raises (a 4xx) refuses the submission."""
        self._admission_checks.append(check)

    # ------------------------------------------------------------------------------------- durability

    async def restore(self) -> None:
        """Fail the jobs a restart interrupted, queue the pending ones again, apply the retention."""
        now = utc_timestamp()
        for record in await self.store.active_jobs():
            job = record.job
            if record.spec is not None and self._remote(record.spec):
                self.active[job.job_id] = record  # runs (or waits) on another host: the forwarder restores it
                continue
            if job.status == "processing" or record.spec is None:
                job.status, job.completed_at = "failed", now
                job.error = INTERRUPTED if record.spec else "Its spec could not be read after an upgrade"
                await self.store.save_job(record)
                for watcher in self._finished_watchers:  # it ended now, as far as anyone watching can tell
                    watcher(job)
                continue
            self.active[job.job_id] = record
            self._enqueue(record)
        self.counts = Counter(await self.store.status_counts())
        await self.apply_retention()

    async def apply_retention(self) -> None:
        if not self.retention.active:
            return
        cutoff = None
        if self.retention.max_age_days > 0:
            moment = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.retention.max_age_days)
            cutoff = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        forgotten = await self.store.prune_finished(self.retention.max_jobs, cutoff)
        if not forgotten:
            return
        self.counts = Counter(await self.store.status_counts())
        if self.retention.delete_outputs:
            await anyio.to_thread.run_sync(self._delete_outputs, forgotten)
        log.info(
            "retention: forgot %d finished job(s)%s",
            len(forgotten),
            " and deleted their outputs" if self.retention.delete_outputs else "",
        )

    def _delete_outputs(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            if Path(job_id).name == job_id and job_id not in (".", ".."):
                shutil.rmtree(self.output_root / job_id, ignore_errors=True)

    # ----------------------------------------------------------------------------------------- queries

    async def record(self, job_id: str) -> JobRecord | None:
        return self.active.get(job_id) or await self.store.job(job_id)

    async def get(self, job_id: str) -> Job:
        record = await self.record(job_id)
        if record is None:
            raise NotFound("Job not found")
        return record.job

    def _enqueue(self, record: JobRecord) -> None:
        spec = record.spec
        assert spec is not None
        self._lanes[spec.lane].push(record.job.job_id, spec.priority, spec.key_id)
        arrived, self._arrived[spec.lane] = self._arrived[spec.lane], anyio.Event()
        arrived.set()

    async def _next(self, lane: Lane) -> str:
        """Wait for a pending job of the lane and take the one that goes next out of the lane's order."""
        order = self._lanes[lane]
        while (job_id := order.pop()) is None:
            await self._arrived[lane].wait()
        return job_id

    def _remote(self, spec: JobSpecBase) -> bool:
        return self.forwarder is not None and self.forwarder.handles(spec)

    def position(self, job_id: str) -> int:
        """1-based place among the pending jobs of the same lane, in the order they will run (0 once it runs).
        For a job sent to other hosts: its place among the pending ones sent there, by arrival."""
        record = self.active.get(job_id)
        if record is None or record.spec is None or record.job.status != "pending":
            return 0
        if self._remote(record.spec):
            pending = [
                each.job.job_id
                for each in self.active.values()
                if each.job.status == "pending" and each.spec is not None and self._remote(each.spec)
            ]
            return pending.index(job_id) + 1
        lane = record.spec.lane
        handing = self._handing.get(lane)
        if handing == job_id:
            return 1
        return self._lanes[lane].position(job_id) + (handing is not None)

    def running(self, lane: Lane = "generation") -> Job | None:
        """The lane's running job (the one that started first, where several run), if any."""
        jobs = self.running_jobs(lane)
        return jobs[0] if jobs else None

    def running_jobs(self, lane: Lane = "generation") -> list[Job]:
        return [
            record.job
            for job_id, (job_lane, _) in self._running.items()
            if job_lane == lane and (record := self.active.get(job_id)) is not None
        ]

    def queued(self, lane: Lane = "generation") -> int:
        """Pending and processing jobs of the lane."""
        return sum(1 for record in self.active.values() if record.spec is not None and record.spec.lane == lane)

    def count(self, status: JobStatus) -> int:
        return self.counts[status]

    async def listing(self, query: QueueQuery = QueueQuery()) -> QueueListing:
        jobs, matched = await self.store.list_jobs(query)
        live = [self.active[job.job_id].job if job.job_id in self.active else job for job in jobs]
        total = sum(self.counts.values())
        return QueueListing(
            self.count("pending"),
            self.count("processing"),
            self.count("completed"),
            self.count("failed"),
            total,
            live,
            self.count("cancelled"),
            (total if matched is None else matched) if query.filtered or query.limit is not None else None,
        )

    # ---------------------------------------------------------------------------------------- commands

    @staticmethod
    def new_job_id() -> str:
        return str(uuid.uuid4())

    async def submit(self, spec: JobSpecBase, job_id: str | None = None) -> JobAccepted:
        """Commit the job to the store, then queue it: once this returns, the job survives a SIGKILL."""
        if self.max_pending and self.count("pending") >= self.max_pending:
            raise TooManyRequests(
                f"the queue holds {self.count('pending')} pending jobs, the most it takes "
                "(limits.max_pending); try again later",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        job = Job(
            job_id=job_id or self.new_job_id(),
            type=spec.job_type,
            status="pending",
            progress=Progress(total_images=spec.total_images),
            created_at=utc_timestamp(),
            params=spec.params(),
        )
        for check in self._admission_checks:
            await check(job)
        if spec.key_id == ANONYMOUS:
            spec.key_id = SUBMITTER.get()
        record = JobRecord(job, spec)
        await self.store.add_job(record)
        self.active[job.job_id] = record
        self.counts["pending"] += 1
        if self.forwarder is not None and self.forwarder.handles(spec):
            await self.forwarder.forward(record)
        else:
            self._enqueue(record)
        position = self.position(job.job_id)
        self.bus.publish(JobAdded(job.job_id, job.type, position))
        return JobAccepted(job.job_id, "pending", position)

    async def cancel(self, job_id: str) -> None:
        record = self.active.get(job_id)
        if record is None or record.spec is None:
            raise BadRequest("Cannot cancel job (not found or already processing)")
        if self.forwarder is not None and self.forwarder.handles(record.spec):
            if await self.forwarder.cancel(record) and record.job.status == "pending":
                await self._set_status(record, "cancelled")
                self.bus.publish(JobCancelled(job_id))
            return
        running = self._running.get(job_id)
        if record.job.status == "processing" and running:
            running[1].cancel()  # its worker alone stops its process and records the cancellation
            return
        self._lanes[record.spec.lane].remove(job_id)
        await self._set_status(record, "cancelled")
        self.bus.publish(JobCancelled(job_id))

    async def cancel_if_active(self, job_id: str) -> None:
        """Cancel a job a client stopped waiting for; nothing to do if it finished meanwhile."""
        if job_id in self.active:
            with anyio.CancelScope(shield=True):
                await self.cancel(job_id)

    async def _set_status(self, record: JobRecord, status: JobStatus, error: str | None = None) -> None:
        job = record.job
        previous, job.status = job.status, status
        now = utc_timestamp()
        if status == "processing":
            job.started_at = now
        elif status in TERMINAL:
            job.completed_at = now
        if error is not None:
            job.error = error
        with anyio.CancelScope(shield=True):  # a status change is always recorded, even while cancelling
            await self.store.save_job(record)
        self.counts[previous] -= 1
        self.counts[status] += 1
        if status in TERMINAL:
            self.active.pop(job.job_id, None)
        self.bus.publish(JobStatusChanged(job.job_id, status, previous, list(job.outputs), job.worker))
        if status in TERMINAL:
            for watcher in self._finished_watchers:
                watcher(job)
            with anyio.CancelScope(shield=True):  # a shutdown waits for it: no half-pruned history or outputs
                await self.apply_retention()

    # ------------------------------------------------------------------------------ jobs on other hosts

    async def remote_started(self, job_id: str, worker: str) -> None:
        """A host's worker took the job (again, after a lost host)."""
        record = self.active.get(job_id)
        if record is None or (record.job.status == "processing" and record.job.worker == worker):
            return
        record.job.worker = worker
        await self._set_status(record, "processing")

    def remote_progress(self, job_id: str, step: SamplingStep) -> None:
        record = self.active.get(job_id)
        if record is not None and record.job.status == "processing":
            self._report(record.job)(step)

    async def remote_requeued(self, job_id: str) -> None:
        """The host running the job was lost: it waits for another host."""
        record = self.active.get(job_id)
        if record is not None and record.job.status == "processing":
            record.job.worker = None
            record.job.progress = Progress(total_images=record.job.progress.total_images)
            await self._set_status(record, "pending")

    async def remote_ended(
        self, job_id: str, status: JobStatus, outputs: list[str], error: str | None, worker: str | None = None
    ) -> bool:
        """A host's outcome of the job; applied once (False: the job is not active here, e.g. already ended)."""
        record = self.active.get(job_id)
        if record is None or status not in TERMINAL:
            return False
        job = record.job
        job.worker = worker or job.worker
        if status == "completed":
            job.outputs = outputs
            progress = job.progress
            if progress.all_steps:
                progress.current_all_steps, progress.step = progress.all_steps, progress.total_steps
                progress.current_image = progress.total_images - 1
            progress.percentage = 100.0
        await self._set_status(record, status, error)
        if status == "cancelled":
            self.bus.publish(JobCancelled(job_id))
        return True

    # ------------------------------------------------------------------------------------------ worker

    def _report(self, job: Job) -> ProgressReport:
        def report(step: SamplingStep | Transfer) -> None:
            progress = job.progress
            if isinstance(step, Transfer):
                total = step.total_bytes or None
                percentage = round(100.0 * step.done_bytes / total, 2) if total else None
                progress.percentage = percentage if percentage is not None else progress.percentage
                self.bus.publish(JobTransferProgress(job.job_id, step.done_bytes, total, percentage))
                return
            # Within the totals whatever an engine reports (issue 22: LoRA loading counted as steps read 200%).
            image = min(step.image_index, max(progress.total_images - 1, 0))
            done = min(step.step, step.total)
            progress.step, progress.total_steps, progress.current_image = done, step.total, image
            progress.all_steps = step.total * progress.total_images
            progress.current_all_steps = min(image * step.total + done, progress.all_steps)
            progress.percentage = round(100.0 * progress.current_all_steps / max(progress.all_steps, 1), 2)
            self.bus.publish(
                JobProgress(
                    job.job_id,
                    done,
                    step.total,
                    image,
                    progress.total_images,
                    progress.percentage,
                    job.worker,
                )
            )

        return report

    async def run_worker(
        self, execute: Executor, lane: Lane = "generation", dispatcher: Dispatcher | None = None
    ) -> None:
        """Process the lane's jobs forever (until the surrounding task group is cancelled): one at a time, or with a
        dispatcher each on the worker it assigns, as many at once as there are workers. The next job is chosen when
        a worker is free (the lane's `FairOrder`), so jobs that arrive meanwhile compete for it."""
        if dispatcher is None:
            while True:
                record = self.active.get(await self._next(lane))
                if record is None or record.job.status != "pending":
                    continue  # cancelled while waiting
                await self._run_one(record, execute, lane)
        async with anyio.create_task_group() as running:
            while True:
                await dispatcher.idle()
                job_id = await self._next(lane)
                record = self.active.get(job_id)
                if record is None or record.job.status != "pending" or record.spec is None:
                    continue
                self._handing[lane] = job_id
                try:
                    worker = await dispatcher.assign(job_id, record.spec.wanted_model)
                finally:
                    del self._handing[lane]
                if record.job.status != "pending":  # cancelled while waiting for a worker
                    dispatcher.release(worker)
                    continue
                record.job.worker = worker
                running.start_soon(self._run_on, record, execute, lane, dispatcher, worker)

    async def _run_on(
        self, record: JobRecord, execute: Executor, lane: Lane, dispatcher: Dispatcher, worker: str
    ) -> None:
        try:
            await self._run_one(record, execute, lane)
        finally:
            dispatcher.release(worker)

    async def _run_one(self, record: JobRecord, execute: Executor, lane: Lane) -> None:
        job = record.job
        await self._set_status(record, "processing")
        scope = anyio.CancelScope()
        self._running[job.job_id] = (lane, scope)
        outcome: tuple[JobStatus, str | None]
        try:
            with scope:
                job.outputs = await execute(record, self._report(job))
                progress = job.progress
                if progress.all_steps:
                    progress.current_all_steps, progress.step = progress.all_steps, progress.total_steps
                    progress.current_image = progress.total_images - 1
                progress.percentage = 100.0
                outcome = ("completed", None)
            if scope.cancel_called:  # a batch's finished images stay: the executor left them in job.outputs
                kept = (
                    f"; kept the {len(job.outputs)} finished image(s): {', '.join(job.outputs)}" if job.outputs else ""
                )
                outcome = ("cancelled", f"Cancelled by client while processing{kept}")
        except (JobFailed, ServiceError) as exc:
            outcome = ("failed", str(exc))
        except Exception as exc:  # a bug must fail the job, not the worker
            log.exception("job %s failed with an internal error", job.job_id)
            outcome = ("failed", f"Internal error: {type(exc).__name__}: {exc}")
        finally:
            del self._running[job.job_id]
        await self._set_status(record, *outcome)
        if outcome[0] == "cancelled":
            self.bus.publish(JobCancelled(job.job_id))
