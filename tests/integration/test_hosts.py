"""Many hosts, one queue (issue 21): a real PostgreSQL server, one API process (`serve --no-workers`) and two worker
processes (`sdcpp-restapi worker`, one CPU worker of one thread each) sharing an output folder, on the real resident
worker and the tiny models. Jobs submitted to the API run on both hosts and the WebSocket sees their progress and
results; a host without a model's file never takes its jobs; cancel reaches a job running on a worker host; a
worker host SIGKILLed mid-job loses nothing: its job is re-queued once and completed by the other host; an API host
killed and restarted applies the outcomes written meanwhile. Speed: bench (`just bench --only hosts`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from tests.conftest import TINY_LOAD
from tests.postgres import PostgresServer
from tests.support import REPO, ServerProcess, linked_models_dir, wait_for_job, wait_until

pytestmark = pytest.mark.integration
ONLY_A = "flux2_tiny_a.safetensors"  # the tiny DiT under a name only host A has
LATE = "flux2_tiny_late.safetensors"  # added to host B's folder while it runs
HEARTBEAT_S = "2"
CONFIG = f"""
[[workers]]
name = "w"
threads = 1

[models."{ONLY_A}"]
llm = "{TINY_LOAD["llm"]}"
taesd = "{TINY_LOAD["taesd"]}"

