"""The scheduler's own cost (core/workers/pool.py), with in-process stand-ins for the workers: 10,000 queued jobs
from 10 API keys at 3 priorities, put in the fair order (priority, round-robin between keys, FIFO), then handed out
over 64 workers holding 8 different models, two each (budget 40 MiB, 18 MiB a model), each job naming one
(affinity), each stand-in job ending at once; then the same with 16 models named, half of them held by none (the
placement by room and eviction cost). The next job is chosen once a worker is idle, as the queue does. Target: under
1 ms per job.

    python -m bench --only scheduler
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from core.workers.pool import FairOrder, WorkerPool, WorkerSpec


async def _hand_out(workers: int, jobs: int, models: int, keys: int, held: int = 8) -> tuple[float, int, int]:
    """`held`: how many of the models the stand-ins hold between them (the others cost a load: the eviction path)."""
    pool = WorkerPool(
        [WorkerSpec(f"w{i}", "cpu", Path("sd-server"), Path("sdcpp-worker"), memory_mib=40) for i in range(workers)]
    )
    pool.model_mib = {f"m{model}": 18 for model in range(models)}
    for index, worker in enumerate(pool.workers):
        worker.models = {f"m{index % held}": 18, f"m{(index + 1) % held}": 18}
    on_holder = 0
    order = FairOrder()
    # Key k submits its jobs in one burst after key k-1 (the case fairness is for); every 7th job is urgent, every
    # 5th low.
    per_key = jobs // keys
    wanted: dict[str, str] = {}
    started = time.perf_counter()
    for job in range(jobs):
        job_id = str(job)
        wanted[job_id] = f"m{job % models}"
        order.push(job_id, 1 if job % 7 == 0 else -1 if job % 5 == 0 else 0, f"key-{min(job // per_key, keys - 1)}")

    async def stand_in(name: str) -> None:
        await anyio.lowlevel.checkpoint()
        pool.release(name)

    first_of_last_key = -1
    async with anyio.create_task_group() as running:
        for handed in range(jobs):
            await pool.idle()
            picked = order.pop()
            assert picked is not None
            if first_of_last_key < 0 and int(picked) // per_key >= keys - 1:
                first_of_last_key = handed
            name = await pool.assign(picked, wanted[picked])
            on_holder += wanted[picked] in pool[name].models
            running.start_soon(stand_in, name)
    return time.perf_counter() - started, on_holder, first_of_last_key


def run(workers: int = 64, jobs: int = 10_000, models: int = 8, keys: int = 10) -> None:
    missed, missed_holder, _ = anyio.run(_hand_out, workers, jobs, 2 * models, keys, models)
    elapsed, on_holder, first_of_last_key = anyio.run(_hand_out, workers, jobs, models, keys)
    print(
        f"scheduler, half the jobs naming a model no stand-in holds (placed by room and eviction cost): "
        f"{1000 * missed / jobs:.3f} ms per job (target < 1 ms), {100 * missed_holder / jobs:.0f}% on a holder"
    )
    print(
        f"scheduler: {jobs} jobs from {keys} keys at 3 priorities over {workers} stand-in workers ({models} models): "
        f"{1000 * elapsed / jobs:.3f} ms per job (target < 1 ms), {100 * on_holder / jobs:.0f}% on a worker "
        f"holding the job's model; the last key's first job went out {first_of_last_key + 1}th "
        f"(FIFO: {(keys - 1) * (jobs // keys) + 1}th)"
    )
