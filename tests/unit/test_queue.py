"""The queue driven directly over a real SQLite store, without HTTP or binaries: order, progress, history,
filters and paging, retention, and restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import msgspec
import pytest

from core.events.bus import EventBus
from core.events.types import JobProgress, JobTransferProgress
from core.generation.requests import Txt2ImgRequest
from core.generation.specs import Txt2ImgJob
from core.job_types import JOB_CODEC
from core.jobs.queue import INTERRUPTED, JobFailed, JobQueue, ProgressReport, Retention, Transfer
from core.jobs.records import JobRecord
from core.jobs.schemas import Lane, QueueQuery
from core.models.schemas import DownloadRequest
from core.models.specs import DownloadJob
from core.store.sqlite import STORE_FILE, SqliteStore
from runners.progress import SamplingStep


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    yield opened
    opened.close()


def spec(prompt: str, batch: int = 1) -> Txt2ImgJob:
    return Txt2ImgJob(request=Txt2ImgRequest(prompt=prompt, batch_count=batch, seed=1))


async def run_until_idle(queue: JobQueue, execute, lane: Lane = "generation") -> None:  # type: ignore[no-untyped-def]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(queue.run_worker, execute, lane)
        with anyio.fail_after(
            300
        ):  # a hang guard, not a speed check: 1200 fsync'd jobs on a loaded CI box take a while
            while queue.active:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()


async def test_fifo_progress_failure_and_full_history(store: SqliteStore, tmp_path: Path) -> None:
    bus, seen = EventBus(), []
    bus.subscribe(lambda e: seen.append((e.event, getattr(e.data, "status", None))))
    queue = JobQueue(store, tmp_path, bus)
    ran: list[str] = []

    async def execute(record: JobRecord, report: ProgressReport) -> list[str]:
        assert isinstance(record.spec, Txt2ImgJob)
        ran.append(record.spec.request.prompt)
        report(SamplingStep(1, 2, 4))
        if record.spec.request.prompt == "bad":
            raise JobFailed("binary said no")
        return [f"{record.job.job_id}/image_0.png"]

    ids = [(await queue.submit(spec(name, batch=2))).job_id for name in ("a", "bad", "c")]
    await run_until_idle(queue, execute)
    assert ran == ["a", "bad", "c"]
    failed = await queue.get(ids[1])
    assert failed.status == "failed" and failed.error == "binary said no"
    done = await queue.get(ids[2])
    assert done.progress.percentage == 100.0 and done.progress.all_steps == 8
    assert done.outputs == [f"{ids[2]}/image_0.png"] and msgspec.to_builtins(done.params)["prompt"] == "c"
    assert ("job_status_changed", "processing") in seen and ("job_status_changed", "failed") in seen
    listing = await queue.listing()
    assert [job.job_id for job in listing.items] == ids  # oldest first, all kept
    assert (listing.completed_count, listing.failed_count, listing.total_count) == (2, 1, 3)


async def test_history_beyond_a_thousand_jobs_is_kept_and_paged(store: SqliteStore, tmp_path: Path) -> None:
    queue = JobQueue(store, tmp_path, EventBus())

    async def execute(record: JobRecord, report: ProgressReport) -> list[str]:
        return []

    ids = [(await queue.submit(spec(f"cat {index}" if index % 2 else f"dog {index}"))).job_id for index in range(1200)]
    await run_until_idle(queue, execute)
    last = (await queue.submit(spec("pending cat"))).job_id  # no worker: stays pending
    listing = await queue.listing()
    assert listing.total_count == 1201 and listing.completed_count == 1200 and listing.pending_count == 1
    # Default window: every pending job plus the newest 100 finished ones, oldest first.
    assert [job.job_id for job in listing.items] == [*ids[-100:], last]
    everything = await queue.listing(QueueQuery(limit=0))
    assert len(everything.items) == 1201 and everything.items[0].job_id == ids[0]
    page = await queue.listing(QueueQuery(limit=10, offset=5))
    assert [job.job_id for job in page.items] == ids[-14:-4] and page.matched_count == 1201
    cats = await queue.listing(QueueQuery(search="CAT", status=("completed",), limit=0))
    assert cats.matched_count == 600 and all("cat" in msgspec.to_builtins(job.params)["prompt"] for job in cats.items)
    assert cats.total_count == 1201  # the counts cover all history, whatever the filter
    pending = await queue.listing(QueueQuery(status=("pending",)))
    assert [job.job_id for job in pending.items] == [last]
    assert (await queue.listing(QueueQuery(type=("upscale",)))).items == []
    literal = await queue.listing(QueueQuery(search="%", limit=0))
    assert literal.items == []  # LIKE wildcards in the search are taken literally


async def test_retention_by_count_deletes_outputs_when_asked(store: SqliteStore, tmp_path: Path) -> None:
    queue = JobQueue(store, tmp_path, EventBus(), Retention(max_jobs=3, delete_outputs=True))

    async def execute(record: JobRecord, report: ProgressReport) -> list[str]:
        (tmp_path / record.job.job_id).mkdir()
        return []

    ids = [(await queue.submit(spec(str(index)))).job_id for index in range(5)]
    await run_until_idle(queue, execute)
    listing = await queue.listing(QueueQuery(limit=0))
    assert [job.job_id for job in listing.items] == ids[2:] and listing.total_count == 3
    assert [path.name for path in sorted(tmp_path.iterdir()) if path.is_dir()] == sorted(ids[2:])


async def test_restart_fails_the_processing_job_and_requeues_pending(tmp_path: Path) -> None:
    first_store = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    first = JobQueue(first_store, tmp_path, EventBus())
    running = (await first.submit(spec("a"))).job_id
    pending = (await first.submit(spec("b"))).job_id
    record = first.active[running]
    record.job.status = "processing"
    await first_store.save_job(record)
    first_store.close()  # as after a SIGKILL: nothing else was written

    second_store = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    second = JobQueue(second_store, tmp_path, EventBus())
    await second.restore()
    assert (await second.get(running)).status == "failed" and (await second.get(running)).error == INTERRUPTED
    assert (await second.get(pending)).status == "pending" and second.position(pending) == 1
    second_store.close()
    third_store = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    third = JobQueue(third_store, tmp_path, EventBus())
    await third.restore()  # the failure was committed: it is durable
    assert (await third.get(running)).status == "failed"
    third_store.close()


async def test_a_transfer_reports_bytes_not_steps(store: SqliteStore, tmp_path: Path) -> None:
    bus, seen = EventBus(), []
    bus.subscribe(lambda event: seen.append(event.data))
    queue = JobQueue(store, tmp_path, bus)
    request = DownloadRequest(model_type="lora", url="http://hub/x.safetensors")
    download = DownloadJob(request=request, source="url", url="http://hub/x.safetensors", target="/m/x", path="x")

    async def execute(record: JobRecord, report: ProgressReport) -> list[str]:
        report(Transfer(3 * 1024 * 1024, 4 * 1024 * 1024))
        report(Transfer(10))  # a source that announced no size
        return []

    job_id = (await queue.submit(download)).job_id
    await run_until_idle(queue, execute, "downloads")
    transfers = [data for data in seen if isinstance(data, JobTransferProgress)]
    assert transfers == [
        JobTransferProgress(job_id, 3 * 1024 * 1024, 4 * 1024 * 1024, 75.0),
        JobTransferProgress(job_id, 10, None, None),
    ]
    assert not [data for data in seen if isinstance(data, JobProgress)]
    job = await queue.get(job_id)
    assert job.status == "completed" and job.progress.step == job.progress.total_steps == 0
    assert msgspec.to_builtins(job.params) == {
        "model_type": "lora",
        "source": "url",
        "model_id": None,
        "url": "http://hub/x.safetensors",
        "repo_id": None,
        "filename": None,
        "subfolder": None,
        "revision": "main",
        "path": "x",
    }


async def test_finished_watchers_get_every_ended_job_with_its_type_and_times(
    store: SqliteStore, tmp_path: Path
) -> None:
    queue = JobQueue(store, tmp_path, EventBus())
    ended: list[tuple[str, str, str, bool]] = []
    queue.watch_finished(lambda job: ended.append((job.job_id, job.type, job.status, job.started_at is not None)))

    async def execute(record: JobRecord, report: ProgressReport) -> list[str]:
        assert isinstance(record.spec, Txt2ImgJob)
        if record.spec.request.prompt == "bad":
            raise JobFailed("no")
        return []

    ok, bad, dropped = [(await queue.submit(spec(name))).job_id for name in ("ok", "bad", "dropped")]
    await queue.cancel(dropped)  # while pending: it never started
    assert ended == [(dropped, "txt2img", "cancelled", False)]
    await run_until_idle(queue, execute)
    assert ended[1:] == [(ok, "txt2img", "completed", True), (bad, "txt2img", "failed", True)]
