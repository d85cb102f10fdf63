"""What a reconnecting client missed: every WebSocket and SSE event carries `seq`; a client that comes back with
the last number it saw (`since`) gets, in order:

- the events after it from the window, an in-memory record of the latest WINDOW_EVENTS published events
  (previews and the `server_status` heartbeat excluded: previews are large and stale at once, and a fresh status
  is sent on every connect);
- when `since` is older than the window: one `job_status_changed` per job that changed (or was added) after it,
  with the job's state as the store has it now, then the window;
- a `gap` event when neither can say what it missed: `since` from before this server started (a restart), or
  older than the TRACKED_JOBS jobs whose latest change is remembered, or ahead of the latest event.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from core.events.bus import Event, EventBus
from core.events.types import EventData, EventGap, JobAdded, JobPreview, JobStatusChanged, ServerStatus
from core.jobs.schemas import Job, JobStatus

WINDOW_EVENTS = 2000
TRACKED_JOBS = 10_000
NOT_KEPT: frozenset[type[EventData]] = frozenset({JobPreview, ServerStatus})

JobReader = Callable[[str], Awaitable[Job | None]]


class EventLog:
    def __init__(
        self, bus: EventBus, read_job: JobReader, window: int = WINDOW_EVENTS, tracked_jobs: int = TRACKED_JOBS
    ) -> None:
        self.bus, self.read_job, self.tracked_jobs = bus, read_job, tracked_jobs
        self.window: deque[Event] = deque(maxlen=window)
        # job id -> (seq, previous status) of its latest status change or its addition, oldest change first
        self._changed: OrderedDict[str, tuple[int, JobStatus]] = OrderedDict()
        self._forgotten_up_to = bus.first_seq - 1  # changes up to this number are no longer remembered
        bus.subscribe(self._record)

    def _record(self, event: Event) -> None:
        data = event.data
        if type(data) in NOT_KEPT:
            return
        self.window.append(event)
        if isinstance(data, JobStatusChanged | JobAdded):
            previous = data.previous_status if isinstance(data, JobStatusChanged) else "pending"
            self._changed.pop(data.job_id, None)
            self._changed[data.job_id] = (event.seq, previous)
            if len(self._changed) > self.tracked_jobs:
                _, (seq, _) = self._changed.popitem(last=False)
                self._forgotten_up_to = seq

    def _gap(self, since: int, reason: str) -> list[Event]:
        oldest = max(self._forgotten_up_to, self.bus.first_seq - 1)
        return [self.bus.current(EventGap(since, oldest, self.bus.last_seq, reason))]

    async def missed(self, since: int, job_id: str | None = None) -> list[Event]:
        """What a client that saw up to `since` missed (for `job_id` alone when given). Everything in the window
        and which jobs to read is decided before the first await, so a subscription opened just before this call
        receives exactly the events that follow."""
        last = self.bus.last_seq
        if since > last:
            return self._gap(since, f"since={since} is ahead of this server's latest event ({last}): it restarted")
        if since < self.bus.first_seq - 1:
            return self._gap(
                since, f"since={since} is from before this server started (its first event is {self.bus.first_seq})"
            )
        if since < self._forgotten_up_to:
            return self._gap(
                since, f"since={since} is older than the oldest change remembered ({self._forgotten_up_to})"
            )

        def wanted(key: str | None) -> bool:
            return job_id is None or key == job_id

        window_start = self.window[0].seq if self.window else last + 1
        replay = [event for event in self.window if event.seq > since and wanted(event.data.job_key)]
        if since >= window_start - 1:
            return replay
        beyond = [
            (job, seq, previous)
            for job, (seq, previous) in self._changed.items()
            if since < seq < window_start and wanted(job)
        ]
        statuses = []
        for job, seq, previous in beyond:
            if (found := await self.read_job(job)) is not None:
                data = JobStatusChanged(job, found.status, previous, list(found.outputs), found.worker)
                statuses.append(Event(data.name, found.completed_at or found.started_at or found.created_at, data, seq))
        return statuses + replay
