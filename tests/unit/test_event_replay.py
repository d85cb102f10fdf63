"""What a reconnecting client gets (core/events/replay.py): the window's events after its `since`, the store's status
of jobs that changed beyond the window, or a gap event."""

from __future__ import annotations

from core.events.bus import Event, EventBus
from core.events.replay import EventLog
from core.events.stream import EventHub
from core.events.types import EventGap, JobAdded, JobProgress, JobStatusChanged, ServerStatus
from core.jobs.schemas import Job, JobStatus, Progress

FIRST = 1_000


def job(job_id: str, status: JobStatus) -> Job:
    return Job(job_id, "txt2img", status, Progress(), "2026-01-01T00:00:00.000Z", outputs=[f"{job_id}/image_0.png"])


def made(window: int = 5, tracked: int = 100) -> tuple[EventBus, EventLog, dict[str, Job]]:
    bus, jobs = EventBus(first_seq=FIRST), dict[str, Job]()

    async def read(job_id: str) -> Job | None:
        return jobs.get(job_id)

    return bus, EventLog(bus, read, window, tracked), jobs


def described(events: list[Event]) -> list[tuple[int, str, str | None]]:
    return [(e.seq, e.event, getattr(e.data, "status", None)) for e in events]


def run_job(bus: EventBus, job_id: str) -> None:
    bus.publish(JobAdded(job_id, "txt2img", 1))
    bus.publish(JobStatusChanged(job_id, "processing", "pending"))
    bus.publish(JobProgress(job_id, 1, 2, 1, 1, 50.0))
    bus.publish(JobStatusChanged(job_id, "completed", "processing"))


async def test_events_after_since_come_from_the_window_in_order() -> None:
    bus, log, _ = made()
    run_job(bus, "a")
    bus.publish(ServerStatus(0, 0, 1, 0, 1, False, None, False, False, 1.0))  # numbered, never kept
    assert bus.last_seq == FIRST + 4
    assert described(await log.missed(FIRST + 1)) == [
        (FIRST + 2, "job_progress", None),
        (FIRST + 3, "job_status_changed", "completed"),
    ]
    assert await log.missed(FIRST + 4) == []  # up to date
    assert described(await log.missed(FIRST - 1, "a"))[0] == (FIRST, "job_added", None)  # from the very first


async def test_beyond_the_window_each_changed_job_comes_from_the_store_then_the_window() -> None:
    bus, log, jobs = made(window=5)
    run_job(bus, "a")  # FIRST .. FIRST+3
    run_job(bus, "b")  # FIRST+4 .. FIRST+7
    run_job(bus, "c")  # FIRST+8 .. FIRST+11: the window holds FIRST+7 ..
    jobs.update(a=job("a", "completed"), b=job("b", "completed"), c=job("c", "completed"))
    got = await log.missed(FIRST + 1)
    assert described(got) == [
        (FIRST + 3, "job_status_changed", "completed"),  # a: its last change, as the store has it
        *[(seq, e, s) for seq, e, s in described(list(log.window))],
    ]
    assert isinstance(got[0].data, JobStatusChanged) and got[0].data.outputs == ["a/image_0.png"]
    assert got[0].data.previous_status == "processing"
    # b changed last at FIRST+7, inside the window: exactly, not from the store.
    assert [e.data.job_id for e in got if isinstance(e.data, JobStatusChanged)] == ["a", "b", "c", "c"]
    # For one job only:
    assert described(await log.missed(FIRST + 1, "a")) == [(FIRST + 3, "job_status_changed", "completed")]


async def test_a_gap_when_since_is_from_before_the_start_ahead_or_forgotten() -> None:
    bus, log, _ = made(window=2, tracked=1)
    run_job(bus, "a")
    for since, reason in ((5, "from before this server started"), (FIRST + 99, "ahead of this server's latest")):
        (gap,) = await log.missed(since)
        assert isinstance(gap.data, EventGap) and reason in gap.data.reason
        assert gap.event == "gap" and gap.seq == bus.last_seq == gap.data.latest_seq
    run_job(bus, "b")  # only one job's change is remembered: a's is forgotten
    (gap,) = await log.missed(FIRST)
    assert isinstance(gap.data, EventGap) and "older than the oldest change remembered" in gap.data.reason


async def test_a_subscription_gets_the_missed_events_before_what_arrived_meanwhile() -> None:
    bus, log, _ = made()
    hub = EventHub(bus)
    run_job(bus, "a")
    subscription = hub.open()
    missed = log.missed(FIRST + 1)  # (run at the await below: the event published meanwhile is sent once)
    bus.publish(JobAdded("b", "txt2img", 1))
    subscription.prepend(await missed)
    assert [e.seq for e in await subscription.next_events()] == [FIRST + 2, FIRST + 3, FIRST + 4]
