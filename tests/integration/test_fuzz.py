"""Schemathesis fuzzes every operation of the real server's OpenAPI document, with the tiny model loaded.

Each operation is one pytest sub-test with a bounded number of generated requests, valid and invalid ones
(`SDCPP_FUZZ_EXAMPLES`, default 25; `SDCPP_FUZZ_SEED` picks another run). Every response must be no 5xx, have
a documented status code and content type, a body matching the documented schema and documented headers.

Traffic stays on 127.0.0.1: the server's Ollama, CivitAI and HuggingFace base URLs point at the local servers
of tests/fake_ollama.py and tests/fake_hubs.py (their real protocols), restored before every case; any other URL
a request names (a download URL, a base URL set with PUT /ollama/settings) goes through a proxy on a closed local
port, so such a call fails at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import TINY_LOAD
from tests.fake_hubs import FakeHubs
from tests.fake_ollama import FakeOllama
from tests.support import ServerProcess, free_port, sd_processes

pytestmark = pytest.mark.integration

UPSCALER_LOAD = {"model_name": "esrgan_tiny_x4.safetensors"}
LLM_SETTINGS: dict[str, Any] = {"enabled": True, "model": "llama3.2", "timeout_seconds": 10}  # + base_url

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": int(os.environ.get("SDCPP_FUZZ_SEED", "20240601")),
        "suppress-health-check": ["all"],  # slow, filtered or large data is expected here, not a problem
        "request-timeout": 20,  # a request that hangs fails its case instead of stalling the suite
        "generation": {
            "max-examples": int(os.environ.get("SDCPP_FUZZ_EXAMPLES", "25")),  # per operation
            "mode": "all",  # valid and invalid requests: invalid ones must get a documented 4xx, never a 5xx
            "no-shrink": True,  # each shrink step is more requests; the first failing case is reported as found
            "database": "none",  # no .hypothesis/ folder and no replay of earlier failures: the seed decides
        },
        "phases": {
            # The coverage phase sends every boundary value the schema allows, whatever max-examples says; the
            # examples and fuzzing phases stay on. Stateful runs are a separate API (not parametrize()).
            "coverage": {"enabled": False},
            "stateful": {"enabled": False},
        },
    }
)

# Generation jobs really run on the resident sd-server. The server's own [limits] (below) turn larger sizes,
# steps and batches into a 400; a field left out would mean the server's default (512x512, 20 steps, 33
# frames, over those limits), so it is sent small instead. Upscale passes and frames have no server limit.
DEFAULTS = {"width": 64, "height": 64, "steps": 2}
LIMITS = "[limits]\nmax_width = 128\nmax_height = 128\nmax_steps = 4\nmax_batch_count = 2\n"
BOUNDS = {"upscale_repeats": 1, "video_frames": 5}  # field: largest value sent as generated (else that value)
GENERATION = {"/txt2img": DEFAULTS, "/img2img": DEFAULTS, "/txt2vid": {**DEFAULTS, "video_frames": 3}}


def bound_generation(case: Any) -> None:
    defaults = GENERATION.get(case.operation.path)
    if defaults is None or not isinstance(case.body, dict):
        return
    for field, value in defaults.items():
        case.body.setdefault(field, value)
    for field, largest in BOUNDS.items():
        sent = case.body.get(field)
        if isinstance(sent, (int, float)) and not isinstance(sent, bool) and sent > largest:
            case.body[field] = largest


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeOllama, FakeHubs]]:
    with FakeOllama() as ollama, FakeHubs(b"fuzzed download") as hubs:
        yield ollama, hubs


@pytest.fixture(scope="module")
def server(
    own_models_dir: Path, tmp_path_factory: pytest.TempPathFactory, upstreams: tuple[FakeOllama, FakeHubs]
) -> Iterator[ServerProcess]:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ollama, hubs = upstreams
    LLM_SETTINGS["base_url"] = ollama.url
    work = tmp_path_factory.mktemp("server-fuzz")
    config = work / "config.toml"
    config.write_text(
        f'[ollama]\nbase_url = "{ollama.url}"\n[assistant]\nbase_url = "{ollama.url}"\n'
        f'[downloads]\nhuggingface_url = "{hubs.url}"\ncivitai_url = "{hubs.url}"\n' + LIMITS
    )
    proxies = {
        name: dead for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    }
    local = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    process = ServerProcess(
        own_models_dir, work / "output", work / "server.log", "--config", str(config), env={**proxies, **local}
    ).start()
    try:
        yield process
    finally:
        binaries = sd_processes(process, "sd-server") + sd_processes(process, "sd-cli")  # in their own sessions
        try:
            process.stop()
        except subprocess.TimeoutExpired:  # a server stuck in a computation ignores SIGTERM
            process.kill()
            for pid in binaries:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


SENT: list[str] = []  # the last request sent, as a curl command


def ensure_loaded(server: ServerProcess) -> None:
    """The tiny model and the upscaler are loaded before every case, whatever the cases before it did. A server
    that stopped answering is killed and started again (on the same folders), so that one hang fails only the
    operation that caused it, and that operation's case names the request."""
    try:
        health = httpx.get(server.url + "/health", timeout=10).json()
    except httpx.HTTPError as exc:
        server.kill()  # SIGKILL: a server stuck in a computation never gets to handle SIGTERM
        server.start()
        load(server, {"model_loaded": False, "upscaler_loaded": False})
        pytest.fail(
            f"the server stopped answering ({exc!r}; restarted) after this request:\n"
            f"    {SENT[0] if SENT else '(none)'}",
            pytrace=False,
        )
    load(server, health)


