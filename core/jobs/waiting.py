"""Waiting for a job to finish, as clients of request-response APIs (AUTOMATIC1111, OpenAI, MCP) expect, with
its progress relayed as it happens."""

from __future__ import annotations

import math
from typing import Awaitable, Callable

import anyio

from core.events.bus import Event, EventBus
from core.events.types import JobPreview, JobProgress, JobStatusChanged
from core.jobs.queue import JobQueue
from core.jobs.schemas import TERMINAL, Job

Update = JobProgress | JobPreview
OnUpdate = Callable[[Update], Awaitable[None]]


async def wait_for_job(queue: JobQueue, bus: EventBus, job_id: str, on_update: OnUpdate | None = None) -> Job:
    """The job once it is completed, failed or cancelled (the caller bounds the wait with a cancel scope)."""
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
            elif on_update is not None and isinstance(event.data, (JobProgress, JobPreview)):
                await on_update(event.data)
        return job
    finally:
        unsubscribe()
        send.close()
        receive.close()
