"""Prometheus metrics of one service, served at /metrics (litestar_app/routes/metrics.py).

Each service owns its registry, never prometheus_client's global one, so several services in one process (tests,
an embedding program) do not clash. Nothing here blocks the event loop: updates are in-memory counter steps made
by the queue's finished-job hook, bus subscribers and the HTTP layer; the live state (queue depth, the loaded
model) is read from memory when scraped.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from core.events.bus import Event, EventBus
from core.events.types import JobProgress, JobStatusChanged, ModelLoaded, ModelLoadingProgress
from core.jobs.queue import LANES, JobQueue
from core.jobs.schemas import TERMINAL, Job, JobType
from core.models.manager import LOAD_STARTING, ModelManager

# The text format Prometheus scrapes (version 0.0.4: every Prometheus server and prometheus_client's parser read it).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
NAMESPACE = "sdcpp"
ACTIVE_STATUSES = ("pending", "processing")
# Jobs take from a second (a tiny model) to an hour (a long video); model loads from a second to ten minutes.
JOB_SECONDS_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LOAD_SECONDS_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# A sampling step takes from milliseconds (a tiny model on a GPU) to minutes (a large video model on a CPU).
STEP_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# The route label of a request no route matched (404s): its path would let a scanner grow the label set.
UNMATCHED_ROUTE = "unmatched"


class ServiceMetrics:
    def __init__(self, bus: EventBus, queue: JobQueue, models: ModelManager) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs_finished = Counter(
            "jobs_finished",
            "jobs that ended, by type and result (completed, failed, cancelled)",
            ["type", "result"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "job_duration_seconds",
            "time from a job's start to its end, for jobs that ran, by type and result",
            ["type", "result"],
            namespace=NAMESPACE,
            buckets=JOB_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.model_load = Histogram(
            "model_load_seconds",
            "time from a model load's start to the model being ready to generate",
            namespace=NAMESPACE,
            buckets=LOAD_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "step_duration_seconds",
            "time per sampling step (between two progress reports of one image, divided by the steps between them; "
            "an image's first step, which follows text encoding, is not counted), by worker and model",
            ["worker", "model"],
            namespace=NAMESPACE,
            buckets=STEP_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "http_requests",
            f"HTTP requests answered, by method, route template ('{UNMATCHED_ROUTE}': no route) and status",
            ["method", "route", "status"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        for job_type in get_args(JobType):  # every series present from the start: a rise is visible from zero
            for result in sorted(TERMINAL):
                self.jobs_finished.labels(job_type, result)
        self.registry.register(LiveState(queue, models))
        self._load_started: dict[str, float] = {}  # model name -> monotonic start of its load in progress
        self._last_step: dict[str, tuple[int, int, float]] = {}  # job id -> (image, step, monotonic time) reported
        self._models = models
        queue.watch_finished(self.job_finished)
        bus.subscribe(self._on_event)

    def job_finished(self, job: Job) -> None:
        self.jobs_finished.labels(job.type, job.status).inc()
        if job.started_at and job.completed_at:
            seconds = dt.datetime.fromisoformat(job.completed_at) - dt.datetime.fromisoformat(job.started_at)
            self.job_duration.labels(job.type, job.status).observe(max(seconds.total_seconds(), 0.0))

    def http_request(self, method: str, route: str | None, status: int) -> None:
        self.http_requests.labels(method, route or UNMATCHED_ROUTE, str(status)).inc()

    def _step(self, data: JobProgress) -> None:
        now = time.monotonic()
        before = self._last_step.get(data.job_id)
        self._last_step[data.job_id] = (data.current_image, data.step, now)
        if before is None or before[0] != data.current_image or data.step <= before[1]:
            return
        steps = data.step - before[1]
        worker = data.worker or ""
        model = next((w.model for w in self._models.pool.workers if w.name == worker), None) or ""
        histogram = self.step_duration.labels(worker, model)
        for _ in range(steps):
            histogram.observe((now - before[2]) / steps)

    def _on_event(self, event: Event) -> None:
        data = event.data
        if isinstance(data, JobProgress):
            self._step(data)
        elif isinstance(data, JobStatusChanged) and data.status in TERMINAL:
            self._last_step.pop(data.job_id, None)
        elif isinstance(data, ModelLoadingProgress) and data.model_name and data.message == LOAD_STARTING:
            self._load_started[data.model_name] = time.monotonic()
        elif isinstance(data, ModelLoaded) and (started := self._load_started.pop(data.model_name, None)) is not None:
            self.model_load.observe(time.monotonic() - started)

    def exposition(self) -> bytes:
        """The scrape's body, in CONTENT_TYPE."""
        return generate_latest(self.registry)


class LiveState(Collector):
    """What is true now, read at scrape time: the queue's depth and the loaded model."""

    def __init__(self, queue: JobQueue, models: ModelManager) -> None:
        self.queue, self.models = queue, models

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            f"{NAMESPACE}_queue_jobs", "jobs waiting or running, by status and lane", labels=["status", "lane"]
        )
        records = list(self.queue.active.values())
        for status in ACTIVE_STATUSES:
            for lane in LANES:
                count = sum(1 for r in records if r.job.status == status and r.spec is not None and r.spec.lane == lane)
                depth.add_metric([status, lane], count)
        yield depth
        loaded_model = GaugeMetricFamily(
            f"{NAMESPACE}_model_loaded",
            "1 with the loaded model's name, type and architecture; no sample while none is loaded",
            labels=["model_name", "model_type", "architecture"],
        )
        if (loaded := self.models.loaded) is not None:
            architecture = loaded.architecture.variant if loaded.architecture else ""
            loaded_model.add_metric([loaded.name, loaded.request.model_type, architecture], 1)
        yield loaded_model
        loading = GaugeMetricFamily(f"{NAMESPACE}_model_loading", "1 while a model load is in progress")
        loading.add_metric([], 1 if self.models.loading_name is not None else 0)
        yield loading
        workers = GaugeMetricFamily(
            f"{NAMESPACE}_worker_state",
            "1 for each worker's current state (idle, busy, loading, starting)",
            labels=["worker", "backend", "device", "state"],
        )
        for worker in self.models.pool.workers:
            spec = worker.spec
            workers.add_metric([spec.name, spec.backend, spec.device, worker.state], 1)
        yield workers