[models."{LATE}"]
llm = "{TINY_LOAD["llm"]}"
taesd = "{TINY_LOAD["taesd"]}"
"""
KEY_A, KEY_B = "key-a-0123456789", "key-b-0123456789"
QUICK = {"width": 64, "height": 64, "steps": 4, "preview": False}
SLOW = {"width": 128, "height": 128, "steps": 60, "preview": False}


class Host:
    """`sdcpp-restapi worker` in a process of its own."""

    def __init__(self, name: str, models: Path, output: Path, work: Path, env: dict[str, str]) -> None:
        self.name, self.log_path = name, work / f"{name}.log"
        self.argv = [
            sys.executable,
            "-m",
            "litestar_app",
            "worker",
            "--config",
            str(work / "config.toml"),
            "--host-name",
            name,
            "--heartbeat-s",
            HEARTBEAT_S,
            "--state-dir",
            str(work / f"state-{name}"),
            "--models-dir",
            str(models),
            "--output-dir",
            str(output),
        ]
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Host:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env
        )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)


class Cluster:
    def __init__(self, api: ServerProcess, hosts: dict[str, Host], http: httpx.Client) -> None:
        self.api, self.hosts, self.http = api, hosts, http

    def workers(self) -> dict[str, dict[str, Any]]:
        return {worker["name"]: worker for worker in self.http.get("/workers").json()}

    def submit(self, prompt: str, **body: object) -> str:
        response = self.http.post("/txt2img", json={"prompt": prompt, **body})
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])


@pytest.fixture(scope="module")
def cluster(
    tiny_models_dir: Path, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    postgres_url = postgres.new_database()
    work = tmp_path_factory.mktemp("hosts")
    (work / "config.toml").write_text(CONFIG)
    output = work / "output"
    models_a = linked_models_dir(tiny_models_dir, work / "models-a")
    os.link(models_a / "diffusion_models" / TINY_LOAD["model_name"], models_a / "diffusion_models" / ONLY_A)
    models_b = linked_models_dir(tiny_models_dir, work / "models-b")
    models_api = linked_models_dir(models_a, work / "models-api")  # the API host checks names against its files
    os.link(models_a / "diffusion_models" / TINY_LOAD["model_name"], models_api / "diffusion_models" / LATE)
    env = {**os.environ, "SDCPP_RESTAPI_STORE_URL": postgres_url}
    api = ServerProcess(
        models_api,
        output,
        work / "api.log",
        "--config",
        str(work / "config.toml"),
        "--no-workers",
        "--heartbeat-s",
        HEARTBEAT_S,
        env={"SDCPP_RESTAPI_STORE_URL": postgres_url, "SDCPP_RESTAPI_API_KEYS": f"{KEY_A},{KEY_B}"},
    )
    hosts = {
        "a": Host("a", models_a, output, work, env).start(),
        "b": Host("b", models_b, output, work, env).start(),
    }
    try:
        api.start()
        with httpx.Client(base_url=api.url, timeout=120, headers={"Authorization": f"Bearer {KEY_A}"}) as http:
            cluster = Cluster(api, hosts, http)
            wait_until(lambda: set(cluster.workers()) == {"a/w", "b/w"}, timeout=120)
            yield cluster
    finally:
        api.stop()
        for host in hosts.values():
            host.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def loaded(cluster: Cluster) -> Cluster:
    cluster.http.post("/models/load", json=TINY_LOAD).raise_for_status()
    # every worker host loads it on its workers
    wait_until(
        lambda: all([m["name"] for m in w["models"]] == [TINY_LOAD["model_name"]] for w in cluster.workers().values()),
        timeout=120,
    )
    return cluster


def test_jobs_run_on_both_worker_hosts_and_the_websocket_sees_them(loaded: Cluster) -> None:
    assert {w["state"] for w in loaded.workers().values()} == {"idle"}
    with connect(f"ws://127.0.0.1:{loaded.api.ws_port}/?token={KEY_A}") as ws:
        jobs = [loaded.submit(f"job {i}", **SLOW) for i in range(2)] + [loaded.submit("quick", **QUICK)]
        progress: set[str] = set()
        ended: dict[str, dict[str, Any]] = {}
        while len(ended) < len(jobs):
            message = json.loads(ws.recv(timeout=120))
            data = message["data"]
            if message["event"] == "job_progress" and data["job_id"] in jobs:
                progress.add(data["job_id"])
                assert data["worker"] in ("a/w", "b/w")
            if message["event"] == "job_status_changed" and data["status"] in ("completed", "failed", "cancelled"):
                ended[data["job_id"]] = data
    assert progress == set(jobs)
    assert {ended[job_id]["worker"] for job_id in jobs} == {"a/w", "b/w"}  # both hosts took jobs
    for job_id in jobs:
        job = wait_for_job(loaded.http, job_id)
        assert job["status"] == "completed", job.get("error")
        assert job["worker"] == ended[job_id]["worker"] and job["outputs"] == ended[job_id]["outputs"]
        assert job["progress"]["percentage"] == 100.0
        with Image.open(loaded.api.output_dir / job["outputs"][0]) as image:  # written by the worker host
            image.load()
        image_url = loaded.http.get(f"/output/{job['outputs'][0]}")  # served by the API host
        assert image_url.status_code == 200 and image_url.content[:4] == b"\x89PNG"
    health = loaded.http.get("/health").json()
    assert health["model_name"] == TINY_LOAD["model_name"]
    assert {w["name"] for w in health["workers"]} == {"a/w", "b/w"}


def test_a_host_without_the_model_file_never_takes_its_jobs(loaded: Cluster) -> None:
    jobs = [loaded.submit(f"only a {i}", model=ONLY_A, **QUICK) for i in range(3)]
    for job_id in jobs:
        job = wait_for_job(loaded.http, job_id, timeout=300)
        assert job["status"] == "completed", job.get("error")
        assert job["worker"] == "a/w"


def test_a_model_file_added_to_a_host_is_taken_up_without_a_restart(loaded: Cluster) -> None:
    models_b = loaded.api.output_dir.parent / "models-b" / "diffusion_models"
    os.link(models_b / TINY_LOAD["model_name"], models_b / LATE)
    log = loaded.hosts["b"].log_path
    wait_until(lambda: "its model files changed" in log.read_text(), timeout=60)
    jobs = [loaded.submit(f"late {i}", model=LATE, **QUICK) for i in range(2)]
    for job_id in jobs:
        job = wait_for_job(loaded.http, job_id, timeout=300)
        assert job["status"] == "completed", job.get("error")
        assert job["worker"] == "b/w"  # host A lacks the file


def test_cancel_reaches_a_job_running_on_a_worker_host(loaded: Cluster) -> None:
    doomed = loaded.submit("doomed", **SLOW)
    running = wait_until(lambda: (job := loaded.http.get(f"/queue/{doomed}").json())["status"] == "processing" and job)
    assert loaded.http.delete(f"/queue/{doomed}").status_code == 200
    cancelled = wait_for_job(loaded.http, doomed, timeout=120)
    assert cancelled["status"] == "cancelled", cancelled
    # its worker is free again and runs the next job on the same host
    host = running["worker"]
    wait_until(lambda: loaded.workers()[host]["state"] == "idle", timeout=60)
    pending = [loaded.submit(f"after cancel {i}", **QUICK) for i in range(2)]
    assert [wait_for_job(loaded.http, job_id)["status"] for job_id in pending] == ["completed", "completed"]


def test_a_pending_job_cancelled_never_runs(loaded: Cluster) -> None:
    busy = [loaded.submit(f"busy {i}", **SLOW) for i in range(2)]
    waiting = loaded.submit("waiting", **QUICK)
    wait_until(lambda: all(loaded.http.get(f"/queue/{j}").json()["status"] == "processing" for j in busy), timeout=60)
    assert loaded.http.get(f"/queue/{waiting}").json()["status"] == "pending"
    assert loaded.http.delete(f"/queue/{waiting}").status_code == 200
    assert loaded.http.get(f"/queue/{waiting}").json()["status"] == "cancelled"
    for job_id in busy:
        assert wait_for_job(loaded.http, job_id, timeout=300)["status"] == "completed"
    time.sleep(1)
    assert loaded.http.get(f"/queue/{waiting}").json()["status"] == "cancelled"
    assert not (loaded.api.output_dir / waiting / "image_0.png").exists()


def started(cluster: Cluster, job_id: str) -> str:
    job = wait_for_job(cluster.http, job_id, timeout=300)
    assert job["status"] == "completed", job.get("error")
    return str(job["started_at"])


def test_priority_and_fairness_between_keys_across_hosts(loaded: Cluster) -> None:
    """Both hosts busy; key A queues three jobs, then key B one, then key A one of priority 5: the priority job
    goes first, and key B's job does not wait for all of key A's."""
    busy = [loaded.submit(f"busy {i}", **SLOW) for i in range(2)]
    wait_until(lambda: all(loaded.http.get(f"/queue/{j}").json()["status"] == "processing" for j in busy), timeout=60)
    from_a = [loaded.submit(f"a {i}", **QUICK) for i in range(3)]
    with httpx.Client(base_url=loaded.api.url, timeout=60, headers={"Authorization": f"Bearer {KEY_B}"}) as other:
        response = other.post("/txt2img", json={"prompt": "b", **QUICK})
        assert response.status_code == 202, response.text
        from_b = response.json()["job_id"]
    urgent = loaded.submit("urgent", priority=5, **QUICK)
    times = {job_id: started(loaded, job_id) for job_id in [*from_a, from_b, urgent]}
    assert times[urgent] < min(times[job_id] for job_id in [*from_a, from_b])  # priority first
    assert times[from_b] < times[from_a[1]]  # B's one job right after A's first, not after all of A's
    for job_id in busy:
        assert wait_for_job(loaded.http, job_id, timeout=300)["status"] == "completed"


def test_an_api_host_killed_and_restarted_loses_nothing(loaded: Cluster) -> None:
    """SIGKILL of the API host while its jobs run on the worker hosts: the outcomes written meanwhile are applied
    when it starts again."""
    jobs = [loaded.submit(f"orphan {i}", **QUICK) for i in range(3)]
    loaded.api.kill()
    outputs = loaded.api.output_dir
    wait_until(lambda: all((outputs / job_id / "image_0.png").exists() for job_id in jobs), timeout=300)
    loaded.api.start()
    for job_id in jobs:
        job = wait_for_job(loaded.http, job_id, timeout=120)
        assert job["status"] == "completed", job.get("error")
        assert job["outputs"] == [f"{job_id}/image_0.png"] and job["worker"] in ("a/w", "b/w")
    again = wait_for_job(loaded.http, loaded.submit("after restart", **QUICK))
    assert again["status"] == "completed", again.get("error")


def test_worker_hosts_cut_off_from_the_database_stop_and_resume(loaded: Cluster, postgres: PostgresServer) -> None:
    """PostgreSQL stopped: the worker hosts say they take no jobs and show as offline, a submit answers 503 with
    Retry-After (nothing is acknowledged that the store does not hold); once the database is back a job runs."""
    postgres.stop()
    try:
        for host in loaded.hosts.values():
            wait_until(lambda host=host: "cut off from the shared database" in host.log_path.read_text(), timeout=60)
        wait_until(lambda: {w["state"] for w in loaded.workers().values()} == {"offline"}, timeout=60)
        refused = loaded.http.post("/txt2img", json={"prompt": "while the database is away", **QUICK})
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) > 0 and "unreachable" in refused.json()["error"]
    finally:
        postgres.start()
    waiting = wait_until(
        lambda: (
            (answer := loaded.http.post("/txt2img", json={"prompt": "the database is back", **QUICK})).status_code
            == 202
            and answer.json()["job_id"]
        ),
        timeout=60,
    )
    job = wait_for_job(loaded.http, waiting, timeout=180)
    assert job["status"] == "completed", job.get("error")
    wait_until(lambda: {w["state"] for w in loaded.workers().values()} == {"idle"}, timeout=60)


def test_a_killed_worker_host_loses_nothing(loaded: Cluster) -> None:
    """SIGKILL of the host running a job: within the heartbeat time its job goes back to the queue and the other
    host completes it, once."""
    with connect(f"ws://127.0.0.1:{loaded.api.ws_port}/?token={KEY_A}") as ws:
        doomed = loaded.submit("survives its host", **SLOW)
        running = wait_until(
            lambda: (job := loaded.http.get(f"/queue/{doomed}").json())["status"] == "processing" and job, timeout=60
        )
        victim = running["worker"].split("/")[0]
        loaded.hosts[victim].kill()
        done = wait_for_job(loaded.http, doomed, timeout=300)
        statuses = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                message = json.loads(ws.recv(timeout=0.5))
            except TimeoutError:
                continue
            if message["event"] == "job_status_changed" and message["data"]["job_id"] == doomed:
                statuses.append(message["data"]["status"])
    assert done["status"] == "completed", done.get("error")
    assert done["worker"] != running["worker"] and done["worker"].split("/")[0] != victim
    assert statuses.count("completed") <= 1
    with Image.open(loaded.api.output_dir / done["outputs"][0]) as image:
        image.load()
    assert loaded.workers()[f"{victim}/w"]["state"] == "offline"


def test_serve_with_a_postgresql_store_runs_its_own_workers_as_a_worker_host(
    tiny_models_dir: Path, postgres_url: str, tmp_path: Path
) -> None:
    """`serve` without --no-workers: its [[workers]] take the jobs as a worker host (a child process), and a job's
    previews reach the WebSocket through the previews table."""
    (tmp_path / "config.toml").write_text('[[workers]]\nname = "w"\nthreads = 1\n')
    api = ServerProcess(
        tiny_models_dir,
        tmp_path / "output",
        tmp_path / "api.log",
        "--config",
        str(tmp_path / "config.toml"),
        "--host-name",
        "solo",
        "--state-dir",
        str(tmp_path / "state"),
        env={"SDCPP_RESTAPI_STORE_URL": postgres_url},
    ).start()
    try:
        with httpx.Client(base_url=api.url, timeout=120) as http:
            wait_until(lambda: [w["name"] for w in http.get("/workers").json()] == ["solo/w"], timeout=120)
            http.post("/models/load", json=TINY_LOAD).raise_for_status()
            with connect(f"ws://127.0.0.1:{api.ws_port}") as ws:
                response = http.post("/txt2img", json={"prompt": "previews", **SLOW, "steps": 8, "preview": True})
                job_id = response.json()["job_id"]
                previews = 0
                while True:
                    message = json.loads(ws.recv(timeout=120))
                    if message["event"] == "job_preview" and message["data"]["job_id"] == job_id:
                        previews += 1
                        assert message["data"]["image"].startswith("data:image/")
                    if message["event"] == "job_status_changed" and message["data"]["status"] == "completed":
                        break
            assert previews > 0
            job = wait_for_job(http, job_id)
            assert job["status"] == "completed" and job["worker"] == "solo/w"
    finally:
        api.stop()
    # the worker host child went with the server
    wait_until(lambda: str(tmp_path / "state") not in _process_lines(), timeout=30)


def _process_lines() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
