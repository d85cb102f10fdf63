"""Idempotent submits (issue 24): a retry with the same Idempotency-Key gets the first submission's job on every
submitting face (REST, A1111, OpenAI, MCP); the same key with another request is a 422."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from tests.conftest import TINY_LOAD
from tests.integration.test_mcp import mcp_session, payload
from tests.support import ServerProcess, server_fixture, wait_for_job

pytestmark = pytest.mark.integration
server = server_fixture()
BODY = {"width": 64, "height": 64, "steps": 2, "seed": 5}


@pytest.fixture()
def loaded(client: httpx.Client) -> httpx.Client:
    if client.get("/health").json()["model_name"] != TINY_LOAD["model_name"]:
        assert client.post("/models/load", json=TINY_LOAD).status_code == 200
    return client


def jobs_with_prompt(client: httpx.Client, prompt: str) -> list[str]:
    return [job["job_id"] for job in client.get("/queue", params={"search": prompt, "limit": 0}).json()["items"]]


def test_a_retried_submit_gets_the_same_job(loaded: httpx.Client) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {**BODY, "prompt": "an idempotent cat"}
    first = loaded.post("/txt2img", json=body, headers=key)
    again = loaded.post("/txt2img", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["job_id"] == first.json()["job_id"]
    assert jobs_with_prompt(loaded, "an idempotent cat") == [first.json()["job_id"]]
    assert wait_for_job(loaded, first.json()["job_id"])["status"] == "completed"
    # Without a key, or with another one, a repeat is a new job.
    assert loaded.post("/txt2img", json=body).json()["job_id"] != first.json()["job_id"]
    other = loaded.post("/txt2img", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert other.json()["job_id"] != first.json()["job_id"]


def test_the_same_key_with_another_request_is_a_422(loaded: httpx.Client) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert loaded.post("/txt2img", json={**BODY, "prompt": "first body"}, headers=key).status_code == 202
    changed = loaded.post("/txt2img", json={**BODY, "prompt": "second body"}, headers=key)
    assert changed.status_code == 422
    assert changed.json()["error"].startswith("Idempotency-Key: this key was used with another request on /txt2img")
    assert jobs_with_prompt(loaded, "second body") == []


@pytest.mark.parametrize("key", ["x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_a_400_naming_the_header(loaded: httpx.Client, key: str) -> None:
    response = loaded.post(
        "/txt2img", json={**BODY, "prompt": "bad key"}, headers=[(b"Idempotency-Key", key.encode("utf-8"))]
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Idempotency-Key: 1 to 255 printable ASCII characters"


def test_a1111_and_openai_retries_get_the_same_job(loaded: httpx.Client, server: ServerProcess) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    a1111 = {"prompt": "an a1111 retry", "width": 64, "height": 64, "steps": 2, "seed": 3}
    first = loaded.post("/sdapi/v1/txt2img", json=a1111, headers=key, timeout=120)
    again = loaded.post("/sdapi/v1/txt2img", json=a1111, headers=key, timeout=120)
    assert first.status_code == again.status_code == 200 and first.json()["images"] == again.json()["images"]
    assert len(jobs_with_prompt(loaded, "an a1111 retry")) == 1
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    results = [
        client.images.generate(prompt="an openai retry", size="64x64", model="gpt-image-1", extra_headers=headers)
        for _ in range(2)
    ]
    assert results[0].data[0].b64_json == results[1].data[0].b64_json
    assert len(jobs_with_prompt(loaded, "an openai retry")) == 1


async def test_an_mcp_retry_with_the_same_key_gets_the_same_job(loaded: httpx.Client, server: ServerProcess) -> None:
    arguments = {"type": "txt2img", "prompt": "an mcp retry", **BODY, "idempotency_key": str(uuid.uuid4())}
    async with mcp_session(server) as session:
        first = payload(await session.call_tool("generate", arguments))
        again = payload(await session.call_tool("generate", arguments))
    assert first["job_id"] == again["job_id"]
    assert jobs_with_prompt(loaded, "an mcp retry") == [first["job_id"]]
