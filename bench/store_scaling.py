"""Bookkeeping cost against history size: the store filled with 100, 10,000 and 100,000 finished jobs.

For each size: the store's cost per status change (a committed UPDATE of one job, in-process), the median
`POST /txt2img` response through the real server (each job runs to completion before the next is sent, so the
POST never competes with the binary), and the median `GET /queue?limit=50`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio
import httpx

from core.generation.requests import Txt2ImgRequest
from core.generation.specs import Txt2ImgJob
from core.job_types import JOB_CODEC
from core.jobs.records import JobRecord
from core.jobs.schemas import Job, Progress
from core.store.sqlite import STORE_FILE, SqliteStore
from tests.support import ServerProcess, wait_for_job

SIZES = (100, 10_000, 100_000)
FILL_BATCH = 5_000


def finished_record(index: int) -> JobRecord:
    request = Txt2ImgRequest(prompt=f"history job {index}: a cat in a hat", width=64, height=64, steps=2, seed=index)
    spec = Txt2ImgJob(request=request)
    job = Job(
        job_id=f"00000000-0000-0000-0000-{index:012d}",
        type="txt2img",
        status="completed",
        progress=Progress(step=2, total_steps=2, all_steps=2, current_all_steps=2, percentage=100.0),
        created_at="2026-01-01T00:00:00.000Z",
        started_at="2026-01-01T00:00:01.000Z",
        completed_at="2026-01-01T00:00:02.000Z",
        outputs=[f"{index}/image_0.png"],
        params=spec.params(),
    )
    return JobRecord(job, spec)


def fill(output: Path, count: int) -> None:
    store = SqliteStore(output / STORE_FILE, JOB_CODEC)
    try:
        for start in range(0, count, FILL_BATCH):
            store.insert_jobs_blocking([finished_record(i) for i in range(start, min(start + FILL_BATCH, count))])
    finally:
        store.close()


def status_change_ms(output: Path, changes: int = 500) -> float:
    """Median cost of committing one job's status change, as the queue does it."""
    store = SqliteStore(output / STORE_FILE, JOB_CODEC)
    record = finished_record(10**9)
    record.job.status = "pending"

    async def measure() -> list[float]:
        await store.add_job(record)
        times = []
        for index in range(changes):
            record.job.status = ("processing", "completed")[index % 2]
            started = time.perf_counter()
            await store.save_job(record)
            times.append(time.perf_counter() - started)
        return times

    try:
        return 1000 * statistics.median(anyio.run(measure))
    finally:
        store.close()


def median_ms(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def run(models: Path, work: Path, load: dict[str, str], sizes: tuple[int, ...] = SIZES, submissions: int = 60) -> None:
    """All sizes side by side: one server per store, their submissions interleaved, so drift on a busy machine
    hits every size alike."""
    fills, changes, servers = {}, {}, {}
    for size in sizes:
        output = work / f"store-{size}"
        output.mkdir(parents=True)
        fills[size] = median_ms(partial(fill, output, size), 1) / 1000
        changes[size] = status_change_ms(output)
    posts: dict[int, list[float]] = {size: [] for size in sizes}
    body = {"prompt": "a cat", "width": 64, "height": 64, "steps": 1, "seed": 1}
    clients: dict[int, httpx.Client] = {}
    try:
        for size in sizes:
            servers[size] = ServerProcess(models, work / f"store-{size}", work / f"store-{size}.log").start()
            clients[size] = http = httpx.Client(base_url=servers[size].url, timeout=60)
            http.put("/preview/settings", json={"enabled": False}).raise_for_status()
            http.post("/models/load", json=load).raise_for_status()
        for _ in range(submissions):
            for size, http in clients.items():
                started = time.perf_counter()
                response = http.post("/txt2img", json=body)
                posts[size].append(time.perf_counter() - started)
                assert response.status_code == 202, response.text
                wait_for_job(http, response.json()["job_id"])
        queue_ms = {
            size: median_ms(lambda: http.get("/queue", params={"limit": 50}).raise_for_status(), 50)  # noqa: B023 (called at once)
            for size, http in clients.items()
        }
        totals = {size: http.get("/queue", params={"limit": 1}).json()["total_count"] for size, http in clients.items()}
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
    post_ms = {size: 1000 * statistics.median(times) for size, times in posts.items()}
    print("store scaling (finished jobs in history):")
    print("  history   fill s   status change ms   POST /txt2img ms   GET /queue?limit=50 ms   total_count")
    for size in sizes:
        print(
            f"  {size:>7}   {fills[size]:6.1f}   {changes[size]:16.2f}   {post_ms[size]:16.2f}   "
            f"{queue_ms[size]:22.2f}   {totals[size]:>11}"
        )
    print(
        f"  spread: status change {max(changes.values()) / min(changes.values()):.2f}x, "
        f"POST {max(post_ms.values()) / min(post_ms.values()):.2f}x (target: under 5 ms and within 1.2x; "
        "GET /queue?limit=50 under 10 ms at 100,000)"
    )
