"""LLM prompt help: prompt enhancement with a history, and a context-aware assistant for the web UI.

Both talk to an Ollama server through `OllamaClient`. Their settings start from the config; changes made with
PUT, and the histories, are kept in the store.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Protocol, TypeVar

import msgspec

from core.errors import BadRequest, NotFound
from core.prompt_help.ollama import ChatTurn, LlmUnavailable, OllamaClient
from core.prompt_help.schemas import (
    AssistantAction,
    ChatHistory,
    ChatMessage,
    ChatResponse,
    Enhancement,
    EnhancementPage,
    LlmSettings,
    LlmSettingsUpdate,
    LlmStatus,
)
from core.request_types import check_http_url
from core.stored_values import ValueStore

T = TypeVar("T")

ENHANCE_SYSTEM_PROMPT = (
    "You improve prompts for a text-to-image model. Rewrite the user's prompt into one vivid, concrete prompt: "
    "subject, setting, composition, lighting, style and quality terms. Keep every <lora:...> tag exactly as "
    "written. Answer with the prompt only, no quotes, no explanations."
)
ASSISTANT_SYSTEM_PROMPT = (
    "You are the assistant of an image generation web UI built on stable-diffusion.cpp. Answer briefly and "
    'helpfully. Reply with a JSON object {"message": string, "actions": [ {"type": string, '
    '"parameters": object} ]}. Allowed action types: load_model (model_name, model_type), unload_model, '
    "generate (txt2img parameters such as prompt, width, height, steps, cfg_scale, sampler), "
    "set_preview_settings (enabled, mode, interval, max_size, quality), load_upscaler (model_name), "
    "navigate (view). Only suggest actions the user asked for; use model names from the context."
)
ACTION_TYPES = frozenset(
    {"load_model", "unload_model", "generate", "set_preview_settings", "load_upscaler", "navigate"}
)
ASSISTANT_CONTEXT_TURNS = 20


class HistoryStore(ValueStore, Protocol):
    """A feature's settings (values) and its history of entries, kept by feature name."""

    async def history_add(self, feature: str, entries: Sequence[tuple[str | None, object]], keep: int) -> None:
        """Append (entry id, entry) pairs and keep only the newest `keep` of the feature (0 keeps none)."""

    async def history_page(
        self, feature: str, type_: type[T], limit: int | None, offset: int = 0, newest_first: bool = True
    ) -> list[T]: ...

    async def history_entry(self, feature: str, entry_id: str, type_: type[T]) -> T | None: ...

    async def history_delete(self, feature: str, entry_id: str | None = None) -> int:
        """Delete one entry (or all of the feature when entry_id is None); returns how many."""

    async def history_count(self, feature: str) -> int: ...


def stored_settings_key(feature: str) -> str:
    """The store's key for a feature's settings as changed with PUT (they win over the config's)."""
    return f"{feature}_settings"


class LlmFeature:
    """Settings + history + client of one LLM feature; `name` keys its settings and history in the store."""

    name = "llm"
    disabled_message = "LLM integration is disabled"

    def __init__(self, store: HistoryStore, defaults: LlmSettings) -> None:
        self.store = store
        self.settings = defaults
        self._client: OllamaClient | None = None

    @property
    def settings_key(self) -> str:
        return stored_settings_key(self.name)

    async def restore(self) -> None:
        """Settings changed with PUT win over the config's."""
        self.settings = await self.store.value(self.settings_key, LlmSettings) or self.settings

    def client(self) -> OllamaClient:
        if self._client is None:
            self._client = OllamaClient(self.settings.base_url, self.settings.api_key, self.settings.timeout_seconds)
        return self._client

    def require_enabled(self) -> OllamaClient:
        if not self.settings.enabled:
            raise BadRequest(self.disabled_message)
        return self.client()

    async def update(self, update: LlmSettingsUpdate) -> LlmSettings:
        changes = {k: v for k, v in msgspec.structs.asdict(update).items() if v is not msgspec.UNSET}
        if isinstance(update.base_url, str):
            check_http_url(update.base_url, "base_url")  # refused now, not a failure at the next call
        self.settings = msgspec.structs.replace(self.settings, **changes)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await self.store.set_value(self.settings_key, self.settings)
        if "max_history" in changes:  # trim now, as a new entry would
            await self.store.history_add(self.name, [], self.settings.max_history)
        return self.settings

    async def remember(self, *entries: tuple[str | None, object]) -> None:
        await self.store.history_add(self.name, entries, self.settings.max_history)

    async def clear(self) -> None:
        await self.store.history_delete(self.name)

    async def status(self) -> LlmStatus:
        connected = self.settings.enabled and await self.client().reachable()
        return self.with_details(
            LlmStatus(
                self.settings.enabled,
                connected,
                self.settings.base_url,
                self.settings.model,
                await self.store.history_count(self.name),
            )
        )

    def with_details(self, status: LlmStatus) -> LlmStatus:
        """What this feature's status adds (the spec gives each its own extra field)."""
        return status


