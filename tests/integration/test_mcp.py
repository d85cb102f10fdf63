"""The MCP endpoint with the `mcp` package's own client over streamable HTTP, against the real server and the
tiny model: tools and resources listed, generate with wait (progress notifications, an image back), cancel,
load and unload, tool errors naming the field, and the Bearer key when keys are set."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, running_server_with

pytestmark = pytest.mark.integration
KEY = "mcp-test-key"


@asynccontextmanager
async def mcp_session(server: ServerProcess, headers: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    http = httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(30, read=300))
    async with (
        http,
        streamable_http_client(server.url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def payload(result) -> dict:  # type: ignore[no-untyped-def]
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


def error_text(result) -> str:  # type: ignore[no-untyped-def]
    assert result.is_error, result.content
    return result.content[0].text


async def test_tools_resources_and_templates_are_listed(server: ServerProcess) -> None:
    async with mcp_session(server) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"generate", "model", "job"}
        generate = tools["generate"].input_schema
        assert generate["type"] == "object" and generate["required"] == ["type"]
        assert set(generate["properties"]["type"]["enum"]) == {"txt2img", "img2img", "txt2vid", "upscale"}
        steps = generate["properties"]["steps"]["anyOf"][0]  # an integer, or omitted: the architecture's default
        assert steps["minimum"] == 1 and "follows the architecture" in steps["description"]
        assert "prompt" in generate["properties"]
        assert "init_image_base64" in generate["properties"] and "video_frames" in generate["properties"]
        assert set(tools["model"].input_schema["properties"]["action"]["enum"]) == {"list", "load", "unload", "status"}
        assert all(tool.description for tool in tools.values())
        resources = {str(resource.uri) for resource in (await session.list_resources()).resources}
        assert resources == {
            "sdcpp://health",
            "sdcpp://models",
            "sdcpp://models/loaded",
            "sdcpp://queue",
            "sdcpp://architectures",
        }
        templates = (await session.list_resource_templates()).resource_templates
        assert [template.uri_template for template in templates] == ["sdcpp://queue/{job_id}"]
        architectures = json.loads((await session.read_resource("sdcpp://architectures")).contents[0].text)
        assert "FLUX.2" in architectures["architectures"]


async def test_an_agent_that_abandons_its_waiting_call_cancels_its_job(server: ServerProcess) -> None:
    """As an A1111 or OpenAI client that disconnects: the job of an abandoned waiting generate call does not run on
    (the mcp client tells the server with notifications/cancelled)."""
    prompt = "an abandoned agent job"
    arguments = {"type": "txt2img", "prompt": prompt, "width": 64, "height": 64, "steps": 400, "wait": True}

    def job_of_prompt() -> dict[str, str] | None:
        items = httpx.get(f"{server.url}/queue", params={"search": prompt, "limit": 0}).json()["items"]
        return items[0] if items else None

    async with mcp_session(server) as loader:
        payload(await loader.call_tool("model", {"action": "load", **TINY_LOAD}))
    async with mcp_session(server) as session:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(session.call_tool, "generate", arguments)
                while (job := job_of_prompt()) is None or job["status"] != "processing":
                    await anyio.sleep(0.1)
                tasks.cancel_scope.cancel()  # the agent gives up its call (the client tells the server so)
    job = job_of_prompt()
    assert job is not None
    with anyio.fail_after(60):
        while job["status"] == "processing":
            await anyio.sleep(0.1)
            job = job_of_prompt() or job
    assert job["status"] == "cancelled"


async def test_load_status_unload_and_load_by_profile(server: ServerProcess) -> None:
    async with mcp_session(server) as session:
        loaded = payload(await session.call_tool("model", {"action": "load", **TINY_LOAD}))
        assert loaded["model_loaded"] is True and loaded["model_name"] == TINY_LOAD["model_name"]
        listed = payload(await session.call_tool("model", {"action": "list", "type": "diffusion"}))
        assert [
            entry["is_loaded"] for entry in listed["diffusion_models"] if entry["name"] == TINY_LOAD["model_name"]
        ] == [True]
        unloaded = payload(await session.call_tool("model", {"action": "unload"}))
        assert unloaded["model_loaded"] is False
        # By name alone: the components and options of its last successful load (its load profile).
        again = payload(await session.call_tool("model", {"action": "load", "model_name": TINY_LOAD["model_name"]}))
        assert again["model_loaded"] is True and again["loaded_components"]["llm"] == TINY_LOAD["llm"]
        info = json.loads((await session.read_resource("sdcpp://models/loaded")).contents[0].text)
        assert info["load_request"]["llm"] == TINY_LOAD["llm"] and info["model_architecture"] == "FLUX.2 klein"
        status = payload(await session.call_tool("model", {"action": "status"}))
        assert status["model_architecture"] == "FLUX.2 klein"


async def test_generate_waits_reports_progress_and_returns_the_image(server: ServerProcess) -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with mcp_session(server) as session:
        payload(await session.call_tool("model", {"action": "load", **TINY_LOAD}))
        result = await session.call_tool(
            "generate",
            {"type": "txt2img", "prompt": "an agent's cat", "width": 64, "height": 48, "steps": 4, "wait": True},
            progress_callback=on_progress,
        )
        body = payload(result)
        assert body["status"] == "completed" and len(body["outputs"]) == 1
        assert reports and reports[-1][1] == 100.0 and "step" in str(reports[-1][2])
        assert [done for done, _, _ in reports] == sorted(done for done, _, _ in reports)
        images = [content for content in result.content if content.type == "image"]
        assert len(images) == 1 and images[0].mime_type == "image/png"
        assert Image.open(io.BytesIO(base64.b64decode(images[0].data))).size == (64, 48)
        fetched = httpx.get(body["outputs"][0])
        assert fetched.status_code == 200 and Image.open(io.BytesIO(fetched.content)).size == (64, 48)
        job = json.loads((await session.read_resource(f"sdcpp://queue/{body['job_id']}")).contents[0].text)
        assert job["status"] == "completed" and job["params"]["prompt"] == "an agent's cat"
        # It is an ordinary job of the queue: REST sees it too, and the job tool finds it by prompt.
        assert httpx.get(f"{server.url}/queue/{body['job_id']}").json()["type"] == "txt2img"
        found = payload(await session.call_tool("job", {"action": "search", "search": "AGENT'S"}))
        assert [item["job_id"] for item in found["jobs"]] == [body["job_id"]]


async def test_cancel_a_running_job(server: ServerProcess) -> None:
    async with mcp_session(server) as session:
        payload(await session.call_tool("model", {"action": "load", **TINY_LOAD}))
        started = payload(
            await session.call_tool(
                "generate", {"type": "txt2img", "prompt": "long", "width": 256, "height": 256, "steps": 80}
            )
        )
        job_id = started["job_id"]
        for _ in range(600):
            if payload(await session.call_tool("job", {"action": "status", "job_id": job_id}))["progress"]["step"] >= 1:
                break
        payload(await session.call_tool("job", {"action": "cancel", "job_id": job_id}))
        for _ in range(600):
            status = payload(await session.call_tool("job", {"action": "status", "job_id": job_id}))["status"]
            if status != "processing":
                break
        assert status == "cancelled"
        listed = payload(await session.call_tool("job", {"action": "list", "status": ["cancelled"]}))
        assert job_id in [item["job_id"] for item in listed["jobs"]]


async def test_bad_arguments_are_tool_errors_naming_the_field(server: ServerProcess) -> None:
    async with mcp_session(server) as session:
        payload(await session.call_tool("model", {"action": "load", **TINY_LOAD}))
        assert (
            error_text(await session.call_tool("generate", {"type": "txt2img", "prompt": "x", "steps": 0}))
            == "steps: expected `int` >= 1"
        )
        assert error_text(await session.call_tool("generate", {"type": "painting", "prompt": "x"})).startswith("type:")
        assert "multiples of 16" in error_text(
            await session.call_tool("generate", {"type": "txt2img", "prompt": "x", "width": 72, "height": 40})
        )  # the REST API's message
        assert (
            error_text(await session.call_tool("job", {"action": "status"})) == "job_id is required for action=status"
        )
        assert error_text(await session.call_tool("job", {"action": "status", "job_id": "nope"})) == "Job not found"
        assert error_text(await session.call_tool("model", {"action": "load", "model_name": "../x"})).startswith(
            "model_name"
        )


@pytest.fixture(scope="module")
def keyed_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server_with(
        tiny_models_dir, tmp_path_factory.mktemp("mcp-keyed"), env={"SDCPP_RESTAPI_API_KEYS": KEY}
    )


async def test_the_endpoint_needs_the_key_when_keys_are_set(keyed_server: ServerProcess) -> None:
    refused = httpx.post(
        keyed_server.url + "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert refused.status_code == 401
    async with mcp_session(keyed_server, {"Authorization": f"Bearer {KEY}"}) as session:
        assert payload(await session.call_tool("model", {"action": "status"}))["model_loaded"] is False
