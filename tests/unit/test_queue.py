"""The queue driven directly, without HTTP or binaries: order, history cap, persistence and restart."""

from __future__ import annotations

from pathlib import Path

import anyio

from orchestrator.events import EventBus
from orchestrator.queue import INTERRUPTED, JobFailed, JobQueue, JobRecord, ProgressReport
from runners.progress import SamplingStep


async def test_fifo_progress_failure_and_history_cap(tmp_path: Path) -> None:
    bus, seen = EventBus(), []
    bus.subscribe(lambda e: seen.append((e.event, e.data.get("status"))))
    queue = JobQueue(tmp_path, bus, max_history=2)
    ran: list[str] = []

    async def execute(record: JobRecord, report: ProgressReport) -> list[str]:
        ran.append(record.spec["name"])
        report(SamplingStep(1, 2, 4))
        if record.spec["name"] == "bad":
            raise JobFailed("binary said no")
        return [f"{record.job.job_id}/image_0.png"]

    ids = [(await queue.submit("txt2img", {}, {"name": n}, total_images=2)).job_id for n in ("a", "bad", "c")]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(queue.run_worker, execute)
        with anyio.fail_after(5):
            while any(r.job.status != "completed" and r.job.status != "failed" for r in queue.records.values()):
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert ran == ["a", "bad", "c"]
    assert list(queue.records) == ids[1:]  # only the 2 newest finished jobs are kept
    failed = queue.get(ids[1])
    assert failed.status == "failed" and failed.error == "binary said no"
    done = queue.get(ids[2])
    assert done.progress.percentage == 100.0 and done.progress.all_steps == 8
    assert ("job_status_changed", "processing") in seen and ("job_status_changed", "failed") in seen


async def test_restart_fails_the_processing_job_and_requeues_pending(tmp_path: Path) -> None:
    first = JobQueue(tmp_path, EventBus())
    running = (await first.submit("txt2img", {}, {})).job_id
    pending = (await first.submit("txt2img", {}, {})).job_id
    first.records[running].job.status = "processing"
    await first.persist()

    second = JobQueue(tmp_path, EventBus())
    second.restore()
    assert second.get(running).status == "failed" and second.get(running).error == INTERRUPTED
    assert second.get(pending).status == "pending" and second.position(pending) == 1
    third = JobQueue(tmp_path, EventBus())
    third.restore()  # the restored state was written back: the failure is durable
    assert third.get(running).status == "failed"
