"""Ollama prompt enhancement and the assistant, against a local server speaking Ollama's protocol."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_ollama import FakeOllama
from tests.support import ServerProcess, free_port, running_server_with_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory, ollama: FakeOllama
) -> Iterator[ServerProcess]:
    yield from running_server_with_config(
        tiny_models_dir,
        tmp_path_factory.mktemp("server-llm"),
        f'[ollama]\nbase_url = "{ollama.url}"\nmodel = "llama3.2"\napi_key = "sekrit"\n'
        f'[assistant]\nbase_url = "{ollama.url}"\nmodel = "llama3.2"\n',
    )


def test_enhance_records_history(client: httpx.Client, ollama: FakeOllama) -> None:
    response = client.post("/ollama/enhance", json={"prompt": "a cat <lora:x:0.5>"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["original_prompt"] == "a cat <lora:x:0.5>"
    assert body["enhanced_prompt"] == "an enhanced a cat <lora:x:0.5>, golden hour"
    assert body["model_used"] == "llama3.2" and isinstance(body["created_at"], int)
    sent = ollama.requests[-1]
    assert sent["auth"] == "Bearer sekrit" and sent["body"]["stream"] is False
    assert sent["body"]["messages"][0]["role"] == "system"
    custom = client.post("/ollama/enhance", json={"prompt": "a dog", "system_prompt": "Be terse."}).json()
    assert ollama.requests[-1]["body"]["messages"][0]["content"] == "Be terse."
    page = client.get("/ollama/history", params={"limit": 1}).json()
    assert page["total_count"] == 2 and [i["id"] for i in page["items"]] == [custom["id"]]
    assert client.get(f"/ollama/history/{body['id']}").json()["enhanced_prompt"] == body["enhanced_prompt"]
    assert client.delete(f"/ollama/history/{body['id']}").json() == {"success": True}
    assert client.get(f"/ollama/history/{body['id']}").status_code == 404
    assert client.delete("/ollama/history").json() == {"success": True}
    assert client.get("/ollama/history").json() == {"total_count": 0, "items": []}
    assert client.post("/ollama/enhance", json={"prompt": ""}).status_code == 400


def test_status_models_and_settings(client: httpx.Client, ollama: FakeOllama) -> None:
    status = client.get("/ollama/status").json()
    assert status["enabled"] is True and status["connected"] is True and status["base_url"] == ollama.url
    assert client.get("/ollama/models").json() == {"models": ["llama3.2:latest", "mistral:7b"]}
    settings = client.get("/ollama/settings").json()
    assert settings["api_key"] == "***masked***" and settings["timeout_seconds"] == 60
    updated = client.put("/ollama/settings", json={"model": "mistral", "max_history": 5})
    assert updated.json()["settings"]["model"] == "mistral" and "api_key" not in updated.json()["settings"]
    assert client.put("/ollama/settings", json={"base_url": "ftp://x"}).status_code == 400
    assert client.put("/ollama/settings", json={"timeout_seconds": -1}).status_code == 400
    broken = client.put("/ollama/settings", json={"model": "nonexistent"})
    assert broken.status_code == 200
    failed = client.post("/ollama/enhance", json={"prompt": "x"})
    assert failed.status_code == 502 and "not found" in failed.json()["error"]
    assert client.get("/ollama/history").json()["items"][0]["success"] is False
    client.put("/ollama/settings", json={"base_url": f"http://127.0.0.1:{free_port()}", "model": "llama3.2"})
    assert client.get("/ollama/status").json()["connected"] is False
    unreachable = client.post("/ollama/enhance", json={"prompt": "x"})
    assert unreachable.status_code == 502 and "not reachable" in unreachable.json()["error"]
    client.put("/ollama/settings", json={"enabled": False})
    assert client.post("/ollama/enhance", json={"prompt": "x"}).status_code == 400
    client.put("/ollama/settings", json={"enabled": True, "base_url": ollama.url})


def test_assistant_chat_actions_and_history(client: httpx.Client, ollama: FakeOllama) -> None:
    reply = client.post(
        "/assistant/chat", json={"message": "Load the tiny model", "context": {"current_view": "dashboard"}}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "success": True,
        "message": "Loading it.",
        "actions": [
            {
                "type": "load_model",
                "parameters": {"model_name": "flux2_tiny_dit.safetensors", "model_type": "diffusion"},
            }
        ],
    }
    sent = ollama.requests[-1]["body"]
    assert sent["format"] == "json" and "dashboard" in sent["messages"][0]["content"]
    ollama.assistant_reply = "plain words, not JSON"
    second = client.post("/assistant/chat", json={"message": "thanks"}).json()
    assert second["message"] == "plain words, not JSON" and second["actions"] == []
    assert [m["role"] for m in ollama.requests[-1]["body"]["messages"]] == ["system", "user", "assistant", "user"]
    history = client.get("/assistant/history").json()
    assert history["count"] == 4 and history["messages"][0]["content"] == "Load the tiny model"
    assert client.get("/assistant/status").json()["timeout_seconds"] == 120
    assert client.get("/assistant/settings").json()["max_history"] == 50
    assert client.delete("/assistant/history").json() == {"success": True}
    assert client.get("/assistant/history").json() == {"messages": [], "count": 0}
