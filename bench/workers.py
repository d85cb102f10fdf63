"""Two CPU workers (one thread each) versus one worker (one thread) on the same 20 tiny jobs, through the API:
submit them all, wait for the last to complete (the model load not counted). On a machine with two free cores two
workers should finish them at least 1.7x faster; a busy machine shows less.

    python -m bench --only workers [--jobs 20] [--size 64] [--steps 2]
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.support import ServerProcess

TERMINAL = ("completed", "failed", "cancelled")


def worker_config(count: int) -> str:
    return "".join(f'[[workers]]\nname = "w{i}"\nthreads = 1\n\n' for i in range(count))


def batch_seconds(
    models: Path, work: Path, load: dict[str, str], workers: int, bodies: list[dict[str, object]]
) -> float:
    config = work / f"workers-{workers}.toml"
    config.write_text(worker_config(workers))
    server = ServerProcess(
        models, work / f"output-workers-{workers}", work / f"workers-{workers}.log", "--config", str(config)
    ).start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            http.put("/preview/settings", json={"enabled": False}).raise_for_status()
            http.post("/models/load", json=load).raise_for_status()
            started = time.perf_counter()
            ids = [http.post("/txt2img", json=body).json()["job_id"] for body in bodies]
            for job_id in ids:
                while (job := http.get(f"/queue/{job_id}").json())["status"] not in TERMINAL:
                    time.sleep(0.05)
                assert job["status"] == "completed", job
            return time.perf_counter() - started
    finally:
        server.stop()


def run(models: Path, work: Path, load: dict[str, str], jobs: int = 20, size: int = 64, steps: int = 2) -> None:
    bodies: list[dict[str, object]] = [
        {"prompt": "a cat", "width": size, "height": size, "steps": steps, "seed": seed, "preview": False}
        for seed in range(jobs)
    ]
    one = batch_seconds(models, work, load, 1, bodies)
    two = batch_seconds(models, work, load, 2, bodies)
    print(f"{jobs} tiny jobs ({size}x{size}, {steps} steps), one thread per worker:")
    print(f"  one worker:                              {one:7.2f} s")
    print(f"  two workers sharing the queue:           {two:7.2f} s")
    print(f"  speed ratio two / one:                   {one / two:7.2f}x  (target >= 1.7x with 2 free cores)")
