"""Switching between two models resident on one worker (its resident model cache) against staying on one model,
through the API: one CPU worker, the tiny DiT under two names, jobs run one after another (submit -> completed), the
same jobs alternating between the two models or all on one. Target: switching adds under 0.1 s per job. The same
alternation on a worker without a budget (one model at a time: every switch reloads) shows what the cache saves.

    python -m bench --only cache [--jobs 10] [--size 64] [--steps 2]
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import httpx

from tests.support import ServerProcess

TERMINAL = ("completed", "failed", "cancelled")
SECOND = "flux2_tiny_b.safetensors"


def _config(load: dict[str, str], budget_mib: int) -> str:
    return (
        f'[[workers]]\nname = "w0"\nthreads = 1\nmemory_mib = {budget_mib}\n\n'
        f'[models."{SECOND}"]\nllm = "{load["llm"]}"\ntaesd = "{load["taesd"]}"\n'
    )


def _job_seconds(http: httpx.Client, body: dict[str, object]) -> float:
    started = time.perf_counter()
    job_id = http.post("/txt2img", json=body).json()["job_id"]
    while (job := http.get(f"/queue/{job_id}").json())["status"] not in TERMINAL:
        time.sleep(0.01)
    assert job["status"] == "completed", job
    return time.perf_counter() - started


def _series(
    models: Path, work: Path, load: dict[str, str], budget_mib: int, bodies: list[dict[str, object]]
) -> tuple[list[float], list[float], int]:
    """(seconds per job on one model, seconds per job alternating, loads during the alternation)."""
    name = f"cache-{budget_mib}"
    config = work / f"{name}.toml"
    config.write_text(_config(load, budget_mib))
    server = ServerProcess(models, work / f"output-{name}", work / f"{name}.log", "--config", str(config)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            http.put("/preview/settings", json={"enabled": False}).raise_for_status()
            http.post("/models/load", json=load).raise_for_status()
            _job_seconds(http, {**bodies[0], "model": SECOND})  # the second model resident (where it fits)
            _job_seconds(http, bodies[0])
            same, switching = [], []
            loads_before = http.get("/workers").json()[0]["loads"]
            for index, body in enumerate(bodies):  # interleaved, so drift on a busy machine hits both alike
                same.append(_job_seconds(http, body))
                same.append(_job_seconds(http, body))
                switching.append(
                    _job_seconds(http, {**body, "model": SECOND if index % 2 == 0 else load["model_name"]})
                )
                switching.append(
                    _job_seconds(http, {**body, "model": load["model_name"] if index % 2 == 0 else SECOND})
                )
            loads = http.get("/workers").json()[0]["loads"] - loads_before
            return same, switching, loads
    finally:
        server.stop()


def run(models: Path, work: Path, load: dict[str, str], jobs: int = 10, size: int = 64, steps: int = 2) -> None:
    second = models / "diffusion_models" / SECOND
    if not second.exists():
        os.link(models / "diffusion_models" / load["model_name"], second)
    bodies: list[dict[str, object]] = [
        {"prompt": "a cat", "width": size, "height": size, "steps": steps, "seed": seed, "preview": False}
        for seed in range(jobs)
    ]
    same, switching, loads = _series(models, work, load, 100, bodies)  # fits both tiny models (18 MiB each)
    _, reloading, reloads = _series(models, work, load, 0, bodies[: max(2, jobs // 2)])  # no budget: one at a time
    one, two, three = (statistics.median(times) for times in (same, switching, reloading))
    print(f"resident model cache, {2 * jobs} jobs each way ({size}x{size}, {steps} steps), one worker, one thread:")
    print(f"  job on one model:                        {one:7.3f} s (median)")
    print(f"  job switching between 2 resident models: {two:7.3f} s (median; {loads} loads)")
    print(f"  switching adds:                          {two - one:+7.3f} s per job  (target < 0.1 s)")
    print(
        f"  job switching with no cache (reloads):   {three:7.3f} s (median; {reloads} loads)  ratio {three / two:.2f}x"
    )
