"""A local HTTP server speaking the parts of CivitAI's and HuggingFace's protocols that downloads use:
CivitAI's /api/v1/models/{id} and /api/download/models/{version}; HuggingFace's
/{repo}/resolve/{revision}/{file}, which redirects LFS files to a CDN URL with X-Linked-Size/-Etag."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHubs:
    def __init__(self, payload: bytes, civitai_sha256: str | None = None) -> None:
        self.payload = payload
        self.sha256 = hashlib.sha256(payload).hexdigest()
        self.civitai_sha256 = civitai_sha256 or self.sha256
        self.auth: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None,
                       head: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, status: int, data: Any) -> None:
                self._reply(status, json.dumps(data).encode(), "application/json")

            def _route(self, head: bool) -> None:
                owner.auth.append(self.headers.get("Authorization"))
                path = self.path.split("?")[0]
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                if path == "/api/v1/models/4242":
                    return self._json(200, {"id": 4242, "name": "Tiny Detail", "type": "LORA", "modelVersions": [
                        {"id": 777, "name": "v2", "baseModel": "Flux.2 Klein", "downloadUrl": f"{base}/api/download/models/777",
                         "files": [{"name": "tiny_detail_v2.safetensors", "sizeKB": len(owner.payload) / 1024,
                                    "hashes": {"SHA256": owner.civitai_sha256.upper()}, "primary": True,
                                    "downloadUrl": f"{base}/api/download/models/777"}]},
                        {"id": 700, "name": "v1", "baseModel": "Flux.2 Klein", "files": []}]})
                if path == "/api/v1/models/4343":  # publishes a hash the file does not have
                    return self._json(200, {"id": 4343, "name": "Tampered", "type": "LORA", "modelVersions": [
                        {"id": 778, "name": "v1", "files": [{"name": "tampered.safetensors", "primary": True,
                                                              "sizeKB": len(owner.payload) / 1024,
                                                              "hashes": {"SHA256": "0" * 64},
                                                              "downloadUrl": f"{base}/api/download/models/777"}]}]})
                if path.startswith("/api/v1/models/"):
                    return self._json(404, {"error": "No model with id"})
                if path == "/api/download/models/777":
                    return self._reply(200, owner.payload, "application/octet-stream",
                                       {"Content-Disposition": 'attachment; filename="tiny_detail_v2.safetensors"'}, head)
                if path == "/tiny-org/tiny-repo/resolve/main/loras/tiny.safetensors":
                    return self._reply(302, b"", "text/plain", {
                        "Location": f"{base}/cdn/blob", "X-Linked-Size": str(len(owner.payload)),
                        "X-Linked-Etag": f'"{owner.sha256}"'}, head)
                if path == "/cdn/blob":
                    return self._reply(200, owner.payload, "application/octet-stream", head=head)
                if path == "/plain/model.gguf":
                    return self._reply(200, owner.payload, "application/octet-stream", head=head)
                return self._json(404, {"error": "Entry not found"})

            def do_GET(self) -> None:  # noqa: N802
                self._route(head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                self._route(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHubs":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
