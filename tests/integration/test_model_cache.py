"""Resident model caches on the real resident worker and the tiny models: two CPU workers with memory budgets, "big"
(40 MiB: two tiny models of 18 MiB each by their files' sizes) and "small" (30 MiB: one). A job naming another model
loads it on the worker that runs it only; switching between models resident on one worker loads nothing (the
worker's own load count in /workers does not move); the small budget evicts its least recently used model and
/workers says so; a job for a model resident on one worker goes there; loading and evicting on one worker leaves the
other's running job alone; the A1111 and OpenAI faces name a model for their job only. Speed: `just bench --only
cache`."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, linked_models_dir, running_server_with_config, wait_for_job, wait_until

pytestmark = pytest.mark.integration
DEFAULT = TINY_LOAD["model_name"]
SECOND = "flux2_tiny_b.safetensors"  # the tiny DiT under a second name: another model to the server
THIRD = "flux2_tiny_c.safetensors"
MIB = 18  # each tiny model by the estimate: DiT 2 + LLM 10 + TAE 6 MiB, each file rounded up
CONFIG = f"""
[[workers]]
name = "big"
threads = 1
memory_mib = 40

[[workers]]
name = "small"
threads = 1
memory_mib = 30

[models."{SECOND}"]
llm = "{TINY_LOAD["llm"]}"
taesd = "{TINY_LOAD["taesd"]}"

