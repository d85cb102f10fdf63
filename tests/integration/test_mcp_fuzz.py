"""The MCP face fuzzed as test_fuzz fuzzes the REST one: random arguments for each tool, drawn from the input schema
the server itself lists (valid values, values at and past the bounds, wrong types, hostile strings, deep nesting),
sent through the `mcp` package's own client to the real server. No call may end in an internal error or a protocol
failure; every refusal is a tool error (`isError`) whose text says what was wrong, and the server stays healthy.

Deterministic: each case is drawn from random.Random(case number), and a failure names the arguments sent."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import PARSE_ERROR
from PIL import Image

from tests.conftest import TINY_LOAD
from tests.integration.test_mcp import mcp_session
from tests.support import ServerProcess, running_server_with_config

pytestmark = pytest.mark.integration
CASES_PER_TOOL = 80
# Jobs stay tiny: larger sizes, steps and batches are 400s from the server's own limits.
LIMITS = "[limits]\nmax_width = 128\nmax_height = 128\nmax_steps = 4\nmax_batch_count = 2\n"


def _png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 140, 200)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


PNG = _png()
STRINGS = ["", "x", "a cat", "../../etc/passwd", "é" * 3, "x" * 300, "data:image/png;base64,AAAA", "\x00", " "]
HOSTILE: list[object] = [None, -1, 0, 2**70, -(2**70), 1e308, 5e-324, "\x00nul", "x" * 5000, [], {}, True, "NaN"]


def deep(levels: int) -> object:
    """Nested {"a": [...]} `levels` times: the server refuses more than 32 levels; the mcp client itself cannot
    serialize much over 100 (pydantic's depth limit), so that is the deepest sent."""
    value: object = "bottom"
    for _ in range(levels):
        value = {"a": [value]}
    return value


def draw(schema: dict[str, Any], defs: dict[str, Any], rng: random.Random, valid: bool, depth: int = 0) -> object:
    """A value for `schema`: within its bounds when `valid`, else at times at or past them."""
    if "$ref" in schema:
        return draw(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, rng, valid, depth)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "anyOf" in schema:
        return draw(rng.choice(schema["anyOf"]), defs, rng, valid, depth)
    kind = schema.get("type", rng.choice(["string", "integer", "object"]))
    if isinstance(kind, list):
        kind = rng.choice(kind)
    if kind == "integer":
        low, high = schema.get("minimum", -(2**31)), schema.get("maximum", 2**31)
        if valid:
            return rng.randint(low, min(high, low + 4))
        return rng.choice([low, high, low - 1, high + 1, rng.randint(low, min(high, low + 10)), 0])
    if kind == "number":
        low, high = schema.get("minimum", -1e6), schema.get("maximum", 1e6)
        if valid:
            return rng.uniform(low, min(high, low + 1.0))
        return rng.choice([low, high, low - 0.5, high + 0.5, rng.uniform(low, high), 0.0])
    if kind == "string":
        return rng.choice(STRINGS[:3] if valid else STRINGS)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "array":
        count = rng.randint(0, 3 if depth < 3 else 0)
        return [draw(schema.get("items", {}), defs, rng, valid, depth + 1) for _ in range(count)]
    properties = schema.get("properties", {})
    share = 0.05 if valid else 0.25  # a valid case sets few fields, so that some jobs really run
    return {
        name: draw(sub, defs, rng, valid, depth + 1)
        for name, sub in properties.items()
        if depth < 3 and (name in schema.get("required", []) or rng.random() < share)
    }


def arguments_for(name: str, schema: dict[str, Any], case: int) -> dict[str, object]:
    rng = random.Random(case)
    valid = case % 2 == 0  # even cases stay within the schema, odd ones are hostile
    arguments = draw(schema, schema.get("$defs", {}), rng, valid)
    assert isinstance(arguments, dict)
    for key in list(arguments):  # some fields get a hostile value or the wrong type
        if not valid and rng.random() < 0.2:
            arguments[key] = rng.choice([*HOSTILE, deep(rng.choice([5, 40, 100]))])
    if not valid and rng.random() < 0.1:
        arguments[rng.choice(["nonsense", "prompt", "type", "action"])] = deep(100)
    if name == "generate":
        if valid:  # mostly the type every model runs, with the image each type needs
            arguments["type"] = "txt2img" if rng.random() < 0.5 else arguments["type"]
            arguments.setdefault({"upscale": "image_base64"}.get(str(arguments["type"]), "init_image_base64"), PNG)
        arguments.setdefault("prompt", "a fuzzed cat")
        for field, small in (("width", 64), ("height", 64), ("steps", 2)):
            arguments.setdefault(field, small)
        if arguments.get("wait") is True:
            arguments["timeout_seconds"] = 1.0  # a waiting call returns soon, whatever the queue holds
    return arguments


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server_with_config(tiny_models_dir, tmp_path_factory.mktemp("mcp-fuzz"), LIMITS)


@pytest.mark.parametrize("tool", ["generate", "job", "model"])  # model last: it may unload the model
async def test_random_tool_arguments_never_end_in_an_internal_error(server: ServerProcess, tool: str) -> None:
    httpx.post(server.url + "/models/load", json=TINY_LOAD, timeout=300).raise_for_status()
    failures: list[str] = []
    outcomes = {"ok": 0, "tool error": 0, "parse error": 0}
    async with mcp_session(server) as session:
        schema = next(t for t in (await session.list_tools()).tools if t.name == tool).input_schema
        for case in range(CASES_PER_TOOL):
            arguments = arguments_for(tool, schema, case)
            sent = json.dumps(arguments)[:300]
            try:
                result = await session.call_tool(tool, arguments)
            except MCPError as exc:
                # JSON nested past the SDK's own JSON parser (about 100 levels, before our tool runs) is JSON-RPC's
                # parse error, which names the rule; the session goes on. Anything else (internal error) fails.
                if not (exc.code == PARSE_ERROR and "recursion limit" in exc.message):
                    failures.append(f"case {case}: MCPError {exc.code}: {exc.message} <- {sent}")
                outcomes["parse error"] += 1
                continue
            except Exception as exc:  # a protocol failure: the session would be gone for a real agent
                failures.append(f"case {case}: {type(exc).__name__}: {exc} <- {sent}")
                continue
            text = result.content[0].text if result.content and hasattr(result.content[0], "text") else ""
            if result.is_error and (text.startswith("Internal error") or not text):
                failures.append(f"case {case}: {text!r} <- {sent}")
            outcomes["tool error" if result.is_error else "ok"] += 1
    print(f"{tool}: {outcomes}")  # how the cases ended (pytest -s shows it)
    assert not failures, "\n".join(failures)
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200
    assert "Traceback" not in server.log_path.read_text(errors="replace")