def load(server: ServerProcess, health: dict[str, Any]) -> None:
    for feature in ("ollama", "assistant"):  # a case may have pointed them elsewhere or disabled them
        response = httpx.put(f"{server.url}/{feature}/settings", json=LLM_SETTINGS, timeout=10)
        assert response.status_code == 200, response.text
    if not health["model_loaded"]:
        response = httpx.post(server.url + "/models/load", json=TINY_LOAD, timeout=60)
        assert response.status_code == 200, response.text
    if not health["upscaler_loaded"]:
        response = httpx.post(server.url + "/upscaler/load", json=UPSCALER_LOAD, timeout=60)
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def api_schema(server: ServerProcess) -> Any:
    ensure_loaded(server)
    # GET /events is an endless stream (tests/integration/test_events.py covers it): no case would ever end.
    return schemathesis.openapi.from_url(server.url + "/schema/openapi.json", config=CONFIG).exclude(path="/events")


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's from_fixture() reads and rewrites `Node._nodeid`, which pytest 9.2 no longer has
    (node ids are structured now): give it a plain attribute to use. Results still come out as one pytest
    sub-test per operation, named after it."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schemathesis.check
def no_server_error_beyond_contract(ctx: Any, response: Any, case: Any) -> bool | None:
    """`not_a_server_error`, except the one 500 the API contract prescribes (the contract API.md, Load Model):
    `{"error": "Internal error: Model not found: NAME"}` for a model file that does not exist."""
    if case.operation.label == "POST /models/load" and response.status_code == 500:
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, str) and error.startswith("Internal error: Model not found: "):
            return None
    return not_a_server_error(ctx, response, case)


# Not the defaults: negative_data_rejection / positive_data_acceptance would demand a 4xx for every request the
# schema calls invalid (and a 2xx for every valid one), but this API documents that it ignores unknown fields and
# refuses valid-looking requests for reasons the schema cannot say (no such model, size not a multiple of 16);
# ignored_auth and the other auth checks do not apply (no authentication); use_after_free / ensure_resource_*
# need stateful runs.
CHECKS = [
    no_server_error_beyond_contract,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@schema.parametrize()
def test_every_operation_answers_as_documented(case: Any, server: ServerProcess) -> None:
    ensure_loaded(server)
    bound_generation(case)
    SENT[:] = [case.as_curl_command()]
    case.call_and_validate(checks=CHECKS)


def test_server_is_still_healthy_after_fuzzing(server: ServerProcess) -> None:
    assert server.process is not None and server.process.poll() is None
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
