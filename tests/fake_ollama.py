"""A local HTTP server that speaks Ollama's API (/api/tags, /api/chat, non-streaming), for tests."""

from __future__ import annotations

import json
from typing import Any

from tests.fake_http import LocalHttpServer, QuietHandler

MODELS = ["llama3.2:latest", "mistral:7b"]


class FakeOllama(LocalHttpServer):
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.assistant_reply = json.dumps(
            {
                "message": "Loading it.",
                "actions": [
                    {
                        "type": "load_model",
                        "parameters": {"model_name": "flux2_tiny_dit.safetensors", "model_type": "diffusion"},
                    },
                    {"type": "format_disk", "parameters": {}},
                ],
            }
        )
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path == "/api/tags":
                    self.reply_json(200, {"models": [{"name": name, "model": name, "size": 1} for name in MODELS]})
                else:
                    self.reply_json(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if self.path != "/api/chat":
                    return self.reply_json(404, {"error": "not found"})
                if body["model"] not in [m.split(":")[0] for m in MODELS] + MODELS:
                    return self.reply_json(404, {"error": f"model '{body['model']}' not found, try pulling it first"})
                user = body["messages"][-1]["content"]
                content = owner.assistant_reply if body.get("format") == "json" else f"an enhanced {user}, golden hour"
                self.reply_json(
                    200,
                    {
                        "model": body["model"],
                        "created_at": "2024-01-01T00:00:00Z",
                        "message": {"role": "assistant", "content": content},
                        "done": True,
                    },
                )

        super().__init__(Handler)
