"""The workers and the scheduler that hands them jobs.

Each worker keeps its own resident process (our worker or sd-server) on its own backend and device. Which pending
job goes next is `FairOrder`'s choice (priority, then round-robin between API keys, then FIFO), made only once a
worker is idle (`WorkerPool.idle`), so a job that arrives while every worker is busy still competes. Claimants of
workers take turns (anyio's lock is FIFO). Among idle workers a job goes to the one that can run its model at the
least cost (`Worker.cost`): one that holds it resident (no load), else one with room for it in its memory budget (a
load, nothing evicted), else the one that evicts the fewest MiB of least recently used models; then one without a
recent failure, then the first declared. A model load (POST /models/load) takes every worker at once: it waits for
their running jobs, and jobs that arrive meanwhile wait for the load.

Resident models: each worker holds models in least-recently-used order (`Worker.models`, name -> MiB estimate) within
its `memory_mib` budget. Our worker keeps several (runners/resident_worker.py); sd-server, or a worker with no
budget set, holds one at a time (a load replaces it).

A worker whose process crashes fails its own job only (never re-run: the job may be what crashed it); its owner
restarts the process and the worker takes jobs again, while the other workers go on.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import msgspec

from core.jobs.schemas import ANONYMOUS
from core.workers.schemas import WorkerInfo, WorkerModel, WorkerState
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
        self.models: dict[str, int] = {}  # the models its resident process holds -> MiB, least recently used first
        self.loads = 0  # model loads on this worker since the server started (a switch between resident ones: none)
        self.state: WorkerState = "idle"
        self.job_id: str | None = None
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def model(self) -> str | None:
        """The most recently used resident model."""
        return next(reversed(self.models), None)

    @property
    def used_mib(self) -> int:
        return sum(self.models.values())

    @property
    def holds_several(self) -> bool:
        """Whether it keeps several models: our worker with a memory budget (else one at a time)."""
        return self.spec.worker is not None and self.spec.memory_mib > 0

    def touch(self, model: str) -> None:
        """The model was used: now the most recently used."""
        self.models[model] = self.models.pop(model)

    def evictions(self, model: str, need_mib: int) -> list[str]:
        """The resident models (least recently used first) to unload before `model` (`need_mib`) fits."""
        others = [name for name in self.models if name != model]
        if not self.holds_several:
            return others
        out, used = [], sum(self.models[name] for name in others)
        for name in others:
            if used + need_mib <= self.spec.memory_mib:
                break
            out.append(name)
            used -= self.models[name]
        return out

    def cost(self, model: str | None, need_mib: int = 0) -> tuple[int, int]:
        """What running `model` here costs, lower first: (0, 0) resident; (1, 0) a load into free room; (2, MiB
        evicted) a load that evicts least recently used models."""
        if model is None or model in self.models:
            return (0, 0)
        evicted = self.evictions(model, need_mib)
        return (2, sum(self.models[name] for name in evicted)) if evicted else (1, 0)

    def info(self) -> WorkerInfo:
        spec, resident = self.spec, self.resident
        pid = resident.pid if resident is not None and resident.alive else None
        return WorkerInfo(
            spec.name,
            spec.backend,
            spec.device,
            self.state,
            self.job_id,
            [WorkerModel(name, mib) for name, mib in self.models.items()] if pid is not None else [],
            spec.threads or None,
            spec.memory_mib or None,
            self.used_mib if pid is not None else 0,
            self.loads,
            resident_memory_mib(pid),
            pid,
            self.last_error,
            resident.device_facts() if resident is not None else None,
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
        self.model_mib: dict[str, int] = {}  # model name -> its MiB estimate, for placing jobs that name it

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

    async def idle(self) -> None:
        """Return once a worker is idle: the moment to choose the next job (`FairOrder.pop`)."""
        await self._wait_until(lambda: any(worker.state == "idle" for worker in self.workers))

    async def assign(self, job_id: str, model: str | None = None) -> str:
        """Wait, in arrival order, for an idle worker and hand it the job; returns the worker's name."""
        wanted = model or self.default_model
        async with self._turn:
            await self._wait_until(lambda: any(worker.state == "idle" for worker in self.workers))
            chosen = choose([worker for worker in self.workers if worker.state == "idle"], wanted, self.model_mib)
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


def choose(idle: list[Worker], model: str | None, model_mib: dict[str, int]) -> Worker:
    """The idle worker a job for `model` goes to: least cost (`Worker.cost`), then no recent failure, then the first
    declared."""
    if model is None:
        return min(idle, key=lambda worker: worker.last_error is not None)
    holders = [worker for worker in idle if model in worker.models]  # cost (0, 0): the common case, kept cheap
    if holders:
        return min(holders, key=lambda worker: worker.last_error is not None)
    need = model_mib.get(model, 0)
    return min(idle, key=lambda worker: (worker.cost(model, need), worker.last_error is not None))


# ------------------------------------------------------------------------------------ which pending job goes next


