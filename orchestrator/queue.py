"""The durable FIFO job queue and its single background worker.

Every status change is persisted atomically to `queue_state.json`. After a restart pending jobs run
again, and a job that was processing is failed (it is never re-run blindly: it may be what crashed).
"""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Awaitable, Callable

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.errors import BadRequest, NotFound, ServiceError
from orchestrator.events import EventBus, utc_timestamp
from orchestrator.schemas import Job, JobAccepted, JobType, Progress, QueueListing
from orchestrator.store import atomic_write_bytes, read_json
from runners.progress import SamplingStep

STATE_FILE = "queue_state.json"
INTERRUPTED = "Interrupted by a server restart while processing; not re-run automatically"
TERMINAL = frozenset({"completed", "failed", "cancelled"})
# Jobs run one at a time per lane: downloads (network-bound) never hold up generation.
LANES = ("generation", "downloads")
DOWNLOAD_TYPES = frozenset({"download", "hash"})


def lane_of(job_type: str) -> str:
    return "downloads" if job_type in DOWNLOAD_TYPES else "generation"


class JobRecord(msgspec.Struct):
    job: Job
    # What the executor needs and clients do not see: generation fields with input images as files.
    spec: dict[str, Any] = {}


class QueueState(msgspec.Struct):
    jobs: list[JobRecord] = []
    # Restored by the service on start-up (the model and upscaler that were loaded).
    loaded_model: dict[str, Any] | None = None
    loaded_upscaler: dict[str, Any] | None = None


class JobFailed(Exception):
    """A job's run failed; the message is the reason shown in the job's `error`."""


ProgressReport = Callable[[SamplingStep], None]
Executor = Callable[[JobRecord, ProgressReport], Awaitable[list[str]]]


