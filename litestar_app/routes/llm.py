"""Ollama prompt enhancement and the web UI assistant."""

from __future__ import annotations

from typing import Any, Callable

from litestar import Request, delete, get, post, put

from litestar_app.body import decode_body
from orchestrator.errors import BadRequest
from orchestrator.prompt_help import ChatRequest, EnhanceRequest, LlmFeature, LlmSettingsUpdate
from orchestrator.service import Service

SUCCESS = {"success": True}


@post("/ollama/enhance", status_code=200)
async def enhance(request: Request, service: Service) -> dict[str, Any]:
    body = await decode_body(request, EnhanceRequest)
    return {"success": True, **await service.enhancer.enhance(body.prompt, body.system_prompt)}


@get("/ollama/history", sync_to_thread=False)
def history(service: Service, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    if limit < 0 or offset < 0:
        raise BadRequest("limit and offset must not be negative")
    return service.enhancer.page(limit, offset)


@get("/ollama/history/{entry_id:str}", sync_to_thread=False)
def history_entry(service: Service, entry_id: str) -> dict[str, Any]:
    return service.enhancer.entry(entry_id)


@delete("/ollama/history/{entry_id:str}", status_code=200)
async def delete_history_entry(service: Service, entry_id: str) -> dict[str, Any]:
    await service.enhancer.delete(entry_id)
    return SUCCESS


@delete("/ollama/history", status_code=200)
async def clear_history(service: Service) -> dict[str, Any]:
    await service.enhancer.clear()
    return SUCCESS


@get("/ollama/status")
async def ollama_status(service: Service) -> dict[str, Any]:
    return {**await service.enhancer.status(), "max_history": service.enhancer.settings.max_history}


@get("/ollama/models")
async def ollama_models(service: Service) -> dict[str, Any]:
    return {"models": await service.enhancer.client().models()}


@post("/assistant/chat", status_code=200)
async def assistant_chat(request: Request, service: Service) -> dict[str, Any]:
    body = await decode_body(request, ChatRequest)
    return await service.assistant.chat(body.message, body.context)


@get("/assistant/history", sync_to_thread=False)
def assistant_history(service: Service) -> dict[str, Any]:
    return {"messages": service.assistant.history, "count": len(service.assistant.history)}


@delete("/assistant/history", status_code=200)
async def clear_assistant_history(service: Service) -> dict[str, Any]:
    await service.assistant.clear()
    return SUCCESS


@get("/assistant/status")
async def assistant_status(service: Service) -> dict[str, Any]:
    return {**await service.assistant.status(), "timeout_seconds": service.assistant.settings.timeout_seconds}


def settings_routes(prefix: str, feature: Callable[[Service], LlmFeature]) -> list[Any]:
    """GET and PUT {prefix}/settings: the same contract for the Ollama enhancer and the assistant."""

    @get(f"{prefix}/settings", sync_to_thread=False)
    def read_settings(service: Service) -> dict[str, Any]:
        return feature(service).settings.public()

    @put(f"{prefix}/settings")
    async def update_settings(request: Request, service: Service) -> dict[str, Any]:
        settings = await feature(service).update(await decode_body(request, LlmSettingsUpdate))
        return {"success": True, "settings": settings.public(with_key=False)}

    return [read_settings, update_settings]


ROUTES = [enhance, history, history_entry, delete_history_entry, clear_history, ollama_status, ollama_models,
          assistant_chat, assistant_history, clear_assistant_history, assistant_status,
          *settings_routes("/ollama", lambda service: service.enhancer),
          *settings_routes("/assistant", lambda service: service.assistant)]
