"""Progress latency: from sd-server printing a sampling step to a WebSocket client receiving it."""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

from tests.support import ServerProcess

BAR = re.compile(r"\|[=> ]{50}\| (\d+)/(\d+) - [0-9.]+(?:it/s|s/it)")


def measure(models: Path, work: Path, sd_server: str, load: dict, jobs: int = 5, steps: int = 8) -> list[float]:
    tee_log = work / "tee.jsonl"
    here = Path(__file__).resolve().parent
    # Measured on sd-server's progress bars (a timestamping pass-through wraps it), so without the worker.
    server = ServerProcess(
        models,
        work / "latency-output",
        work / "latency.log",
        "--sd-worker",
        "none",
        "--sd-server",
        str(here / "tee_launcher.sh"),
        env={"BENCH_TEE_LOG": str(tee_log), "BENCH_TEE_REAL": sd_server, "BENCH_PYTHON": sys.executable},
    ).start()
    received: dict[tuple[str, int], float] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http, connect(f"ws://127.0.0.1:{server.ws_port}") as ws:
            http.put("/preview/settings", json={"enabled": False}).raise_for_status()
            http.post("/models/load", json=load).raise_for_status()
            for seed in range(jobs):
                job_id = http.post(
                    "/txt2img",
                    json={
                        "prompt": "a cat",
                        "width": 64,
                        "height": 64,
                        "steps": steps,
                        "seed": seed,
                        "sampler": "euler",
                        "cfg_scale": 1.0,
                    },
                ).json()["job_id"]
                while True:
                    message = json.loads(ws.recv(timeout=60))
                    now = time.time()
                    data = message["data"]
                    if message["event"] == "job_progress" and data["job_id"] == job_id:
                        received[(job_id, data["step"])] = now
                    if (
                        message["event"] == "job_status_changed"
                        and data["job_id"] == job_id
                        and data["status"] == "completed"
                    ):
                        break
    finally:
        server.stop()
    # Chunks in order; each job's sampling bars are steps 1..N, in the order the jobs ran.
    written: list[tuple[int, float]] = []
    for line in tee_log.read_text().splitlines():
        record = json.loads(line)
        for match in BAR.finditer(record["text"]):
            if int(match[2]) == steps:
                written.append((int(match[1]), record["t"]))
    job_ids = list(dict.fromkeys(job for job, _ in received))
    latencies = []
    for index, job_id in enumerate(job_ids):
        for step, written_at in written[index * steps : (index + 1) * steps]:
            if (job_id, step) in received:
                latencies.append(received[(job_id, step)] - written_at)
    return latencies


def report(latencies: list[float]) -> str:
    ms = sorted(1000 * value for value in latencies)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return (
        f"progress latency binary -> WebSocket client: median {statistics.median(ms):.1f} ms, "
        f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms over {len(ms)} steps"
    )
