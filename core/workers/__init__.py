"""N workers sharing one queue: each worker its own resident process on its backend and device; the pool hands
each queued job to an idle worker in arrival order (core/workers/pool.py)."""
