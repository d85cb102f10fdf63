from __future__ import annotations

from litestar import delete, get

from orchestrator.schemas import Job, QueueListing, SuccessMessage
from orchestrator.service import Service


@get("/queue", sync_to_thread=False)
def list_queue(service: Service) -> QueueListing:
    return service.queue.listing()


@get("/queue/{job_id:str}", sync_to_thread=False)
def get_job(service: Service, job_id: str) -> Job:
    return service.queue.get(job_id)


@delete("/queue/{job_id:str}", status_code=200)
async def cancel_job(service: Service, job_id: str) -> SuccessMessage:
    await service.queue.cancel(job_id)
    return SuccessMessage(True, "Job cancelled")


ROUTES = [list_queue, get_job, cancel_job]
