"""What /health and GET /workers say about each worker."""

from __future__ import annotations

from typing import Literal

import msgspec

from runners.device_facts import DeviceFacts

# idle: takes jobs; busy: runs job_id; loading: a model load holds it; starting: its process restarts after a crash
# or a cancelled job; offline: on another host that stopped answering (with a PostgreSQL store)
WorkerState = Literal["idle", "busy", "loading", "starting", "offline"]


class WorkerModel(msgspec.Struct):
    """A model resident on a worker."""

    name: str
    mib: int  # the estimate: its model files' sizes


class WorkerInfo(msgspec.Struct):
    """A worker as /health and GET /workers show it."""

    name: str
    backend: str
    device: str
    state: WorkerState
    job_id: str | None
    models: list[WorkerModel]  # the models its resident process holds, least recently used first
    threads: int | None  # None: sd.cpp's default
    memory_budget_mib: int | None  # the configured budget for resident models (None: not set: one model at a time)
    models_mib: int  # what the resident models take by the estimate (their files' sizes), against the budget
    loads: int  # model loads on this worker since the server started (switching between resident models: none)
    memory_used_mib: int | None  # the resident process's resident set size (None: no process)
    pid: int | None
    last_error: str | None
    # what its resident process printed: the devices ggml found (name, VRAM), the weights' RAM/VRAM (None: no process)
    device_facts: DeviceFacts | None = None
