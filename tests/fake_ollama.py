"""A local HTTP server that speaks Ollama's API (/api/tags, /api/chat, non-streaming), for tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = ["llama3.2:latest", "mistral:7b"]


class FakeOllama:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.assistant_reply = json.dumps({"message": "Loading it.", "actions": [
            {"type": "load_model", "parameters": {"model_name": "flux2_tiny_dit.safetensors", "model_type": "diffusion"}},
            {"type": "format_disk", "parameters": {}}]})
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/api/tags":
                    self._send(200, {"models": [{"name": name, "model": name, "size": 1} for name in MODELS]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if self.path != "/api/chat":
                    return self._send(404, {"error": "not found"})
                if body["model"] not in [m.split(":")[0] for m in MODELS] + MODELS:
                    return self._send(404, {"error": f"model '{body['model']}' not found, try pulling it first"})
                user = body["messages"][-1]["content"]
                content = owner.assistant_reply if body.get("format") == "json" else f"an enhanced {user}, golden hour"
                self._send(200, {"model": body["model"], "created_at": "2024-01-01T00:00:00Z",
                                 "message": {"role": "assistant", "content": content}, "done": True})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOllama":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
