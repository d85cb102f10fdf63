"""A client for Ollama's HTTP API (reached through a configurable base URL), used for prompt help."""

from __future__ import annotations

from typing import Any

import httpx

from orchestrator.errors import ServiceError


class LlmUnavailable(ServiceError):
    """The LLM server could not be reached or answered with an error (502: the fault is upstream)."""

    status = 502


class OllamaClient:
    def __init__(self, base_url: str, api_key: str = "", timeout_s: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise LlmUnavailable(f"Ollama at {self.base_url} did not answer within {self.timeout_s:.0f}s") from None
        except httpx.HTTPError as exc:
            raise LlmUnavailable(f"Ollama is not reachable at {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise LlmUnavailable(f"Ollama answered {response.status_code}: {str(detail)[:300]}")
        try:
            return response.json()
        except ValueError:
            raise LlmUnavailable("Ollama answered with something that is not JSON") from None

    async def models(self) -> list[str]:
        data = await self._call("GET", "/api/tags")
        return [entry.get("name") or entry.get("model") for entry in data.get("models", [])]

    async def reachable(self) -> bool:
        try:
            await self._call("GET", "/api/tags", timeout=3.0)
        except LlmUnavailable:
            return False
        return True

    async def chat(self, model: str, messages: list[dict[str, str]], json_format: bool = False) -> str:
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": False}
        if json_format:
            body["format"] = "json"
        data = await self._call("POST", "/api/chat", json=body)
        content = (data.get("message") or {}).get("content")
        if not isinstance(content, str):
            raise LlmUnavailable("Ollama's answer has no message content")
        return content.strip()
