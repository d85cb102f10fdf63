"""LLM prompt help: prompt enhancement with a history, and a context-aware assistant for the web UI.

Both talk to an Ollama server through `OllamaClient`; their settings (from the config, then changed at
runtime with PUT) and histories are persisted in the output folder.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import anyio
import msgspec
from msgspec import Meta

from orchestrator.errors import BadRequest, NotFound
from orchestrator.llm import LlmUnavailable, OllamaClient
from orchestrator.store import atomic_write_json, read_json

MASK = "***masked***"
ENHANCE_SYSTEM_PROMPT = (
    "You improve prompts for a text-to-image model. Rewrite the user's prompt into one vivid, concrete prompt: "
    "subject, setting, composition, lighting, style and quality terms. Keep every <lora:...> tag exactly as "
    "written. Answer with the prompt only, no quotes, no explanations."
)
ASSISTANT_SYSTEM_PROMPT = (
    "You are the assistant of an image generation web UI built on stable-diffusion.cpp. Answer briefly and "
    "helpfully. Reply with a JSON object {\"message\": string, \"actions\": [ {\"type\": string, "
    "\"parameters\": object} ]}. Allowed action types: load_model (model_name, model_type), unload_model, "
    "generate (txt2img parameters such as prompt, width, height, steps, cfg_scale, sampler), "
    "set_preview_settings (enabled, mode, interval, max_size, quality), load_upscaler (model_name), "
    "navigate (view). Only suggest actions the user asked for; use model names from the context."
)
ACTION_TYPES = frozenset({"load_model", "unload_model", "generate", "set_preview_settings", "load_upscaler", "navigate"})


class LlmSettings(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    base_url: str = "http://localhost:11434"
    model: str = "llama3.2"
    timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    max_history: Annotated[int, Meta(ge=0, le=100000)] = 100
    api_key: str = ""

    def public(self, with_key: bool = True) -> dict[str, Any]:
        data = msgspec.to_builtins(self)
        data.pop("api_key")
        if with_key:
            data["api_key"] = MASK if self.api_key else ""
        return data


class LlmSettingsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    base_url: Annotated[str, Meta(pattern=r"^https?://\S+$")] | msgspec.UnsetType = msgspec.UNSET
    model: Annotated[str, Meta(min_length=1)] | msgspec.UnsetType = msgspec.UNSET
    timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] | msgspec.UnsetType = msgspec.UNSET
    max_history: Annotated[int, Meta(ge=0, le=100000)] | msgspec.UnsetType = msgspec.UNSET
    api_key: str | msgspec.UnsetType = msgspec.UNSET


class _Persisted(msgspec.Struct):
    settings: LlmSettings
    history: list[dict[str, Any]] = []


class LlmFeature:
    """Settings + history + client, persisted together in one file."""

    disabled_message = "LLM integration is disabled"

    def __init__(self, state_file: Path, defaults: LlmSettings) -> None:
        self.state_file = state_file
        saved = read_json(state_file, _Persisted)
        self.settings = saved.settings if saved else defaults
        self.history: list[dict[str, Any]] = saved.history if saved else []
        self._client: OllamaClient | None = None

    def client(self) -> OllamaClient:
        if self._client is None:
            self._client = OllamaClient(self.settings.base_url, self.settings.api_key, self.settings.timeout_seconds)
        return self._client

    def require_enabled(self) -> OllamaClient:
        if not self.settings.enabled:
            raise BadRequest(self.disabled_message)
        return self.client()

    async def save(self) -> None:
        self.history = self.history[-self.settings.max_history:] if self.settings.max_history else []
        await anyio.to_thread.run_sync(atomic_write_json, self.state_file, _Persisted(self.settings, self.history))

    async def update(self, update: LlmSettingsUpdate) -> LlmSettings:
        changes = {k: v for k, v in msgspec.structs.asdict(update).items() if v is not msgspec.UNSET}
        self.settings = msgspec.structs.replace(self.settings, **changes)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await self.save()
        return self.settings

    async def clear(self) -> None:
        self.history = []
        await self.save()

    async def status(self) -> dict[str, Any]:
        connected = self.settings.enabled and await self.client().reachable()
        return {"enabled": self.settings.enabled, "connected": connected, "base_url": self.settings.base_url,
                "model": self.settings.model, "history_count": len(self.history)}


class PromptEnhancer(LlmFeature):
    disabled_message = "Ollama integration is disabled (PUT /ollama/settings with enabled: true)"

    async def enhance(self, prompt: str, system_prompt: str | None) -> dict[str, Any]:
        client = self.require_enabled()
        entry: dict[str, Any] = {"id": str(uuid.uuid4()), "original_prompt": prompt, "enhanced_prompt": "",
                                 "model_used": self.settings.model, "created_at": int(time.time()),
                                 "success": False, "error_message": ""}
        messages = [{"role": "system", "content": system_prompt or ENHANCE_SYSTEM_PROMPT},
                    {"role": "user", "content": prompt}]
        try:
            entry["enhanced_prompt"] = (await client.chat(self.settings.model, messages)).strip().strip('"')
            entry["success"] = True
        except LlmUnavailable as exc:
            entry["error_message"] = exc.message
            raise
        finally:
            self.history.append(entry)
            await self.save()
        return entry

    def page(self, limit: int, offset: int) -> dict[str, Any]:
        newest_first = list(reversed(self.history))
        return {"total_count": len(newest_first), "items": newest_first[offset: offset + limit]}

    def entry(self, entry_id: str) -> dict[str, Any]:
        for item in self.history:
            if item["id"] == entry_id:
                return item
        raise NotFound("History entry not found")

    async def delete(self, entry_id: str) -> None:
        self.history.remove(self.entry(entry_id))
        await self.save()


class Assistant(LlmFeature):
    disabled_message = "The assistant is disabled (PUT /assistant/settings with enabled: true)"

    async def chat(self, message: str, context: dict[str, Any] | None) -> dict[str, Any]:
        client = self.require_enabled()
        system = ASSISTANT_SYSTEM_PROMPT
        if context:
            system += "\nApplication context (JSON): " + json.dumps(context, default=str)[:20000]
        messages = [{"role": "system", "content": system}]
        messages += [{"role": m["role"], "content": m["content"]} for m in self.history[-20:]]
        messages.append({"role": "user", "content": message})
        reply = await client.chat(self.settings.model, messages, json_format=True)
        text, actions = parse_assistant_reply(reply)
        now = int(time.time())
        self.history += [{"role": "user", "content": message, "timestamp": now},
                         {"role": "assistant", "content": text, "timestamp": now}]
        await self.save()
        return {"success": True, "message": text, "actions": actions}


def parse_assistant_reply(reply: str) -> tuple[str, list[dict[str, Any]]]:
    """The model is asked for JSON; a reply that is not JSON is shown as text with no actions, and only
    known action types with object parameters are passed to the UI."""
    try:
        data = json.loads(reply)
    except ValueError:
        return reply, []
    if not isinstance(data, dict):
        return reply, []
    actions = []
    for action in data.get("actions") or []:
        if isinstance(action, dict) and action.get("type") in ACTION_TYPES:
            parameters = action.get("parameters")
            actions.append({"type": action["type"], "parameters": parameters if isinstance(parameters, dict) else {}})
    return str(data.get("message") or ""), actions


class EnhanceRequest(msgspec.Struct):
    prompt: Annotated[str, Meta(min_length=1)]
    system_prompt: str | None = None


class ChatRequest(msgspec.Struct):
    message: Annotated[str, Meta(min_length=1)]
    context: dict[str, Any] | None = None