class _Level:
    """The pending jobs of one priority: a FIFO per key, and the keys in round-robin order (a heap of
    (when the key was last served at this level, its oldest job's arrival, key); stale entries are skipped)."""

    def __init__(self) -> None:
        self.jobs: dict[str, deque[tuple[int, str]]] = {}  # key -> (arrival, job id), oldest first
        self.turns: list[tuple[int, int, str]] = []
        self.current: dict[str, tuple[int, int, str]] = {}  # key -> its live entry in `turns`
        self.served: dict[str, int] = {}  # key -> the tick it was last served (absent: never, ranks as -1)
        self.size = 0

    def _queue_turn(self, key: str) -> None:
        entry = (self.served.get(key, -1), self.jobs[key][0][0], key)
        self.current[key] = entry
        heapq.heappush(self.turns, entry)

    def push(self, key: str, arrival: int, job_id: str) -> None:
        fifo = self.jobs.get(key)
        if fifo is None:
            self.jobs[key] = deque([(arrival, job_id)])
            self._queue_turn(key)
        else:
            fifo.append((arrival, job_id))
        self.size += 1

    def _next_key(self) -> str:
        while True:
            entry = self.turns[0]
            if self.current.get(entry[2]) == entry:
                return entry[2]
            heapq.heappop(self.turns)  # stale: its key was emptied or re-queued since

    def pop(self, tick: int) -> str:
        key = self._next_key()
        heapq.heappop(self.turns)
        fifo = self.jobs[key]
        _, job_id = fifo.popleft()
        self.served[key] = tick
        self.size -= 1
        if fifo:
            self._queue_turn(key)
        else:
            del self.jobs[key], self.current[key]
        return job_id

    def remove(self, key: str, arrival: int, job_id: str) -> None:
        fifo = self.jobs[key]
        head = fifo[0][1] == job_id
        fifo.remove((arrival, job_id))
        self.size -= 1
        if not fifo:
            del self.jobs[key], self.current[key]
        elif head:
            self._queue_turn(key)  # its turn now ranks by its new oldest job

    def ahead(self, key: str, arrival: int) -> int:
        """How many of this level's jobs leave before the key's job that arrived at `arrival`: its key's older
        jobs, and from each other key one job per round, the round the job leaves in included for a key whose
        turn comes first."""
        fifo = self.jobs[key]
        rounds = next(index for index, (when, _) in enumerate(fifo) if when == arrival) + 1
        mine = self.current[key]
        count = rounds - 1
        for other, jobs in self.jobs.items():
            if other != key:
                count += min(len(jobs), rounds if self.current[other] < mine else rounds - 1)
        return count


class FairOrder:
    """The pending jobs of one lane and which goes next: the highest priority first; within a priority, the oldest
    job of the API key served least recently there (round-robin between keys); within a key, FIFO. With one key
    (a server without keys) and one priority this is plain FIFO.

    Bounds on overtaking, for a pending job J of key K at priority p: jobs of a higher priority always go first
    (they may keep J waiting as long as they keep arriving); at p, K's older jobs go first, and between two jobs of
    K at most one job of each other key with jobs pending at p goes. So J, the n-th pending job of K at p, waits at
    most for n - 1 jobs of K and n jobs of each other key at p, however many jobs those keys queued before it.

    Costs: push O(log k), pop O(log k) amortised (k: keys with pending jobs at the priority; a scan over at most
    the distinct priorities pending), remove (a cancel) O(jobs of its key), position O(jobs of its key + k)."""

    def __init__(self) -> None:
        self._levels: dict[int, _Level] = {}  # kept when empty: they remember when each key was served
        self._pending: set[int] = set()  # the priorities with pending jobs
        self._where: dict[str, tuple[int, str, int]] = {}  # job id -> (priority, key, arrival)
        self._arrivals = 0
        self._ticks = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._where

    def push(self, job_id: str, priority: int = 0, key: str = ANONYMOUS) -> None:
        self._arrivals += 1
        self._where[job_id] = (priority, key, self._arrivals)
        level = self._levels.get(priority)
        if level is None:
            level = self._levels[priority] = _Level()
        level.push(key, self._arrivals, job_id)
        self._pending.add(priority)

    def pop(self) -> str | None:
        """The job that goes next, taken out of the order (None: nothing pending)."""
        if not self._pending:
            return None
        priority = max(self._pending)
        level = self._levels[priority]
        self._ticks += 1
        job_id = level.pop(self._ticks)
        if not level.size:
            self._pending.discard(priority)
        del self._where[job_id]
        return job_id

    def remove(self, job_id: str) -> None:
        """Take a job out (cancelled while pending); nothing if it is not here."""
        where = self._where.pop(job_id, None)
        if where is None:
            return
        priority, key, arrival = where
        level = self._levels[priority]
        level.remove(key, arrival, job_id)
        if not level.size:
            self._pending.discard(priority)

    def position(self, job_id: str) -> int:
        """1-based place in the order the pending jobs will go in if nothing else arrives (0: not here)."""
        where = self._where.get(job_id)
        if where is None:
            return 0
        priority, key, arrival = where
        higher = sum(self._levels[each].size for each in self._pending if each > priority)
        return higher + self._levels[priority].ahead(key, arrival) + 1
