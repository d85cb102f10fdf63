"""Two CPU workers (one thread each) sharing one queue, on the real resident worker and the tiny models: /workers and
/health list both, two jobs run at once and both decode, a killed worker fails only its own job while the other
finishes (and restarts), cancel of one job leaves the other running, a job naming a model goes to the worker that
holds it (no reload), an upscaler unloaded by one worker's job is still used by the other's. Speed: bench
(`just bench --only workers`)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from runners.paths import backend_dir
from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, linked_models_dir, running_server_with_config, wait_for_job, wait_until

pytestmark = pytest.mark.integration
SECOND = "flux2_tiny_b.safetensors"  # the tiny DiT under a second name: another model to the server
TWO_WORKERS = f"""
[[workers]]
name = "w1"
threads = 1

[[workers]]
name = "w2"
threads = 1

[models."{SECOND}"]
llm = "{TINY_LOAD["llm"]}"
taesd = "{TINY_LOAD["taesd"]}"
"""
CPU = backend_dir("cpu")
# w2 on another backend name whose table points at the CPU build: two backends on one queue, and a device handed to
# the backend's own variable (the CPU binary ignores CUDA_VISIBLE_DEVICES; /proc shows it reached the process)
MIXED = (
    TWO_WORKERS.replace('name = "w2"\n', 'name = "w2"\nbackend = "cuda"\ndevice = "0"\n')
    + f'\n[backends.cuda]\nfolder = "{CPU}"\n'  # a build's folder: its sd-cli, sd-server and sdcpp-worker
)
SLOW = {"width": 128, "height": 128, "steps": 60, "preview": False}


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("workers")
    models = linked_models_dir(tiny_models_dir, work / "models")
    os.link(models / "diffusion_models" / TINY_LOAD["model_name"], models / "diffusion_models" / SECOND)
    yield from running_server_with_config(models, work, MIXED)


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def loaded(http: httpx.Client) -> httpx.Client:
    http.post("/models/load", json=TINY_LOAD).raise_for_status()
    return http


def workers(http: httpx.Client) -> dict[str, dict[str, Any]]:
    """GET /workers by name, each worker's resident models as their names (least recently used first)."""
    listed = {worker["name"]: worker for worker in http.get("/workers").json()}
    for worker in listed.values():
        worker["models"] = [model["name"] for model in worker["models"]]
    return listed


def submit(http: httpx.Client, prompt: str, **body: object) -> str:
    response = http.post("/txt2img", json={"prompt": prompt, **SLOW, **body})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def both_processing(http: httpx.Client, first: str, second: str) -> dict[str, dict[str, Any]] | None:
    jobs = {job_id: http.get(f"/queue/{job_id}").json() for job_id in (first, second)}
    return jobs if all(job["status"] == "processing" for job in jobs.values()) else None


