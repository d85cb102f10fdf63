"""The routes of core.jobs: the queue (GET /queue, GET and DELETE /queue/{id})."""

from __future__ import annotations

from typing import Annotated

from litestar import delete, get
from litestar.params import Parameter

from core.jobs.schemas import Job, JobStatus, JobType, QueueListing, QueueQuery
from core.request_types import INT_MAX, SuccessMessage
from core.service import Service


@get("/queue", summary="Queue counts and jobs, with filters and paging")
async def list_queue(
    service: Service,
    status: Annotated[list[JobStatus] | None, Parameter(description="only jobs with these statuses")] = None,
    type: Annotated[list[JobType] | None, Parameter(description="only jobs of these types")] = None,
    search: Annotated[str | None, Parameter(description="prompt contains this text (case-insensitive)")] = None,
    limit: Annotated[
        int | None,
        Parameter(
            ge=0,
            le=INT_MAX,
            description=(
                "page size, counted back from the newest job; 0 lists every matching job. Without it: all pending "
                "and processing jobs plus the newest 100 finished ones"
            ),
        ),
    ] = None,
    offset: Annotated[int, Parameter(ge=0, le=INT_MAX, description="skip this many newer jobs (with limit)")] = 0,
) -> QueueListing:
    query = QueueQuery(tuple(status or ()), tuple(type or ()), search or "", limit, offset)
    return await service.queue.listing(query)


@get("/queue/{job_id:str}", summary="One job")
async def get_job(service: Service, job_id: str) -> Job:
    return await service.queue.get(job_id)


@delete("/queue/{job_id:str}", status_code=200, summary="Cancel a pending (or the running) job")
async def cancel_job(service: Service, job_id: str) -> SuccessMessage:
    await service.queue.cancel(job_id)
    return SuccessMessage(True, "Job cancelled")


ROUTES = [list_queue, get_job, cancel_job]
