"""What /health and GET /workers say about each worker."""

from __future__ import annotations

from typing import Literal

import msgspec

# idle: takes jobs; busy: runs job_id; loading: a model load holds it; starting: its process restarts after a crash
# or a cancelled job; offline: on another host that stopped answering (with a PostgreSQL store)
WorkerState = Literal["idle", "busy", "loading", "starting", "offline"]


class WorkerInfo(msgspec.Struct):
    """A worker as /health and GET /workers show it."""

    name: str
    backend: str
    device: str
    state: WorkerState
    job_id: str | None
    models: list[str]  # the models its resident process holds
    threads: int | None  # None: sd.cpp's default
    memory_budget_mib: int | None  # the configured budget (None: not set)
    memory_used_mib: int | None  # the resident process's resident set size (None: no process)
    pid: int | None
    last_error: str | None