[models."{THIRD}"]
llm = "{TINY_LOAD["llm"]}"
taesd = "{TINY_LOAD["taesd"]}"
"""
SLOW: dict[str, object] = {"width": 128, "height": 128, "steps": 40, "preview": False}
QUICK: dict[str, object] = {"width": 64, "height": 64, "steps": 2, "preview": False}


@pytest.fixture(scope="module")
def http(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    work = tmp_path_factory.mktemp("model-cache")
    models = linked_models_dir(tiny_models_dir, work / "models")
    for name in (SECOND, THIRD):
        os.link(models / "diffusion_models" / DEFAULT, models / "diffusion_models" / name)
    server: ServerProcess
    for server in running_server_with_config(models, work, CONFIG):
        with httpx.Client(base_url=server.url, timeout=120) as client:
            client.post("/models/load", json=TINY_LOAD).raise_for_status()
            yield client


def workers(http: httpx.Client) -> dict[str, dict[str, Any]]:
    return {worker["name"]: worker for worker in http.get("/workers").json()}


def held(worker: dict[str, Any]) -> list[str]:
    return [model["name"] for model in worker["models"]]


def submit(http: httpx.Client, prompt: str, shape: dict[str, object], **body: object) -> str:
    response = http.post("/txt2img", json={"prompt": prompt, **shape, **body})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def run(http: httpx.Client, prompt: str, **body: object) -> dict[str, Any]:
    job = wait_for_job(http, submit(http, prompt, QUICK, **body), timeout=300)
    assert job["status"] == "completed", job.get("error")
    return job


def processing(http: httpx.Client, job_id: str) -> dict[str, Any] | None:
    job = http.get(f"/queue/{job_id}").json()
    return job if job["status"] == "processing" else None


def test_a_load_puts_the_default_model_on_every_worker(http: httpx.Client) -> None:
    listed = workers(http)
    for worker in listed.values():
        assert held(worker) == [DEFAULT] and worker["loads"] == 1
        assert worker["models"][0]["mib"] == MIB and worker["models_mib"] == MIB
    assert (listed["big"]["memory_budget_mib"], listed["small"]["memory_budget_mib"]) == (40, 30)
    health = http.get("/health").json()
    assert health["model_name"] == DEFAULT and [held(w) for w in health["workers"]] == [[DEFAULT], [DEFAULT]]


def test_a_small_budget_evicts_the_lru_model_without_touching_the_other_workers_job(http: httpx.Client) -> None:
    slow = submit(http, "slow on big", SLOW)  # big, the first declared idle worker holding the default model
    running = wait_until(lambda: processing(http, slow), timeout=120)
    assert running["worker"] == "big"
    big_before = workers(http)["big"]
    quick = run(http, "the second model on small", model=SECOND)  # only small is idle: it evicts the default
    assert quick["worker"] == "small"
    small = workers(http)["small"]
    assert held(small) == [SECOND] and small["loads"] == 2 and small["models_mib"] == MIB
    assert http.get(f"/queue/{slow}").json()["status"] == "processing"  # the load on small left big's job running
    done = wait_for_job(http, slow, timeout=600)
    assert done["status"] == "completed", done.get("error")
    big = workers(http)["big"]
    assert big["pid"] == big_before["pid"] and held(big) == [DEFAULT] and big["loads"] == 1
    assert http.get("/health").json()["model_name"] == DEFAULT  # the default model stays the contract's


def test_a_job_goes_to_the_worker_holding_its_model(http: httpx.Client) -> None:
    # big has room for SECOND without evicting; small holds it: small is chosen (no load anywhere)
    before = workers(http)
    job = run(http, "affinity", model=SECOND)
    assert job["worker"] == "small"
    after = workers(http)
    assert [after[name]["loads"] for name in ("big", "small")] == [before[name]["loads"] for name in ("big", "small")]
    assert run(http, "the default", model=DEFAULT)["worker"] == "big"  # small would have to evict


def test_switching_between_two_resident_models_does_not_reload(http: httpx.Client) -> None:
    slow = submit(http, "slow on small", SLOW, model=SECOND)  # keeps small busy: SECOND must load on big
    wait_until(lambda: processing(http, slow), timeout=120)
    assert run(http, "the second model on big", model=SECOND)["worker"] == "big"
    big = workers(http)["big"]
    assert held(big) == [DEFAULT, SECOND] and big["loads"] == 2 and big["models_mib"] == 2 * MIB
    pid = big["pid"]
    assert wait_for_job(http, slow, timeout=600)["status"] == "completed"
    for model in (DEFAULT, SECOND, DEFAULT, SECOND):  # big holds both (small would evict for the default)
        assert run(http, f"switch to {model}", model=model)["worker"] == "big"
    big = workers(http)["big"]
    assert big["loads"] == 2 and big["pid"] == pid  # four switches, no load
    assert held(big) == [DEFAULT, SECOND]  # least recently used first


def test_a_third_model_evicts_the_least_recently_used_on_big(http: httpx.Client) -> None:
    run(http, "the default last", model=DEFAULT)  # big: SECOND is now the least recently used
    job = run(http, "a third model", model=THIRD)
    assert job["worker"] == "big"  # small would evict as many MiB: the first declared
    big = workers(http)["big"]
    assert held(big) == [DEFAULT, THIRD] and big["loads"] == 3


def test_the_compat_faces_load_a_named_model_on_one_worker_only(http: httpx.Client) -> None:
    before = workers(http)
    a1111 = http.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": "an a1111 cat",
            "steps": 2,
            "width": 64,
            "height": 64,
            "override_settings": {"sd_model_checkpoint": "flux2_tiny_b"},
        },
    )
    assert a1111.status_code == 200, a1111.text
    base64.b64decode(a1111.json()["images"][0])
    openai = http.post(
        "/v1/images/generations",
        json={"prompt": "an openai cat", "model": THIRD, "size": "64x64", "response_format": "b64_json"},
    )
    assert openai.status_code == 200, openai.text
    after = workers(http)
    # one load at most per request, on the worker that ran it; never a load on every worker
    assert sum(after[name]["loads"] - before[name]["loads"] for name in after) <= 2
    assert http.get("/health").json()["model_name"] == DEFAULT
    assert any(SECOND in held(worker) for worker in after.values())
    assert any(THIRD in held(worker) for worker in after.values())
