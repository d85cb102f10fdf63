"""A local HTTP server speaking the parts of CivitAI's and HuggingFace's protocols that downloads use:
CivitAI's /api/v1/models/{id} and /api/download/models/{version}; HuggingFace's
/{repo}/resolve/{revision}/{file}, which redirects LFS files to a CDN URL with X-Linked-Size/-Etag."""

from __future__ import annotations

import hashlib

from tests.fake_http import LocalHttpServer, QuietHandler


class FakeHubs(LocalHttpServer):
    def __init__(self, payload: bytes, civitai_sha256: str | None = None) -> None:
        self.payload = payload
        self.sha256 = hashlib.sha256(payload).hexdigest()
        self.civitai_sha256 = civitai_sha256 or self.sha256
        self.auth: list[str | None] = []
        self.internal_url = "http://127.0.0.1:9/internal/model.gguf"  # stands for a service on the box or its LAN
        owner = self

        class Handler(QuietHandler):
            def _route(self, head: bool) -> None:
                owner.auth.append(self.headers.get("Authorization"))
                path = self.path.split("?")[0]
                base = owner.url
                if path == "/api/v1/models/4242":
                    return self.reply_json(
                        200,
                        {
                            "id": 4242,
                            "name": "Tiny Detail",
                            "type": "LORA",
                            "modelVersions": [
                                {
                                    "id": 777,
                                    "name": "v2",
                                    "baseModel": "Flux.2 Klein",
                                    "downloadUrl": f"{base}/api/download/models/777",
                                    "files": [
                                        {
                                            "name": "tiny_detail_v2.safetensors",
                                            "sizeKB": len(owner.payload) / 1024,
                                            "hashes": {"SHA256": owner.civitai_sha256.upper()},
                                            "primary": True,
                                            "downloadUrl": f"{base}/api/download/models/777",
                                        }
                                    ],
                                },
                                {"id": 700, "name": "v1", "baseModel": "Flux.2 Klein", "files": []},
                            ],
                        },
                    )
                if path == "/api/v1/models/4343":  # publishes a hash the file does not have
                    return self.reply_json(
                        200,
                        {
                            "id": 4343,
                            "name": "Tampered",
                            "type": "LORA",
                            "modelVersions": [
                                {
                                    "id": 778,
                                    "name": "v1",
                                    "files": [
                                        {
                                            "name": "tampered.safetensors",
                                            "primary": True,
                                            "sizeKB": len(owner.payload) / 1024,
                                            "hashes": {"SHA256": "0" * 64},
                                            "downloadUrl": f"{base}/api/download/models/777",
                                        }
                                    ],
                                }
                            ],
                        },
                    )
                if path.startswith("/api/v1/models/"):
                    return self.reply_json(404, {"error": "No model with id"})
                if path == "/api/download/models/777":
                    return self.reply(
                        200,
                        owner.payload,
                        "application/octet-stream",
                        {"Content-Disposition": 'attachment; filename="tiny_detail_v2.safetensors"'},
                        head,
                    )
                if path == "/tiny-org/tiny-repo/resolve/main/loras/tiny.safetensors":
                    return self.reply(
                        302,
                        b"",
                        "text/plain",
                        {
                            "Location": f"{base}/cdn/blob",
                            "X-Linked-Size": str(len(owner.payload)),
                            "X-Linked-Etag": f'"{owner.sha256}"',
                        },
                        head,
                    )
                if path == "/tiny-org/tiny-repo/resolve/main/bad-size.safetensors":  # a header that is no number
                    return self.reply(
                        302, b"", "text/plain", {"Location": f"{base}/cdn/blob", "X-Linked-Size": "lots"}, head
                    )
                if path == "/cdn/blob":
                    return self.reply(200, owner.payload, "application/octet-stream", head=head)
                if path == "/dead/model.safetensors":  # the connection drops before any answer
                    self.close_connection = True
                    return None
                if path == "/bounce/model.gguf":  # redirects to a loopback address that is not a configured hub
                    return self.reply(302, b"", "text/plain", {"Location": owner.internal_url}, head)
                if path == "/plain/model.gguf":
                    return self.reply(200, owner.payload, "application/octet-stream", head=head)
                return self.reply_json(404, {"error": "Entry not found"})

            def do_GET(self) -> None:
                self._route(head=False)

            def do_HEAD(self) -> None:
                self._route(head=True)

        super().__init__(Handler)

    def server_config(self, civitai_token: str | None = None) -> str:
        """The `[downloads]` TOML table that points a server at these hubs."""
        token = f'civitai_token = "{civitai_token}"\n' if civitai_token else ""
        return f'[downloads]\nhuggingface_url = "{self.url}"\ncivitai_url = "{self.url}"\n{token}'
