"""Priority and fair sharing between API keys on the real server (one CPU worker, the tiny models, two API keys):
key A queues 6 jobs, then key B one; B's job is next in line (its 202 says position 1) and completes before A's
last jobs; the job records the key's id, never the key; a priority outside -10..10 is a 400 naming the field.
The order's rules in detail: tests/unit/test_fairness.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, running_server_with_config, wait_for_job, wait_until

pytestmark = pytest.mark.integration
KEY_A, KEY_B = "fair-key-alpha-0123456789", "fair-key-bravo-9876543210"
SMALL = {"width": 64, "height": 64, "steps": 6, "preview": False}


@pytest.fixture(scope="module")
def server(own_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server_with_config(
        own_models_dir,
        tmp_path_factory.mktemp("fairness"),
        '[[workers]]\nname = "only"\nthreads = 1\n',
        env={"SDCPP_RESTAPI_API_KEYS": f"{KEY_A}, {KEY_B}"},
    )


def client(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {key}"})


def test_one_keys_six_jobs_do_not_hold_back_anothers_one(server: ServerProcess) -> None:
    with client(server, KEY_A) as alpha, client(server, KEY_B) as bravo:
        alpha.post("/models/load", json=TINY_LOAD).raise_for_status()
        mine = []
        for index in range(6):
            response = alpha.post("/txt2img", json={"prompt": f"a{index}", **SMALL})
            assert response.status_code == 202, response.text
            mine.append(response.json()["job_id"])
        # A's first job has been handed to the worker (A was served): B's one job goes next, not 6th
        wait_until(lambda: alpha.get(f"/queue/{mine[0]}").json()["status"] != "pending", timeout=120)
        response = bravo.post("/txt2img", json={"prompt": "b0", **SMALL})
        assert response.status_code == 202, response.text
        theirs = response.json()["job_id"]
        assert response.json()["position"] == 1
        jobs = {job_id: wait_for_job(alpha, job_id, timeout=600) for job_id in [*mine, theirs]}
        assert all(job["status"] == "completed" for job in jobs.values()), [j.get("error") for j in jobs.values()]
        finished = sorted(jobs, key=lambda job_id: (jobs[job_id]["completed_at"], jobs[job_id]["started_at"]))
        assert finished.index(theirs) <= 2  # after the job running when it came, at most one more of A's
        assert finished[-3:] == mine[-3:]  # A's last jobs finish after it, in A's order
        shown = bravo.get(f"/queue/{theirs}").text + bravo.get("/queue").text
        assert KEY_A not in shown and KEY_B not in shown


def test_priority_is_checked_and_shown(server: ServerProcess) -> None:
    with client(server, KEY_A) as alpha:
        refused = alpha.post("/txt2img", json={"prompt": "x", "priority": 11, **SMALL})
        assert refused.status_code == 400 and "priority" in refused.text, refused.text
        response = alpha.post("/txt2img", json={"prompt": "urgent", "priority": 7, **SMALL})
        assert response.status_code == 202, response.text
        job = wait_for_job(alpha, response.json()["job_id"])
        assert job["status"] == "completed" and job["params"]["priority"] == 7
