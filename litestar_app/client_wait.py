"""Request-response clients (AUTOMATIC1111, OpenAI) wait for their job inside the HTTP request; a client that
goes away while waiting cancels its job, as closing the A1111 UI tab interrupts nothing but the request."""

from __future__ import annotations

import logging

import anyio
from litestar import Request

from core.errors import ServiceError
from core.jobs.schemas import Job
from core.jobs.waiting import OnUpdate, wait_for_job
from core.service import Service

log = logging.getLogger("sdcpp_restapi")


async def wait_or_cancel(request: Request, service: Service, job_id: str, on_update: OnUpdate | None = None) -> Job:
    job: Job | None = None
    async with anyio.create_task_group() as tasks:

        async def cancel_on_disconnect() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            log.info("client left while waiting for job %s: cancelling it", job_id)
            await service.queue.cancel_if_active(job_id)
            tasks.cancel_scope.cancel()

        tasks.start_soon(cancel_on_disconnect)
        job = await wait_for_job(service.queue, service.bus, job_id, on_update)
        tasks.cancel_scope.cancel()
    if job is None:  # the client left: nobody reads the answer
        raise ServiceError("client disconnected")
    return job
