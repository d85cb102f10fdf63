"""Following a job to its end, as clients of request-response APIs (AUTOMATIC1111, OpenAI, MCP) expect, with its
progress and previews relayed as they happen."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from core.events.bus import Event, EventBus
from core.events.types import JobPreview, JobProgress, JobStatusChanged
from core.jobs.queue import JobQueue
from core.jobs.schemas import TERMINAL, Job

Update = JobProgress | JobPreview
OnUpdate = Callable[[Update], Awaitable[None]]


async def job_updates(queue: JobQueue, bus: EventBus, job_id: str) -> AsyncIterator[Update | Job]:
    """The job's progress and preview events as they come, then the job itself once it is completed, failed or
    cancelled (the last item)."""
    send, receive = anyio.create_memory_object_stream[Event](math.inf)

    def relay(event: Event) -> None:  # the bus is synchronous: a stream hands events to this task
        if event.data.job_key == job_id and isinstance(event.data, (JobProgress, JobPreview, JobStatusChanged)):
            send.send_nowait(event)

    unsubscribe = bus.subscribe(relay)
    try:
        job = await queue.get(job_id)
        while job.status not in TERMINAL:
            event = await receive.receive()
            if isinstance(event.data, JobStatusChanged):
                job = await queue.get(job_id)
            elif isinstance(event.data, (JobProgress, JobPreview)):
                yield event.data
        yield job
    finally:
        unsubscribe()
        send.close()
        receive.close()


async def wait_for_job(queue: JobQueue, bus: EventBus, job_id: str, on_update: OnUpdate | None = None) -> Job:
    """The job once it is finished (the caller bounds the wait with a cancel scope)."""
    async for item in job_updates(queue, bus, job_id):
        if isinstance(item, Job):
            return item
        if on_update is not None:
            await on_update(item)
    raise RuntimeError("job_updates ended without the job")  # pragma: no cover - job_updates always ends with it
