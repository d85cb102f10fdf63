"""The scheduler's own cost (core/workers/pool.py), with in-process stand-ins for the workers: 10,000 queued jobs
handed out over 64 workers holding 8 different models, each job naming one (affinity), each stand-in job ending at
once. Target: under 1 ms per job.

    python -m bench --only scheduler
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from core.workers.pool import WorkerPool, WorkerSpec


async def _hand_out(workers: int, jobs: int, models: int) -> tuple[float, int]:
    pool = WorkerPool([WorkerSpec(f"w{i}", "cpu", Path("sd-server")) for i in range(workers)])
    for index, worker in enumerate(pool.workers):
        worker.model = f"m{index % models}"
    on_holder = 0

    async def stand_in(name: str) -> None:
        await anyio.lowlevel.checkpoint()
        pool.release(name)

    started = time.perf_counter()
    async with anyio.create_task_group() as running:
        for job in range(jobs):
            wanted = f"m{job % models}"
            name = await pool.assign(str(job), wanted)
            on_holder += pool[name].model == wanted
            running.start_soon(stand_in, name)
    return time.perf_counter() - started, on_holder


def run(workers: int = 64, jobs: int = 10_000, models: int = 8) -> None:
    elapsed, on_holder = anyio.run(_hand_out, workers, jobs, models)
    print(
        f"scheduler: {jobs} jobs over {workers} stand-in workers ({models} models): "
        f"{1000 * elapsed / jobs:.3f} ms per job (target < 1 ms), {100 * on_holder / jobs:.0f}% on a worker "
        "holding the job's model"
    )
