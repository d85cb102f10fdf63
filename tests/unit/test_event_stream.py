from __future__ import annotations

import anyio
import pytest

from orchestrator.event_stream import EventHub, Subscription
from orchestrator.events import Event, EventBus


def event(name: str, job_id: str = "j1", **data: object) -> Event:
    return Event(name, "2024-01-01T00:00:00.000Z", {"job_id": job_id, **data})


async def test_progress_is_coalesced_in_place_and_status_kept_in_order() -> None:
    sub = Subscription()
    sub.offer(event("job_status_changed", status="processing"))
    for step in range(1, 6):
        sub.offer(event("job_progress", step=step))
    sub.offer(event("job_status_changed", status="completed"))
    got = await sub.next_events()
    assert [(e.event, e.data.get("step") or e.data.get("status")) for e in got] == [
        ("job_status_changed", "processing"), ("job_progress", 5), ("job_status_changed", "completed")]


async def test_previews_are_dropped_first_and_a_stuck_client_overflows() -> None:
    sub = Subscription(max_pending=4)
    for index in range(3):
        sub.offer(event("job_preview", job_id=f"j{index}"))
    for index in range(2):
        sub.offer(event("job_added", job_id=f"k{index}"))
    pending = await sub.next_events()
    assert [e.event for e in pending] == ["job_added", "job_added"] and sub.dropped_previews == 3
    for index in range(5):
        sub.offer(event("job_added", job_id=f"m{index}"))
    assert sub.overflowed  # never drops a must-deliver event: the client is cut off instead


async def test_job_filter_and_hub_watching() -> None:
    bus = EventBus()
    hub = EventHub(bus)
    only = hub.open("wanted")
    assert hub.watching("wanted") and not hub.watching("other")
    bus.publish("job_progress", {"job_id": "other", "step": 1})
    bus.publish("job_progress", {"job_id": "wanted", "step": 2})
    assert [e.data["job_id"] for e in await only.next_events()] == ["wanted"]
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
        sub.offer(event("job_added"))
    assert [e.event for e in received] == ["job_added"]


@pytest.mark.parametrize("size", [(300, 200), (64, 640)])
def test_render_bounds_the_preview(size: tuple[int, int]) -> None:
    import io

    from PIL import Image

    from orchestrator.previews import render

    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format="PNG")
    rendered = render(buffer.getvalue(), 64, 80)
    assert rendered is not None and max(rendered.width, rendered.height) == 64
    assert Image.open(io.BytesIO(rendered.jpeg)).format == "JPEG"
    assert render(buffer.getvalue()[: len(buffer.getvalue()) // 2], 64, 80) is None  # half-written file
