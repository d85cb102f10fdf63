"""A client for Ollama's HTTP API (reached through a configurable base URL), used for prompt help."""

from __future__ import annotations

from typing import TypeVar

import httpx
import msgspec

from core.errors import ServiceError

T = TypeVar("T")


class LlmUnavailable(ServiceError):
    """The LLM server could not be reached or answered with an error (502: the fault is upstream)."""

    status = 502


class ChatTurn(msgspec.Struct):
    role: str
    content: str


class ChatBody(msgspec.Struct, omit_defaults=True):
    model: str
    messages: list[ChatTurn]
    stream: bool  # always sent: Ollama streams unless told not to
    format: str | None = None


class _Tag(msgspec.Struct):
    name: str | None = None
    model: str | None = None


class _Tags(msgspec.Struct):
    models: list[_Tag] = []


class _ChatAnswer(msgspec.Struct):
    message: ChatTurn | None = None


class _ErrorAnswer(msgspec.Struct):
    error: str = ""


class OllamaClient:
    def __init__(self, base_url: str, api_key: str = "", timeout_s: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        try:
            self.http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)
        except httpx.InvalidURL as exc:  # a base_url stored or configured before it was checked
            raise LlmUnavailable(f"Ollama's base_url is not a valid URL ({self.base_url}): {exc}") from None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(
        self, method: str, path: str, answer: type[T], body: msgspec.Struct | None = None, timeout: float | None = None
    ) -> T:
        try:
            response = await self.http.request(
                method,
                path,
                content=msgspec.json.encode(body) if body else None,
                headers={"Content-Type": "application/json"} if body else None,
                timeout=timeout or self.timeout_s,
            )
        except httpx.TimeoutException:
            raise LlmUnavailable(f"Ollama at {self.base_url} did not answer within {self.timeout_s:.0f}s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise LlmUnavailable(f"Ollama is not reachable at {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = msgspec.json.decode(response.content, type=_ErrorAnswer).error or response.text
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                detail = response.text
            raise LlmUnavailable(f"Ollama answered {response.status_code}: {detail[:300]}")
        try:
            return msgspec.json.decode(response.content, type=answer)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise LlmUnavailable("Ollama answered with something that is not the JSON it documents") from None

    async def models(self) -> list[str]:
        tags = await self._call("GET", "/api/tags", _Tags)
        return [name for entry in tags.models if (name := entry.name or entry.model)]

    async def reachable(self) -> bool:
        try:
            await self._call("GET", "/api/tags", _Tags, timeout=3.0)
        except LlmUnavailable:
            return False
        return True

    async def chat(self, model: str, messages: list[ChatTurn], json_format: bool = False) -> str:
        body = ChatBody(model, messages, stream=False, format="json" if json_format else None)
        answer = await self._call("POST", "/api/chat", _ChatAnswer, body)
        if answer.message is None:
            raise LlmUnavailable("Ollama's answer has no message content")
        return answer.message.content.strip()