class PromptEnhancer(LlmFeature):
    name = "ollama"
    disabled_message = "Ollama integration is disabled (PUT /ollama/settings with enabled: true)"

    def with_details(self, status: LlmStatus) -> LlmStatus:
        return msgspec.structs.replace(status, max_history=self.settings.max_history)

    async def enhance(self, prompt: str, system_prompt: str | None) -> Enhancement:
        client = self.require_enabled()
        entry = Enhancement(
            id=str(uuid.uuid4()),
            original_prompt=prompt,
            enhanced_prompt="",
            model_used=self.settings.model,
            created_at=int(time.time()),
            success=False,
            error_message="",
        )
        messages = [ChatTurn("system", system_prompt or ENHANCE_SYSTEM_PROMPT), ChatTurn("user", prompt)]
        try:
            entry.enhanced_prompt = (await client.chat(self.settings.model, messages)).strip().strip('"')
            entry.success = True
        except LlmUnavailable as exc:
            entry.error_message = exc.message
            raise
        finally:
            await self.remember((entry.id, entry))
        return entry

    async def page(self, limit: int, offset: int) -> EnhancementPage:
        items = await self.store.history_page(self.name, Enhancement, limit, offset)
        return EnhancementPage(await self.store.history_count(self.name), items)

    async def entry(self, entry_id: str) -> Enhancement:
        found = await self.store.history_entry(self.name, entry_id, Enhancement)
        if found is None:
            raise NotFound("History entry not found")
        return found

    async def delete(self, entry_id: str) -> None:
        if not await self.store.history_delete(self.name, entry_id):
            raise NotFound("History entry not found")


class Assistant(LlmFeature):
    name = "assistant"
    disabled_message = "The assistant is disabled (PUT /assistant/settings with enabled: true)"

    def with_details(self, status: LlmStatus) -> LlmStatus:
        return msgspec.structs.replace(status, timeout_seconds=self.settings.timeout_seconds)

    async def history(self) -> ChatHistory:
        messages = await self.store.history_page(self.name, ChatMessage, None, newest_first=False)
        return ChatHistory(messages, len(messages))

    async def chat(self, message: str, context: dict[str, object] | None) -> ChatResponse:
        client = self.require_enabled()
        system = ASSISTANT_SYSTEM_PROMPT
        if context:
            system += "\nApplication context (JSON): " + json.dumps(context, default=str)[:20000]
        recent = await self.store.history_page(self.name, ChatMessage, ASSISTANT_CONTEXT_TURNS)
        messages = [
            ChatTurn("system", system),
            *(ChatTurn(m.role, m.content) for m in reversed(recent)),
            ChatTurn("user", message),
        ]
        reply = await client.chat(self.settings.model, messages, json_format=True)
        text, actions = parse_assistant_reply(reply)
        now = int(time.time())
        await self.remember((None, ChatMessage("user", message, now)), (None, ChatMessage("assistant", text, now)))
        return ChatResponse(True, text, actions)


class _Reply(msgspec.Struct):
    message: object = None
    actions: object = None


def parse_assistant_reply(reply: str) -> tuple[str, list[AssistantAction]]:
    """The model is asked for JSON; a reply that is not JSON is shown as text with no actions, and only
    known action types with object parameters are passed to the UI."""
    try:
        data = msgspec.json.decode(reply, type=_Reply)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # the model's text, nested or not
        return reply, []
    actions = []
    for action in data.actions if isinstance(data.actions, list) else []:
        if isinstance(action, dict) and action.get("type") in ACTION_TYPES:
            parameters = action.get("parameters")
            actions.append(AssistantAction(str(action["type"]), parameters if isinstance(parameters, dict) else {}))
    return str(data.message or ""), actions