def test_workers_are_listed_before_and_after_a_load(http: httpx.Client) -> None:
    before = workers(http)
    assert set(before) == {"w1", "w2"}
    assert all(w["state"] == "idle" and w["models"] == [] and w["threads"] == 1 for w in before.values())
    assert before["w1"]["backend"] == "cpu" and before["w1"]["pid"] is None
    assert (before["w2"]["backend"], before["w2"]["device"]) == ("cuda", "0")
    http.post("/models/load", json=TINY_LOAD).raise_for_status()
    after = workers(http)
    assert all(w["models"] == [TINY_LOAD["model_name"]] and w["state"] == "idle" for w in after.values())
    assert after["w1"]["pid"] != after["w2"]["pid"]  # a resident process each
    for name, worker in after.items():
        argv = Path(f"/proc/{worker['pid']}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"--threads") + 1] == b"1"
        environment = Path(f"/proc/{worker['pid']}/environ").read_bytes().split(b"\0")
        assert (b"CUDA_VISIBLE_DEVICES=0" in environment) == (name == "w2")
    assert all(w["memory_used_mib"] > 0 for w in after.values())
    for worker in after.values():  # what the CPU build printed: no device, the weights in RAM
        assert worker["device_facts"]["devices"] == [] and worker["device_facts"]["errors"] == []
        assert worker["device_facts"]["params_ram_mib"] > 0 and worker["device_facts"]["params_vram_mib"] == 0
    assert before["w1"]["device_facts"] is None  # no process yet
    health = http.get("/health").json()
    assert health["model_loaded"] is True and health["model_name"] == TINY_LOAD["model_name"]  # the contract's
    assert [w["name"] for w in health["workers"]] == ["w1", "w2"]
    scrape = http.get("/metrics").text
    assert 'sdcpp_worker_state{backend="cpu",device="",state="idle",worker="w1"} 1.0' in scrape
    assert 'sdcpp_worker_state{backend="cuda",device="0",state="idle",worker="w2"} 1.0' in scrape


def test_two_jobs_run_at_once_and_both_decode(loaded: httpx.Client, server: ServerProcess) -> None:
    with connect(f"ws://127.0.0.1:{server.ws_port}") as ws:
        first, second = submit(loaded, "first"), submit(loaded, "second")
        running = wait_until(lambda: both_processing(loaded, first, second), timeout=60)
        assert {job["worker"] for job in running.values()} == {"w1", "w2"}
        busy = workers(loaded)
        assert {busy["w1"]["job_id"], busy["w2"]["job_id"]} == {first, second}
        assert {w["state"] for w in busy.values()} == {"busy"}
        ended: dict[str, dict[str, Any]] = {}
        while len(ended) < 2:
            message = json.loads(ws.recv(timeout=300))
            data = message["data"]
            if message["event"] == "job_status_changed" and data["status"] in ("completed", "failed"):
                ended[data["job_id"]] = data
    assert {ended[first]["worker"], ended[second]["worker"]} == {"w1", "w2"}
    for job_id in (first, second):
        job = wait_for_job(loaded, job_id)
        assert job["status"] == "completed", job.get("error")
        config = json.loads((server.output_dir / job_id / "config.json").read_text())
        assert config["worker"] == job["worker"] and config["engine"] == "worker (resident)"
        with Image.open(server.output_dir / job["outputs"][0]) as image:
            image.load()
            assert image.size == (128, 128)


def test_a_killed_worker_fails_only_its_own_job_and_restarts(loaded: httpx.Client) -> None:
    doomed, survivor = submit(loaded, "doomed"), submit(loaded, "survivor")
    running = wait_until(lambda: both_processing(loaded, doomed, survivor), timeout=60)
    name = running[doomed]["worker"]
    victim = workers(loaded)[name]["pid"]
    os.kill(victim, signal.SIGKILL)
    failed = wait_for_job(loaded, doomed, timeout=300)
    assert failed["status"] == "failed" and "worker" in failed["error"], failed
    assert wait_for_job(loaded, survivor, timeout=300)["status"] == "completed"
    restarted = wait_until(lambda: (w := workers(loaded)[name])["state"] == "idle" and w["pid"] and w, timeout=120)
    assert restarted["pid"] != victim and restarted["models"] == [TINY_LOAD["model_name"]]
    after = [submit(loaded, f"after {i}", steps=2, width=64, height=64) for i in range(2)]
    assert [wait_for_job(loaded, job_id)["status"] for job_id in after] == ["completed", "completed"]


def test_cancel_of_one_job_leaves_the_other_running(loaded: httpx.Client) -> None:
    cancelled, kept = submit(loaded, "cancelled"), submit(loaded, "kept")
    running = wait_until(lambda: both_processing(loaded, cancelled, kept), timeout=60)
    other = workers(loaded)[running[kept]["worker"]]
    assert loaded.delete(f"/queue/{cancelled}").status_code == 200
    assert wait_for_job(loaded, cancelled)["status"] == "cancelled"
    assert loaded.get(f"/queue/{kept}").json()["status"] == "processing"
    done = wait_for_job(loaded, kept, timeout=300)
    assert done["status"] == "completed", done.get("error")
    assert workers(loaded)[other["name"]]["pid"] == other["pid"]  # the other worker's process was not touched


def test_a_job_naming_a_model_goes_to_the_worker_that_holds_it(loaded: httpx.Client, server: ServerProcess) -> None:
    before = workers(loaded)
    quick = {"steps": 2, "width": 64, "height": 64}
    first = wait_for_job(loaded, submit(loaded, "b", model="flux2_tiny_b", **quick))  # by stem, as A1111 names it
    assert first["status"] == "completed", first.get("error")
    holder, other = first["worker"], {"w1": "w2", "w2": "w1"}[first["worker"]]
    config = json.loads((server.output_dir / first["job_id"] / "config.json").read_text())
    assert config["model"] == SECOND and config["worker"] == holder
    switched = workers(loaded)
    assert switched[holder]["models"] == [SECOND] and switched[holder]["pid"] != before[holder]["pid"]
    assert switched[other]["models"] == [TINY_LOAD["model_name"]] and switched[other]["pid"] == before[other]["pid"]
    again = wait_for_job(loaded, submit(loaded, "b again", model=SECOND, **quick))
    assert again["status"] == "completed" and again["worker"] == holder  # the worker that holds it
    default = wait_for_job(loaded, submit(loaded, "default", **quick))
    assert default["status"] == "completed" and default["worker"] == other  # the loaded model's holder
    assert {name: w["pid"] for name, w in workers(loaded).items()} == {name: w["pid"] for name, w in switched.items()}
    assert loaded.get("/health").json()["model_name"] == TINY_LOAD["model_name"]  # the default model stays
    unknown = loaded.post("/txt2img", json={"prompt": "x", "model": "no_such_model"})
    assert unknown.status_code == 400 and "model" in unknown.json()["error"]


def test_an_upscale_auto_unload_on_one_worker_leaves_the_others_chain_alone(loaded: httpx.Client) -> None:
    """Two jobs chain an upscale (upscale_auto_unload, the default): the quick one unloads the upscaler while the slow
    one still generates on the other worker; the slow one upscales with the upscaler it was submitted for."""
    loaded.post("/upscaler/load", json={"model_name": "esrgan_tiny_x4.safetensors"}).raise_for_status()
    slow = submit(loaded, "slow upscaled", upscale=True, width=64, height=64)
    quick = submit(loaded, "quick upscaled", upscale=True, steps=2, width=32, height=32)
    assert wait_for_job(loaded, quick, timeout=300)["status"] == "completed"
    assert loaded.get("/health").json()["upscaler_loaded"] is False  # the quick job unloaded it
    done = wait_for_job(loaded, slow, timeout=600)
    assert done["status"] == "completed", done.get("error")
    assert [output.split("/")[1] for output in done["outputs"]] == ["image_0.png", "image_0_upscaled.png"]


def test_sd_server_workers_run_at_once_and_cancel_one(tiny_models_dir: Path, tmp_path: Path) -> None:
    """The same on a plain sd.cpp release (no worker of ours): an sd-server per worker, on ports of its own."""
    config = 'sd_worker = "none"\n' + TWO_WORKERS
    with (
        contextmanager(running_server_with_config)(tiny_models_dir, tmp_path, config) as server,
        httpx.Client(base_url=server.url, timeout=120) as http,
    ):
        http.post("/models/load", json=TINY_LOAD).raise_for_status()
        assert len({w["pid"] for w in workers(http).values()}) == 2
        cancelled, kept = submit(http, "cancelled"), submit(http, "kept")
        wait_until(lambda: both_processing(http, cancelled, kept), timeout=60)
        assert http.delete(f"/queue/{cancelled}").status_code == 200
        assert wait_for_job(http, cancelled)["status"] == "cancelled"
        done = wait_for_job(http, kept, timeout=300)
        assert done["status"] == "completed", done.get("error")
        config_json = json.loads((server.output_dir / kept / "config.json").read_text())
        assert config_json["engine"] == "sd-server (resident)"
        wait_until(lambda: all(w["state"] == "idle" and w["pid"] for w in workers(http).values()), timeout=120)
