"""The workers and the scheduler that hands them jobs.

Each worker keeps its own resident process (our worker or sd-server) on its own backend and device. A job goes to
an idle worker, in arrival order: claimants take turns (anyio's lock is FIFO), so a job never overtakes one that
asked before it. Among idle workers a job prefers one that already holds the model it names (no load), then one
without a recent failure, then the first declared. A model load takes every worker at once: it waits for their
running jobs, and jobs that arrive meanwhile wait for the load.

A worker whose process crashes fails its own job only (never re-run: the job may be what crashed it); its owner
restarts the process and the worker takes jobs again, while the other workers go on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import msgspec

from core.workers.schemas import WorkerInfo, WorkerState
from runners.process import resident_memory_mib
from runners.resident_worker import ResidentWorker
from runners.sdserver import ResidentServer

# The process that keeps a loaded model in memory: our worker when the backend has it, else sd-server.
Resident = ResidentServer | ResidentWorker


class WorkerSpec(msgspec.Struct, frozen=True):
    """What a worker is: from a `[[workers]]` entry, its backend's binaries resolved."""

    name: str
    backend: str
    sd_server: Path
    worker: Path | None = None  # our resident worker binary (None: sd-server and sd-cli do the work)
    device: str = ""
    threads: int = 0  # sd.cpp --threads (0: sd.cpp's default)
    memory_mib: int = 0  # budget for resident models (0: not set)
    env: dict[str, str] = {}  # the backend's device selection


class Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.resident: Resident | None = None
        self.model: str | None = None  # the model its resident process holds
        self.state: WorkerState = "idle"
        self.job_id: str | None = None
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def info(self) -> WorkerInfo:
        spec, resident = self.spec, self.resident
        pid = resident.pid if resident is not None and resident.alive else None
        return WorkerInfo(
            spec.name,
            spec.backend,
            spec.device,
            self.state,
            self.job_id,
            [self.model] if self.model and pid is not None else [],
            spec.threads or None,
            spec.memory_mib or None,
            resident_memory_mib(pid),
            pid,
            self.last_error,
        )


class WorkerPool:
    def __init__(self, specs: list[WorkerSpec]) -> None:
        if not specs:
            raise ValueError("a pool needs at least one worker")
        self.workers = [Worker(spec) for spec in specs]
        self._by_name = {worker.name: worker for worker in self.workers}
        self._turn = anyio.Lock()  # FIFO: claims and loads are served in arrival order
        self._changed = anyio.Event()
        # Called with a worker whose job ended; True: it takes the worker over (a restart) and calls `ready` later.
        self.revive: Callable[[Worker], bool] | None = None
        self.default_model: str | None = None  # what a job that names no model runs on (the loaded model)

    def __getitem__(self, name: str) -> Worker:
        return self._by_name[name]

    def infos(self) -> list[WorkerInfo]:
        return [worker.info() for worker in self.workers]

    def running(self, job_id: str) -> Worker | None:
        """The worker the job was handed to, while it runs."""
        return next((worker for worker in self.workers if worker.job_id == job_id), None)

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    async def assign(self, job_id: str, model: str | None = None) -> str:
        """Wait, in arrival order, for an idle worker and hand it the job; returns the worker's name."""
        wanted = model or self.default_model
        async with self._turn:
            await self._wait_until(lambda: any(worker.state == "idle" for worker in self.workers))
            idle = [worker for worker in self.workers if worker.state == "idle"]
            chosen = min(idle, key=lambda w: (wanted is None or w.model != wanted, w.last_error is not None))
            chosen.state, chosen.job_id = "busy", job_id
            return chosen.name

    def release(self, name: str) -> None:
        """The worker's job ended: it takes the next one, or first restarts its process (`revive`)."""
        worker = self._by_name[name]
        worker.job_id = None
        if self.revive is not None and self.revive(worker):
            worker.state = "starting"
        else:
            self.ready(worker)

    def ready(self, worker: Worker) -> None:
        worker.state = "idle"
        self._notify()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[list[Worker]]:
        """Every worker, once its running job (or restart) is over; jobs wait until this ends (a model load)."""
        async with self._turn:
            await self._wait_until(lambda: all(worker.state == "idle" for worker in self.workers))
            for worker in self.workers:
                worker.state = "loading"
            try:
                yield self.workers
            finally:
                for worker in self.workers:
                    worker.state = "idle"
                self._notify()
