"""GET /metrics through the real server, read with prometheus_client's own parser: jobs finished, job durations,
queue depth, model load time and the loaded model, HTTP requests by route template; and its access rules with
API keys set (the key, or the scrape token that opens /metrics alone)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, running_server_with, wait_for_job, wait_until

pytestmark = pytest.mark.integration
KEY = "metrics test key"
SCRAPE_TOKEN = "scrape-only token"
TINY_JOB = {"prompt": "a counted cat", "width": 64, "height": 64, "steps": 2}
SLOW_JOB = {"prompt": "slow", "width": 256, "height": 256, "steps": 100}


def scrape(http: httpx.Client, **headers: str) -> list[Sample]:
    response = http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample named `name` whose labels include `labels`; 0 when there is none."""
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def depth(samples: list[Sample], status: str) -> float:
    return value(samples, "sdcpp_queue_jobs", status=status, lane="generation")


def test_a_job_a_load_and_requests_show_in_the_scrape(client: httpx.Client) -> None:
    before = scrape(client)
    assert value(before, "sdcpp_model_load_seconds_count") == 0
    assert not [s for s in before if s.name == "sdcpp_model_loaded"]  # no model: no sample
    assert client.post("/models/load", json=TINY_LOAD).status_code == 200
    job = client.post("/txt2img", json=TINY_JOB).json()
    assert wait_for_job(client, job["job_id"])["status"] == "completed"

    after = scrape(client)
    finished = {"type": "txt2img", "result": "completed"}
    assert (
        value(after, "sdcpp_jobs_finished_total", **finished)
        == value(before, "sdcpp_jobs_finished_total", **finished) + 1
    )
    assert value(after, "sdcpp_job_duration_seconds_count", **finished) == 1
    assert value(after, "sdcpp_job_duration_seconds_sum", **finished) > 0
    assert value(after, "sdcpp_model_load_seconds_count") == 1
    assert value(after, "sdcpp_model_load_seconds_sum") > 0
    loaded = [s for s in after if s.name == "sdcpp_model_loaded"]
    assert [(s.labels["model_name"], s.labels["model_type"], s.value) for s in loaded] == [
        (TINY_LOAD["model_name"], "diffusion", 1.0)
    ]
    assert depth(after, "pending") == depth(after, "processing") == 0

    # HTTP requests by route template and status: the previous scrape (counted as its answer started), three
    # /health, one job by its id, and a 404, which is counted without its path.
    for _ in range(3):
        assert client.get("/health").status_code == 200
    assert client.get(f"/queue/{job['job_id']}").status_code == 200
    assert client.get("/no/such/route").status_code == 404
    requests = scrape(client)
    counted = "sdcpp_http_requests_total"

    def grew(route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        return value(requests, counted, **labels) - value(after, counted, **labels)

    assert grew("/health", "200") == 3
    assert grew("/metrics", "200") == 1
    assert grew("/queue/{job_id}", "200") == 1
    assert grew("unmatched", "404") == 1
    assert value(requests, counted, method="POST", route="/txt2img", status="202") >= 1
    assert not [s for s in requests if s.name == counted and job["job_id"] in s.labels["route"]]


def test_queue_depth_by_status_and_cancelled_jobs(client: httpx.Client) -> None:
    assert client.post("/models/load", json=TINY_LOAD).status_code == 200
    before = scrape(client)
    slow = client.post("/txt2img", json=SLOW_JOB).json()
    waiting = client.post("/txt2img", json=TINY_JOB).json()
    wait_until(lambda: client.get(f"/queue/{slow['job_id']}").json()["progress"]["step"] >= 1, timeout=60)
    busy = scrape(client)
    assert (depth(busy, "processing"), depth(busy, "pending")) == (1, 1)

    assert client.delete(f"/queue/{waiting['job_id']}").status_code == 200
    assert client.delete(f"/queue/{slow['job_id']}").status_code == 200
    assert wait_for_job(client, slow["job_id"], timeout=30)["status"] == "cancelled"
    idle = scrape(client)
    assert (depth(idle, "processing"), depth(idle, "pending")) == (0, 0)
    cancelled = {"type": "txt2img", "result": "cancelled"}
    assert (
        value(idle, "sdcpp_jobs_finished_total", **cancelled)
        == value(before, "sdcpp_jobs_finished_total", **cancelled) + 2
    )
    # Only the job that ran has a duration; the one cancelled while waiting never started.
    ran = value(idle, "sdcpp_job_duration_seconds_count", **cancelled) - value(
        before, "sdcpp_job_duration_seconds_count", **cancelled
    )
    assert ran == 1


@pytest.fixture(scope="module")
def keyed_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"SDCPP_RESTAPI_API_KEYS": KEY, "SDCPP_RESTAPI_METRICS_TOKEN": SCRAPE_TOKEN}
    yield from running_server_with(tiny_models_dir, tmp_path_factory.mktemp("keyed-metrics"), env=env)


def test_with_keys_metrics_needs_the_key_or_the_scrape_token(keyed_server: ServerProcess) -> None:
    with httpx.Client(base_url=keyed_server.url, timeout=30) as http:
        refused = http.get("/metrics")
        assert refused.status_code == 401 and "API key" in refused.json()["error"]
        assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        samples = scrape(http, Authorization=f"Bearer {SCRAPE_TOKEN}")
        assert value(samples, "sdcpp_http_requests_total", method="GET", route="/metrics", status="401") == 2
        assert scrape(http, Authorization=f"Bearer {KEY}")
        # The scrape token opens /metrics alone.
        assert http.get("/queue", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}).status_code == 401
        assert http.get("/queue", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_sampling_steps_show_in_the_step_histogram_by_worker_and_model(client: httpx.Client) -> None:
    if client.get("/health").json()["model_name"] != TINY_LOAD["model_name"]:
        assert client.post("/models/load", json=TINY_LOAD).status_code == 200
    before = scrape(client)
    job = client.post("/txt2img", json={**TINY_JOB, "steps": 4, "prompt": "a stepped cat"}).json()
    finished = wait_for_job(client, job["job_id"])
    assert finished["status"] == "completed"
    after = scrape(client)
    labels = {"worker": finished["worker"], "model": TINY_LOAD["model_name"]}
    counted = value(after, "sdcpp_step_duration_seconds_count", **labels) - value(
        before, "sdcpp_step_duration_seconds_count", **labels
    )
    assert counted == 3  # steps 2, 3 and 4: the first follows text encoding and is not a sampling step's time
    assert value(after, "sdcpp_step_duration_seconds_sum", **labels) > value(
        before, "sdcpp_step_duration_seconds_sum", **labels
    )
    assert value(after, "sdcpp_step_duration_seconds_bucket", le="+Inf", **labels) >= 3