class JobQueue:
    def __init__(self, output_root: Path, bus: EventBus, max_history: int = 1000) -> None:
        self.output_root = output_root
        # Finished jobs kept in the queue (and its state file, rewritten on every change); older ones are
        # forgotten by the queue, their output folders stay on disk.
        self.max_history = max_history
        self.state_path = output_root / STATE_FILE
        self.bus = bus
        self.records: OrderedDict[str, JobRecord] = OrderedDict()
        self.restored_model: dict[str, Any] | None = None
        self.restored_upscaler: dict[str, Any] | None = None
        self.model_state: Callable[[], dict[str, Any] | None] = lambda: None
        self.upscaler_state: Callable[[], dict[str, Any] | None] = lambda: None
        self._lanes: dict[str, tuple[MemoryObjectSendStream[str], MemoryObjectReceiveStream[str]]] = {
            lane: anyio.create_memory_object_stream[str](math.inf) for lane in LANES}
        self._running: dict[str, tuple[str, anyio.CancelScope]] = {}
        self._save_lock = anyio.Lock()

    # ------------------------------------------------------------------------------------- durability

    def restore(self) -> None:
        """Load the state file (blocking, start-up only): fail interrupted jobs, re-queue pending ones."""
        state = read_json(self.state_path, QueueState)
        if state is None:
            return
        now = utc_timestamp()
        for record in state.jobs:
            job = record.job
            if job.status == "processing":
                job.status, job.error, job.completed_at = "failed", INTERRUPTED, now
            self.records[job.job_id] = record
            if job.status == "pending":
                self._enqueue(job)
        self.restored_model, self.restored_upscaler = state.loaded_model, state.loaded_upscaler
        self._write_state_blocking()

    def _snapshot(self) -> bytes:
        state = QueueState(list(self.records.values()), self.model_state(), self.upscaler_state())
        return msgspec.json.encode(state)

    def _write_state_blocking(self) -> None:
        atomic_write_bytes(self.state_path, self._snapshot())

    async def persist(self) -> None:
        async with self._save_lock:
            data = self._snapshot()
            await anyio.to_thread.run_sync(atomic_write_bytes, self.state_path, data)

    # ----------------------------------------------------------------------------------------- queries

    def get(self, job_id: str) -> Job:
        record = self.records.get(job_id)
        if record is None:
            raise NotFound("Job not found")
        return record.job

    def _enqueue(self, job: Job) -> None:
        self._lanes[lane_of(job.type)][0].send_nowait(job.job_id)

    def position(self, job_id: str) -> int:
        """1-based place among the pending jobs of the same lane (0 once it runs)."""
        lane = lane_of(self.records[job_id].job.type)
        pending = [r.job.job_id for r in self.records.values()
                   if r.job.status == "pending" and lane_of(r.job.type) == lane]
        return pending.index(job_id) + 1 if job_id in pending else 0

    def listing(self) -> QueueListing:
        jobs = [record.job for record in self.records.values()]
        count = lambda status: sum(1 for job in jobs if job.status == status)  # noqa: E731
        return QueueListing(count("pending"), count("processing"), count("completed"), count("failed"), len(jobs), jobs)

    # ---------------------------------------------------------------------------------------- commands

    @staticmethod
    def new_job_id() -> str:
        return str(uuid.uuid4())

    async def submit(self, job_type: JobType, params: dict[str, Any], spec: dict[str, Any],
                     total_images: int = 1, job_id: str | None = None) -> JobAccepted:
        job = Job(job_id=job_id or self.new_job_id(), type=job_type, status="pending",
                  progress=Progress(total_images=total_images), created_at=utc_timestamp(), params=params)
        self.records[job.job_id] = JobRecord(job, spec)
        await self.persist()
        self._enqueue(job)
        position = self.position(job.job_id)
        self.bus.publish("job_added", {"job_id": job.job_id, "type": job_type, "position": position})
        return JobAccepted(job.job_id, "pending", position)

    async def cancel(self, job_id: str) -> None:
        record = self.records.get(job_id)
        if record is None or record.job.status in TERMINAL:
            raise BadRequest("Cannot cancel job (not found or already processing)")
        running = self._running.get(lane_of(record.job.type))
        if record.job.status == "processing" and running and running[0] == job_id:
            running[1].cancel()  # the worker kills the process group and records the cancellation
            return
        await self._set_status(record, "cancelled")
        self.bus.publish("job_cancelled", {"job_id": job_id})

    async def _set_status(self, record: JobRecord, status: str, error: str | None = None) -> None:
        job = record.job
        previous, job.status = job.status, status  # type: ignore[assignment]
        now = utc_timestamp()
        if status == "processing":
            job.started_at = now
        elif status in TERMINAL:
            job.completed_at = now
        if error is not None:
            job.error = error
        if status in TERMINAL:
            self._forget_old()
        await self.persist()
        self.bus.publish("job_status_changed", {"job_id": job.job_id, "status": status,
                                                "previous_status": previous, "outputs": list(job.outputs)})

    def _forget_old(self) -> None:
        finished = [job_id for job_id, record in self.records.items() if record.job.status in TERMINAL]
        for job_id in finished[: max(len(finished) - self.max_history, 0)]:
            del self.records[job_id]

    # ------------------------------------------------------------------------------------------ worker

    def _report(self, job: Job) -> ProgressReport:
        def report(step: SamplingStep) -> None:
            progress = job.progress
            progress.step, progress.total_steps, progress.current_image = step.step, step.total, step.image_index
            progress.all_steps = step.total * progress.total_images
            progress.current_all_steps = step.image_index * step.total + step.step
            progress.percentage = round(100.0 * progress.current_all_steps / max(progress.all_steps, 1), 2)
            self.bus.publish("job_progress", {"job_id": job.job_id, "step": step.step, "total_steps": step.total,
                                              "current_image": step.image_index, "total_images": progress.total_images,
                                              "percentage": progress.percentage})
        return report

    async def run_worker(self, execute: Executor, lane: str = "generation") -> None:
        """Process the lane's jobs one at a time, forever (until the surrounding task group is cancelled)."""
        async for job_id in self._lanes[lane][1]:
            record = self.records.get(job_id)
            if record is None or record.job.status != "pending":
                continue  # cancelled while waiting
            await self._run_one(record, execute, lane)

    async def _run_one(self, record: JobRecord, execute: Executor, lane: str) -> None:
        job = record.job
        await self._set_status(record, "processing")
        scope = anyio.CancelScope()
        self._running[lane] = (job.job_id, scope)
        outcome: tuple[str, str | None]
        try:
            with scope:
                job.outputs = await execute(record, self._report(job))
                progress = job.progress
                if progress.all_steps:
                    progress.current_all_steps, progress.step = progress.all_steps, progress.total_steps
                    progress.current_image = progress.total_images - 1
                progress.percentage = 100.0
                outcome = ("completed", None)
            if scope.cancel_called:
                outcome = ("cancelled", "Cancelled by client while processing")
        except (JobFailed, ServiceError) as exc:
            outcome = ("failed", str(exc))
        except Exception as exc:  # a bug must fail the job, not the worker
            outcome = ("failed", f"Internal error: {type(exc).__name__}: {exc}")
        finally:
            del self._running[lane]
        await self._set_status(record, *outcome)
        if outcome[0] == "cancelled":
            self.bus.publish("job_cancelled", {"job_id": job.job_id})
