"""Many hosts, one queue (issue 21) on a private PostgreSQL server (Debian's package; tests/postgres.py): one API
process (`serve --no-workers`) and one or two worker processes (`sdcpp-restapi worker`, one CPU worker of one thread
each) on the tiny models, sharing an output folder.

1. submit -> started on an idle remote worker: the job's `started_at - created_at` as the API host records them
   (created at submit, started when the worker host's `started` notice reached it), median of sequential jobs;
2. event latency: from the worker host reading a progress step to the API host publishing it on its bus (the API
   host logs each at debug level), median;
3. the same 20 tiny jobs on one worker process and on two: the speed ratio.

    python -m bench --only hosts
"""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.postgres import PostgresServer, postgres_bindir
from tests.support import REPO, ServerProcess

TERMINAL = ("completed", "failed", "cancelled")
LATENCY = re.compile(r"hosts: event latency ([0-9.]+) ms")


def _moment(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _worker(name: str, models: Path, output: Path, work: Path, url: str) -> subprocess.Popen[bytes]:
    config = work / "hosts.toml"
    argv = [sys.executable, "-m", "litestar_app", "worker", "--config", str(config), "--host-name", name]
    argv += ["--state-dir", str(work / f"state-{name}"), "--models-dir", str(models), "--output-dir", str(output)]
    log = (work / f"{name}.log").open("ab")
    env = {**os.environ, "SDCPP_RESTAPI_STORE_URL": url}
    return subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait(http: httpx.Client, job_id: str) -> dict[str, object]:
    while (job := http.get(f"/queue/{job_id}").json())["status"] not in TERMINAL:
        time.sleep(0.02)
    assert job["status"] == "completed", job
    return dict(job)


def _workers_up(http: httpx.Client, count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        workers = http.get("/workers").json()
        if len(workers) == count and all(w["state"] == "idle" for w in workers):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{count} idle worker(s) not listed")


def run(models: Path, work: Path, load: dict[str, str], jobs: int = 20, size: int = 64, steps: int = 2) -> None:
    bindir = postgres_bindir()
    if bindir is None:
        print("hosts: skipped, PostgreSQL is not installed (Debian: apt-get install postgresql)")
        return
    postgres = PostgresServer(bindir)
    postgres.start()
    (work / "hosts.toml").write_text('[[workers]]\nname = "w"\nthreads = 1\n')
    body = {"prompt": "a cat", "width": size, "height": size, "steps": steps, "preview": False}
    bodies = [{**body, "seed": seed} for seed in range(jobs)]
    workers: list[subprocess.Popen[bytes]] = []
    ratio_times: dict[int, float] = {}
    try:
        for count in (1, 2):
            url = postgres.new_database()
            output = work / f"hosts-output-{count}"
            api = ServerProcess(
                models,
                output,
                work / f"hosts-api-{count}.log",
                "--no-workers",
                "--log-level",
                "debug",
                env={"SDCPP_RESTAPI_STORE_URL": url},
            ).start()
            workers = [_worker(f"h{i}", models, output, work, url) for i in range(count)]
            try:
                with httpx.Client(base_url=api.url, timeout=120) as http:
                    _workers_up(http, count)
                    http.put("/preview/settings", json={"enabled": False}).raise_for_status()
                    http.post("/models/load", json=load).raise_for_status()
                    _wait(http, http.post("/txt2img", json=bodies[0]).json()["job_id"])  # each host warm
                    _wait(http, http.post("/txt2img", json=bodies[1]).json()["job_id"])
                    if count == 1:
                        starts = []
                        for seed in range(10):
                            job = _wait(http, http.post("/txt2img", json={**body, "seed": seed}).json()["job_id"])
                            started = _moment(str(job["started_at"])) - _moment(str(job["created_at"]))
                            starts.append(started.total_seconds() * 1000)
                    began = time.perf_counter()
                    ids = [http.post("/txt2img", json=each).json()["job_id"] for each in bodies]
                    for job_id in ids:
                        _wait(http, job_id)
                    ratio_times[count] = time.perf_counter() - began
            finally:
                api.stop()
                for process in workers:
                    process.terminate()
                    process.wait(30)
        latencies = [float(m) for m in LATENCY.findall((work / "hosts-api-1.log").read_text())]
        latencies += [float(m) for m in LATENCY.findall((work / "hosts-api-2.log").read_text())]
    finally:
        postgres.remove()
    print(f"hosts: one API process, worker processes of one CPU worker (one thread) each, on {os.cpu_count()} cores")
    print(f"  submit -> started on an idle remote worker: median {statistics.median(starts):7.1f} ms  (target < 50)")
    print(
        f"  event latency worker host -> API bus:       median {statistics.median(latencies):7.1f} ms  "
        f"(target < 100; {len(latencies)} steps)"
    )
    print(
        f"  {jobs} tiny jobs ({size}x{size}, {steps} steps): one worker host {ratio_times[1]:6.2f} s, "
        f"two {ratio_times[2]:6.2f} s: {ratio_times[1] / ratio_times[2]:.2f}x  (target >= 1.7x with 2 free cores)"
    )
