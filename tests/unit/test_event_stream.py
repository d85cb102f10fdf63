from __future__ import annotations

import anyio
import pytest

from core.events.bus import Event, EventBus, stamp
from core.events.stream import EventHub, Subscription
from core.events.types import JobAdded, JobPreview, JobProgress, JobStatusChanged
from core.jobs.schemas import JobStatus


def status(state: JobStatus, job_id: str = "j1") -> Event:
    return stamp(JobStatusChanged(job_id, state, "pending"))


def progress(step: int, job_id: str = "j1") -> Event:
    return stamp(JobProgress(job_id, step, 10, 0, 1, step * 10.0))


def added(job_id: str) -> Event:
    return stamp(JobAdded(job_id, "txt2img", 1))


def preview(job_id: str) -> Event:
    return stamp(JobPreview(job_id, 1, 1, 8, 8, False, "data:image/jpeg;base64,", "proj"))


async def test_progress_is_coalesced_in_place_and_status_kept_in_order() -> None:
    sub = Subscription()
    sub.offer(status("processing"))
    for step in range(1, 6):
        sub.offer(progress(step))
    sub.offer(status("completed"))
    got = await sub.next_events()
    described = [(e.event, e.data.step if isinstance(e.data, JobProgress) else e.data.status) for e in got]  # type: ignore[attr-defined]
    assert described == [("job_status_changed", "processing"), ("job_progress", 5), ("job_status_changed", "completed")]


async def test_previews_are_dropped_first_and_a_stuck_client_overflows() -> None:
    sub = Subscription(max_pending=4)
    for index in range(3):
        sub.offer(preview(f"j{index}"))
    for index in range(2):
        sub.offer(added(f"k{index}"))
    pending = await sub.next_events()
    assert [e.event for e in pending] == ["job_added", "job_added"] and sub.dropped_previews == 3
    for index in range(5):
        sub.offer(added(f"m{index}"))
    assert sub.overflowed  # never drops a must-deliver event: the client is cut off instead


async def test_job_filter_and_hub_watching() -> None:
    bus = EventBus()
    hub = EventHub(bus)
    only = hub.open("wanted")
    assert hub.watching("wanted") and not hub.watching("other")
    bus.publish(JobProgress("other", 1, 10, 0, 1, 10.0))
    bus.publish(JobProgress("wanted", 2, 10, 0, 1, 20.0))
    assert [e.data.job_key for e in await only.next_events()] == ["wanted"]
    everything = hub.open()
    assert hub.watching("other")
    hub.close(everything)
    hub.close(only)
    assert not hub.watching("wanted")


async def test_next_events_waits_until_something_arrives() -> None:
    sub = Subscription()
    received: list[Event] = []

    async def reader() -> None:
        received.extend(await sub.next_events())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(reader)
        await anyio.sleep(0.05)
        assert received == []
        sub.offer(added("j1"))
    assert [e.event for e in received] == ["job_added"]


@pytest.mark.parametrize("size", [(300, 200), (64, 640)])
def test_render_bounds_the_preview(size: tuple[int, int]) -> None:
    import io

    from PIL import Image

    from core.generation.previews import render

    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format="PNG")
    rendered = render(buffer.getvalue(), 64, 80)
    assert rendered is not None and max(rendered.width, rendered.height) == 64
    assert Image.open(io.BytesIO(rendered.jpeg)).format == "JPEG"
    assert render(buffer.getvalue()[: len(buffer.getvalue()) // 2], 64, 80) is None  # half-written file
