"""JSON request bodies: large ones are decoded off the event loop, and failures read `{"error": "..."}`.

Handlers take typed `data:` parameters; Litestar reads the body through `JsonRequest.json()` and then converts
the decoded value into the handler's msgspec struct (validation errors become 400s in litestar_app.errors).
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
from litestar import Request
from litestar.exceptions import SerializationException
from litestar.serialization import decode_json
from litestar.types import Empty

from core.errors import BadRequest
from core.request_types import check_json_numbers, check_values

OFF_LOOP_BYTES = 1024 * 1024  # base64 images make bodies of megabytes: parse those in a worker thread


class JsonRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        if self._json is not Empty:
            return self._json
        if (cached := self._connection_state.json) is not Empty:
            self._json = cached
            return cached
        body = await self.body()
        if not body.strip():
            raise BadRequest("request body is required (JSON object)")
        type_decoders = self.route_handler.resolve_type_decoders()

        def decode() -> Any:
            try:
                value = decode_json(body, type_decoders=type_decoders)
            except SerializationException:
                check_json_numbers(body)  # 1e999, NaN: the words every face uses, naming the field
                raise
            check_values(value)  # NUL, non-finite, nesting: the checks every face's values go through
            return value

        try:
            value = await anyio.to_thread.run_sync(decode) if len(body) > OFF_LOOP_BYTES else decode()
        except UnicodeDecodeError:
            raise BadRequest("request body is not valid JSON: it is not valid UTF-8") from None
        except (SerializationException, msgspec.DecodeError) as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None
        except RecursionError:  # msgspec's bound on nesting: no request of ours nests more than a few levels
            raise BadRequest("request body: JSON nested too deeply") from None
        self._json = self._connection_state.json = value
        return value


async def check_query(request: Request) -> None:
    """Query parameters go through the rule every other value does (no NUL characters); a `before_request`
    hook of the app, so a GET's `?search=` is judged as the MCP job tool's `search` is. Async on purpose: Litestar
    runs a sync hook in a worker thread, and meanwhile a client that half-closes after an oversized body is taken
    for gone, so it got no 413 at all."""
    for key, value in request.query_params.multi_items():
        check_values(value, key)
        check_values(key, key)
