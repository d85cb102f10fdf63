"""Settings, requests, history entries and responses of /ollama/* and /assistant/*."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from core.request_types import NonEmptyStr, Request

MASK = "***masked***"
Timeout = Annotated[float, Meta(gt=0, le=3600)]
HistorySize = Annotated[int, Meta(ge=0, le=100000)]


class LlmSettings(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    base_url: str = "http://localhost:11434"
    model: str = "llama3.2"
    timeout_seconds: Timeout = 60.0
    max_history: HistorySize = 100
    api_key: str = ""

    def public(self, with_key: bool = True) -> PublicLlmSettings:
        return PublicLlmSettings(
            self.enabled,
            self.base_url,
            self.model,
            self.timeout_seconds,
            self.max_history,
            (MASK if self.api_key else "") if with_key else msgspec.UNSET,
        )


class PublicLlmSettings(msgspec.Struct):
    """The settings as GET shows them: the API key masked (and left out of PUT's answer)."""

    enabled: bool
    base_url: str
    model: str
    timeout_seconds: float
    max_history: int
    api_key: str | msgspec.UnsetType = msgspec.UNSET


class LlmSettingsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """PUT body: any subset of the settings."""

    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    base_url: Annotated[str, Meta(pattern=r"^https?://\S+$")] | msgspec.UnsetType = msgspec.UNSET
    model: NonEmptyStr | msgspec.UnsetType = msgspec.UNSET
    timeout_seconds: Timeout | msgspec.UnsetType = msgspec.UNSET
    max_history: HistorySize | msgspec.UnsetType = msgspec.UNSET
    api_key: str | msgspec.UnsetType = msgspec.UNSET


class SettingsUpdated(msgspec.Struct):
    success: bool
    settings: PublicLlmSettings


class EnhanceRequest(Request):
    prompt: NonEmptyStr
    system_prompt: str | None = None


class Enhancement(msgspec.Struct):
    """One /ollama/history entry."""

    id: str
    original_prompt: str
    enhanced_prompt: str
    model_used: str
    created_at: int
    success: bool
    error_message: str


class EnhancementPage(msgspec.Struct):
    total_count: int
    items: list[Enhancement]


class ChatRequest(Request):
    message: NonEmptyStr
    # What the web UI shows (loaded model, queue, settings): free-form by the contract, passed to the LLM as JSON.
    context: dict[str, object] | None = None


class ChatMessage(msgspec.Struct):
    role: str
    content: str
    timestamp: int


class AssistantAction(msgspec.Struct):
    type: str
    parameters: dict[str, object]  # free-form: the action's arguments as the LLM proposed them


class ChatResponse(msgspec.Struct):
    success: bool
    message: str
    actions: list[AssistantAction]


class ChatHistory(msgspec.Struct):
    messages: list[ChatMessage]
    count: int


class LlmStatus(msgspec.Struct, omit_defaults=True):
    enabled: bool
    connected: bool
    base_url: str
    model: str
    history_count: int
    max_history: int | None = None  # /ollama/status
    timeout_seconds: float | None = None  # /assistant/status


class OllamaModels(msgspec.Struct):
    models: list[str]


class Success(msgspec.Struct):
    success: bool = True
