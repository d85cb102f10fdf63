"""Compare the API with bare sd-cli and a bare sd-server on the same generation, in one run.

    python -m bench [--jobs N] [--size 64] [--steps 2]

1. one image: a job on an already running bare sd-server versus a job through this API on a loaded model
   (submit -> completed, as a client sees it). Both run side by side and their jobs alternate, so drift on a
   busy machine hits both alike; both clients poll at the same interval.
2. N jobs on a loaded model through the API (including the load) versus N bare sd-cli runs.
The request body sent to the bare sd-server is the one the API builds, so both do the same work.
3. Bookkeeping against history size (bench/store_scaling.py): 100, 10,000 and 100,000 finished jobs.
4. Previews on the resident worker (bench/worker_previews.py): none / proj / tae, and cancel-to-next-job.
5. Two CPU workers (one thread each) versus one worker on 20 tiny jobs (bench/workers.py): the speed ratio; the
   scheduler's own cost per job with 64 stand-in workers, 10,000 jobs, 10 API keys and 3 priorities
   (bench/scheduler.py).
6. Switching between two models resident on one worker against staying on one (bench/model_cache.py).
The API's own jobs run on the resident worker when the backend has it: part 1's ratio is worker / bare sd-server.

    python -m bench --only store     # just part 3
    python -m bench --only workers   # just part 5
    python -m bench --only scheduler # just the scheduler's cost
    python -m bench --only cache     # just part 6
    python -m bench --only pg-submit # submissions per second on the PostgreSQL store (bench/pg_submit.py)
    python -m bench --only hosts     # many hosts on PostgreSQL (bench/hosts.py; not in the default run)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TypedDict

import httpx
import msgspec
from websockets.sync.client import ClientConnection, connect

from bench import hosts, model_cache, pg_submit, scheduler, store_scaling, worker_previews, workers
from bench.progress_latency import measure, report
from core.generation.engine import generation_options
from core.generation.requests import Txt2ImgRequest
from core.generation.specs import Txt2ImgJob
from core.models.schemas import LoadOptions
from core.settings import load_settings
from fixtures.tiny_models import write_tiny_models
from runners.options import build_server_body
from runners.sdserver import free_loopback_port
from tests.support import ServerProcess


class RequestBody(TypedDict):
    """The /txt2img JSON body the bench sends, as a client would (the server fills in the rest)."""

    prompt: str
    width: int
    height: int
    steps: int
    seed: int
    sampler: str
    cfg_scale: float


# The same for both clients; much tighter polling steals CPU from the binary on a 2-core machine.
POLL_S = 0.01
LOAD = {
    "model_name": "flux2_tiny_dit.safetensors",
    "model_type": "diffusion",
    "llm": "qwen3_tiny_llm.safetensors",
    "taesd": "taef2_tiny.safetensors",
}


def model_flags(models: Path) -> list[str]:
    return [
        "--diffusion-model",
        str(models / "diffusion_models" / LOAD["model_name"]),
        "--llm",
        str(models / "llm" / LOAD["llm"]),
        "--taesd",
        str(models / "taesd" / LOAD["taesd"]),
    ]


def request(size: int, steps: int, seed: int) -> RequestBody:
    return RequestBody(prompt="a cat", width=size, height=size, steps=steps, seed=seed, sampler="euler", cfg_scale=1.0)


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def bare_cli(sd_cli: str, models: Path, out: Path, body: RequestBody) -> None:
    argv = [
        sd_cli,
        "-M",
        "img_gen",
        *model_flags(models),
        "-p",
        body["prompt"],
        "-W",
        str(body["width"]),
        "-H",
        str(body["height"]),
        "--steps",
        str(body["steps"]),
        "-s",
        str(body["seed"]),
        "--sampling-method",
        body["sampler"],
        "--cfg-scale",
        str(body["cfg_scale"]),
        "-o",
        str(out / "cli.png"),
    ]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def bare_server(sd_server: str, models: Path) -> Iterator[httpx.Client]:
    port = free_loopback_port()
    process = subprocess.Popen(
        [sd_server, *model_flags(models), "--listen-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if http.get("/sdcpp/v1/capabilities").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            yield http
    finally:
        process.terminate()
        process.wait()


def bare_server_job(http: httpx.Client, body: RequestBody) -> None:
    job = Txt2ImgJob(request=msgspec.convert(body, Txt2ImgRequest))
    native = build_server_body(generation_options(job, Path("/unused"), LoadOptions()))
    poll = http.post("/sdcpp/v1/img_gen", json=native).json()["poll_url"]
    while http.get(poll).json()["status"] != "completed":
        time.sleep(POLL_S)


def api_job(http: httpx.Client, ws: ClientConnection, body: RequestBody) -> None:
    """Submit, then wait for the job's completion event: how a client waits without polling (sd-server
    offers only polling, which costs it next to nothing; polling our Python server every 10 ms would take
    CPU from the binary on a 2-core machine)."""
    job_id = http.post("/txt2img", json=body).json()["job_id"]
    while True:
        message = json.loads(ws.recv(timeout=120))
        data = message["data"]
        if message["event"] == "job_status_changed" and data["job_id"] == job_id and data["status"] != "processing":
            assert data["status"] == "completed", http.get(f"/queue/{job_id}").json()
            return


def api_job_polled(http: httpx.Client, body: RequestBody) -> None:
    job_id = http.post("/txt2img", json=body).json()["job_id"]
    while (status := http.get(f"/queue/{job_id}").json()["status"]) not in ("completed", "failed"):
        time.sleep(POLL_S)
    assert status == "completed"


def health_during_job(http: httpx.Client, size: int) -> list[float]:
    """GET /health latencies while a longer job runs: the event loop must stay free."""
    job_id = http.post(
        "/txt2img",
        json={
            "prompt": "busy",
            "width": size * 4,
            "height": size * 4,
            "steps": 8,
            "sampler": "euler",
            "cfg_scale": 1.0,
        },
    ).json()["job_id"]
    latencies = []
    while http.get(f"/queue/{job_id}").json()["status"] in ("pending", "processing"):
        latencies.append(timed(lambda: http.get("/health").raise_for_status()))
        time.sleep(0.02)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--only",
        choices=["store", "worker", "workers", "scheduler", "cache", "pg-submit", "hosts"],
        help="run one part only",
    )
    args = parser.parse_args()
    if args.only == "scheduler":
        scheduler.run()
        return 0
    backend = load_settings().selected_backend()
    with tempfile.TemporaryDirectory(prefix="sdcpp-bench-") as tmp:
        work = Path(tmp)
        models = work / "models"
        write_tiny_models(models)
        if args.only == "store":
            store_scaling.run(models, work, LOAD)
            return 0
        if args.only == "pg-submit":
            pg_submit.run(models, work, LOAD)
            return 0
        if args.only == "worker":
            worker_previews.run(models, work, LOAD)
            return 0
        if args.only == "workers":
            workers.run(models, work, LOAD, 20, args.size, args.steps)
            return 0
        if args.only == "cache":
            model_cache.run(models, work, LOAD, args.jobs, args.size, args.steps)
            return 0
        if args.only == "hosts":
            hosts.run(models, work, LOAD, 20, args.size, args.steps)
            return 0
        print(
            f"work: {args.jobs} jobs of {args.size}x{args.size}, {args.steps} steps, tiny FLUX.2 klein set", flush=True
        )
        bodies = [request(args.size, args.steps, seed) for seed in range(args.jobs)]
        cli_times = [timed(partial(bare_cli, backend.sd_cli, models, work, body)) for body in bodies]
        api = ServerProcess(models, work / "output", work / "server.log").start()
        try:
            with (
                bare_server(backend.sd_server, models) as bare,
                httpx.Client(base_url=api.url, timeout=60) as http,
                connect(f"ws://127.0.0.1:{api.ws_port}") as ws,
            ):
                # Previews off: with a WebSocket client watching, every job would also render previews.
                http.put("/preview/settings", json={"enabled": False}).raise_for_status()
                load_s = timed(lambda: http.post("/models/load", json=LOAD).raise_for_status())
                bare_server_job(bare, bodies[0])  # warm both up once
                api_job(http, ws, bodies[0])
                server_times, api_times, polled_times = [], [], []
                for body in bodies:
                    server_times.append(timed(partial(bare_server_job, bare, body)))
                    api_times.append(timed(partial(api_job, http, ws, body)))
                    polled_times.append(timed(partial(api_job_polled, http, body)))
                health_times = health_during_job(http, args.size)
        finally:
            api.stop()
        latencies = measure(models, work, backend.sd_server, LOAD)
        store_scaling.run(models, work, LOAD)
        worker_previews.run(models, work, LOAD)
        workers.run(models, work, LOAD, 20, args.size, args.steps)
        model_cache.run(models, work, LOAD, args.jobs, args.size, args.steps)
        scheduler.run()
    cli, server, api_median = (statistics.median(t) for t in (cli_times, server_times, api_times))
    print(f"bare sd-cli run (load + generate):         {cli:7.3f} s  (median of {len(cli_times)})")
    print(f"bare sd-server job on a loaded model:      {server:7.3f} s")
    print(
        f"API job on a loaded model:                 {api_median:7.3f} s   overhead {1000 * (api_median - server):+.1f} ms"
    )
    polled = statistics.median(polled_times)
    print(
        f"API job, client polling every {POLL_S * 1000:.0f} ms:    {polled:7.3f} s   overhead {1000 * (polled - server):+.1f} ms"
        f" ({polled / server:.3f}x; the polling itself takes CPU from the binary)"
    )
    print(f"API model load (sd-server start):          {load_s:7.3f} s")
    print(f"ratio API job / bare sd-server job:        {api_median / server:7.3f}x  (target <= 1.05x)")
    print(f"ratio API job / bare sd-cli run:           {api_median / cli:7.3f}x")
    print(report(latencies))
    health_ms = sorted(1000 * t for t in health_times)
    print(
        f"GET /health while a job runs: median {statistics.median(health_ms):.1f} ms, "
        f"max {health_ms[-1]:.1f} ms over {len(health_ms)} requests"
    )
    total_api = load_s + sum(api_times)
    print(
        f"{args.jobs} jobs: API {total_api:.2f} s (incl. load) vs bare sd-cli {sum(cli_times):.2f} s "
        f"= {total_api / sum(cli_times):.3f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
