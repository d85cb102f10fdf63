"""The routes of core.prompt_help: Ollama prompt enhancement (/ollama/*) and the web UI assistant (/assistant/*)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from litestar import delete, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import Parameter

from core.prompt_help.features import LlmFeature
from core.prompt_help.schemas import (
    ChatHistory,
    ChatRequest,
    ChatResponse,
    Enhancement,
    EnhancementPage,
    EnhanceRequest,
    LlmSettingsUpdate,
    LlmStatus,
    OllamaModels,
    PublicLlmSettings,
    SettingsUpdated,
    Success,
)
from core.request_types import INT_MAX
from core.service import Service


@post("/ollama/enhance", status_code=200, summary="Enhance a prompt through Ollama")
async def enhance(data: EnhanceRequest, service: Service) -> Enhancement:
    return await service.enhancer.enhance(data.prompt, data.system_prompt)


@get("/ollama/history", summary="Enhancement history, newest first")
async def history(
    service: Service,
    limit: Annotated[int, Parameter(ge=0, le=INT_MAX)] = 50,
    offset: Annotated[int, Parameter(ge=0, le=INT_MAX)] = 0,
) -> EnhancementPage:
    return await service.enhancer.page(limit, offset)


@get("/ollama/history/{entry_id:str}", summary="One enhancement")
async def history_entry(service: Service, entry_id: str) -> Enhancement:
    return await service.enhancer.entry(entry_id)


@delete("/ollama/history/{entry_id:str}", status_code=200, summary="Delete one enhancement")
async def delete_history_entry(service: Service, entry_id: str) -> Success:
    await service.enhancer.delete(entry_id)
    return Success()


@get("/ollama/models", summary="The models Ollama offers")
async def ollama_models(service: Service) -> OllamaModels:
    return OllamaModels(await service.enhancer.client().models())


@post("/assistant/chat", status_code=200, summary="Chat with the assistant; it may suggest actions")
async def assistant_chat(data: ChatRequest, service: Service) -> ChatResponse:
    return await service.assistant.chat(data.message, data.context)


@get("/assistant/history", summary="The assistant conversation, oldest first")
async def assistant_history(service: Service) -> ChatHistory:
    return await service.assistant.history()


def feature_routes(prefix: str, feature: Callable[[Service], LlmFeature]) -> list[HTTPRouteHandler]:
    """GET/PUT {prefix}/settings, GET {prefix}/status and DELETE {prefix}/history: the same contract for the
    Ollama enhancer and the assistant."""
    section = prefix.strip("/")

    @get(
        f"{prefix}/status",
        summary=f"Whether {section} is enabled and its LLM reachable",
        operation_id=f"get_{section}_status",
    )
    async def status(service: Service) -> LlmStatus:
        return await feature(service).status()

    @delete(
        f"{prefix}/history",
        status_code=200,
        summary=f"Clear the {section} history",
        operation_id=f"clear_{section}_history",
    )
    async def clear_history(service: Service) -> Success:
        await feature(service).clear()
        return Success()

    @get(
        f"{prefix}/settings",
        sync_to_thread=False,
        summary=f"{section} settings (API key masked)",
        operation_id=f"get_{section}_settings",
    )
    def read_settings(service: Service) -> PublicLlmSettings:
        return feature(service).settings.public()

    @put(f"{prefix}/settings", summary=f"Change {section} settings (persisted)", operation_id=f"put_{section}_settings")
    async def update_settings(data: LlmSettingsUpdate, service: Service) -> SettingsUpdated:
        settings = await feature(service).update(data)
        return SettingsUpdated(True, settings.public(with_key=False))

    return [status, clear_history, read_settings, update_settings]


ROUTES = [
    enhance,
    history,
    history_entry,
    delete_history_entry,
    ollama_models,
    assistant_chat,
    assistant_history,
    *feature_routes("/ollama", lambda service: service.enhancer),
    *feature_routes("/assistant", lambda service: service.assistant),
]
