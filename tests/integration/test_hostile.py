"""Hostile input, one table per face, against the real server (tiny model loaded, API keys on): each request and
the 4xx it must get, with the field or rule the error names; no request reaches a 500 (the server logs every
unhandled error, and the log must have none). The same rules hold on every face because every face goes through
one validation path (core/request_types.py: check_values, convert_request): NUL characters, non-finite numbers,
deep nesting, empty images, over-long names, LoRA tags judged by their final path (a symlink in loras/ to a file
elsewhere is refused). Sessions: /login?next= keeps to this site, and logout or a key change revokes a cookie."""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import ClientSession
from PIL import Image

from litestar_app.mcp_tools import GENERATE_SCHEMA, JOB_SCHEMA, MODEL_SCHEMA
from tests.conftest import TINY_LOAD
from tests.fake_hubs import FakeHubs
from tests.integration.test_mcp import mcp_session as keyed_mcp_session
from tests.support import ServerProcess, wait_for_job

pytestmark = pytest.mark.integration
KEY = "hostile-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DEEP = "[" * 50_000 + "]" * 50_000  # past the JSON parsers' own bound
NESTED = json.loads("[" * 40 + "]" * 40)  # within the parsers' bound, past ours (32 levels)
LONG = "x" * 300  # longer than a file name may be (255 bytes)
NEAR_LIMIT = "y" * 240  # with ".safetensors" a name the file system takes, but not the names derived from it
SMALL = {"width": 64, "height": 64, "steps": 1}
# Jobs the fuzzing below gets accepted stay tiny (a size left out means the model's default, over these limits).
LIMITS = "[limits]\nmax_width = 64\nmax_height = 64\nmax_steps = 20\nmax_batch_count = 1\n"


def png(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG_B64 = base64.b64encode(png()).decode()


@pytest.fixture(scope="module")
def hubs() -> Iterator[FakeHubs]:
    with FakeHubs(b"\0" * 1024) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(own_models_dir: Path, tmp_path_factory: pytest.TempPathFactory, hubs: FakeHubs) -> Iterator[ServerProcess]:
    """Keys on, the fake hubs as HuggingFace, and loras/escape.safetensors a symlink to a real LoRA outside."""
    outside = tmp_path_factory.mktemp("outside-loras") / "elsewhere.safetensors"
    shutil.copy(own_models_dir / "loras" / "tiny_lora.safetensors", outside)
    (own_models_dir / "loras" / "escape.safetensors").symlink_to(outside)
    shutil.copy(
        own_models_dir / "loras" / "tiny_lora.safetensors", own_models_dir / "loras" / f"{NEAR_LIMIT}.safetensors"
    )
    work = tmp_path_factory.mktemp("hostile")
    (work / "config.toml").write_text(hubs.server_config() + LIMITS)
    process = ServerProcess(
        own_models_dir,
        work / "output",
        work / "server.log",
        "--config",
        str(work / "config.toml"),
        env={"SDCPP_RESTAPI_API_KEYS": KEY},
    ).start()
    try:
        httpx.post(process.url + "/models/load", json=TINY_LOAD, headers=AUTH, timeout=60).raise_for_status()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        yield client


def no_server_errors(server: ServerProcess) -> None:
    log = server.log_path.read_text()
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]


# ------------------------------------------------------------------------------------ REST and A1111


def raw_json(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"Content-Type": "application/json"}}


REST_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    # method, path, request arguments, status, what the error must say
    ("POST", "/txt2img", raw_json(DEEP), 400, "nested too deeply"),
    ("POST", "/txt2img", raw_json('{"prompt": "x", "ref_images": ' + DEEP + "}"), 400, "nested too deeply"),
    ("POST", "/txt2img", {"json": {"prompt": "x", "extra": NESTED}}, 400, "nested too deeply"),
    ("POST", "/txt2img", {"json": {"prompt": "a\0--model /etc/passwd"}}, 400, "prompt: strings must not contain NUL"),
    ("POST", "/txt2img", raw_json('{"prompt": "x", "cfg_scale": 1e999}'), 400, "cfg_scale: must be a finite number"),
    ("POST", "/txt2img", raw_json('{"prompt": "x", "cfg_scale": NaN}'), 400, "cfg_scale: must be a finite number"),
    ("POST", "/txt2img", {"json": {"prompt": "x", "cfg_scale": 1e308, **SMALL}}, 400, "cfg_scale: must be a finite number within"),
    ("POST", "/txt2img", {"json": {"prompt": "x", "custom_sigmas": [1.0, -1e300], **SMALL}}, 400, "custom_sigmas[1]: must be a finite number"),
    ("PUT", "/preview/settings", {"json": {"interval": 1e308}}, 400, "interval: must be a finite number"),
    ("PUT", "/ollama/settings", {"json": {"base_url": "http://[::1"}}, 400, "base_url is not a valid URL"),
    ("PUT", "/assistant/settings", {"json": {"base_url": "http://ollama.example:99999"}}, 400, "base_url is not a valid URL"),
    ("POST", "/txt2img", {"json": {"prompt": f"x <lora:{LONG}:1>", **SMALL}}, 400, "255 bytes"),
    ("POST", "/txt2img", {"json": {"prompt": "x <lora:escape:1>", **SMALL}}, 400, "resolves outside its folder"),
    ("POST", "/txt2img", {"json": {"prompt": "x <lora:tiny_lora:nan>", **SMALL}}, 400, "not a finite number"),
    ("POST", "/txt2img", {"json": {"prompt": "x", "control_image_base64": "", **SMALL}}, 400, "control_image_base64"),
    ("POST", "/txt2img", {"json": {"prompt": "x", "ref_images": [""], **SMALL}}, 400, "ref_images[0]: is empty"),
    ("POST", "/img2img", {"json": {"prompt": "x", "init_image_base64": "", **SMALL}}, 400, "init_image_base64"),
    ("POST", "/img2img", {"json": {"prompt": "x", "init_image_base64": "data:image/png;base64,", **SMALL}}, 400, "init_image_base64: is empty"),
    ("POST", "/img2img", {"json": {"prompt": "x", "init_image_base64": PNG_B64, "mask_image_base64": "", **SMALL}}, 400, "mask_image_base64: is empty"),
    ("POST", "/txt2img", {"json": {"prompt": "x <lora:tiny_lora:1e300>", **SMALL}}, 400, "not a finite number"),
    ("GET", "/queue?search=%00", {}, 400, "search: strings must not contain NUL"),
    ("GET", "/models?search=a%00", {}, 400, "search: strings must not contain NUL"),
    ("GET", f"/output/{LONG}", {}, 400, "255 bytes"),
    ("GET", f"/thumb/{LONG}.png", {}, 400, "255 bytes"),
    ("GET", f"/models/hash/lora/{LONG}", {}, 400, "255 bytes"),
    ("POST", "/models/load", {"json": {"model_name": LONG, "model_type": "diffusion"}}, 400, "model_name"),
    ("POST", "/models/download", {"json": {"url": "http://[::1", "model_type": "lora"}}, 400, "url is not a valid URL"),
    ("POST", "/txt2img", {"json": {"prompt": "x", "callback_url": "http://[::1", **SMALL}}, 400, "callback_url is not a valid URL"),
    ("POST", "/txt2img", {"json": {"prompt": "x", "callback_url": "http://169.254.169.254/", **SMALL}}, 400, "callback_url: 169.254.169.254 is 169.254.169.254, a loopback, private"),
    ("GET", "/events?since=1%00", {}, 400, "since: strings must not contain NUL"),
    ("GET", "/events?since=-1", {}, 400, "since: expected the integer seq of the last event received"),
    ("POST", "/models/download", {"json": {"url": "http://example.com:99999999/m.safetensors", "model_type": "lora"}}, 400, "url is not a valid URL"),
    ("POST", "/models/download", {"json": {"url": "http:///m.safetensors", "model_type": "lora"}}, 400, "names no host"),
    ("POST", "/models/download", {"json": {"url": "https://example.com/m.safetensors", "model_type": "lora", "filename": LONG + ".safetensors"}}, 400, "255 bytes"),
    ("GET", "/models/huggingface?repo_id=tiny-org/tiny-repo&filename=bad-size.safetensors", {}, 502, "not a number"),
    ("POST", "/models/download", {"json": {"url": "https://example.com/m.safetensors", "model_type": "lora", "filename": NEAR_LIMIT + ".safetensors"}}, 400, "filename: at most 249 bytes"),
    ("POST", "/convert", {"json": {"input_path": f"loras/{NEAR_LIMIT}.safetensors", "output_type": "q8_0"}}, 400, "output_path: the file name"),
    # OpenAI's JSON face (the openai client will not send these numbers)
    ("POST", "/v1/images/generations", raw_json('{"prompt": "x", "quality": Infinity}'), 400, "quality: must be a finite number"),
    ("POST", "/v1/images/generations", raw_json('{"prompt": "x", "n": 1e999}'), 400, "n: must be a finite number"),
    # A1111's face: the same rules, in A1111's error shape
    ("POST", "/sdapi/v1/txt2img", {"json": {"prompt": "a\0b"}}, 400, "prompt: strings must not contain NUL"),
    ("POST", "/sdapi/v1/txt2img", raw_json('{"prompt": "x", "cfg_scale": 1e999}'), 400, "cfg_scale: must be a finite number"),
    ("POST", "/sdapi/v1/txt2img", {"json": {"prompt": "x <lora:escape:1>", **SMALL}}, 400, "resolves outside"),
    ("POST", "/sdapi/v1/img2img", {"json": {"prompt": "x", "init_images": [PNG_B64], "denoising_strength": 1e308, **SMALL}}, 400, "denoising_strength: must be a finite number"),
    ("POST", "/sdapi/v1/txt2img", {"json": {"prompt": "x", "alwayson_scripts": NESTED}}, 400, "nested too deeply"),
    ("POST", "/sdapi/v1/img2img", {"json": {"prompt": "x", "init_images": [PNG_B64], "mask": "=", **SMALL}}, 400, "mask"),
    ("POST", "/sdapi/v1/img2img", {"json": {"prompt": "x", "init_images": ["data:image/png;base64,"], **SMALL}}, 400, "is empty"),
    ("POST", "/sdapi/v1/img2img", {"json": {"prompt": "x", "init_images": [""], **SMALL}}, 400, "init_images[0]: is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "arguments", "status", "says"), REST_CASES, ids=lambda v: str(v)[:40])
def test_rest_and_a1111_refuse_hostile_input(
    server: ServerProcess, http: httpx.Client, method: str, path: str, arguments: dict[str, Any], status: int, says: str
) -> None:
    response = http.request(method, path, **arguments)
    body = response.json()
    message = body.get("detail") if path.startswith("/sdapi/") else body.get("error")
    assert response.status_code == status and says in str(message), (response.status_code, response.text[:300])
    no_server_errors(server)


def test_huge_ranges_are_416_or_206_not_500(server: ServerProcess, http: httpx.Client) -> None:
    job = http.post("/txt2img", json={"prompt": "x", **SMALL})
    output = wait_for_job(http, job.json()["job_id"])["outputs"][0]
    huge = "9" * 5000  # more digits than Python converts to an int by default
    assert http.get(f"/output/{output}", headers={"Range": f"bytes={huge}-"}).status_code == 416
    assert http.get(f"/output/{output}", headers={"Range": f"bytes=0-{huge}"}).status_code == 206
    assert http.get(f"/output/{output}", headers={"Range": f"bytes=-{huge}"}).status_code == 206
    no_server_errors(server)


# ------------------------------------------------------------------------------------ OpenAI (multipart)


@pytest.fixture(scope="module")
def openai_client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


OPENAI_CASES: list[tuple[str, dict[str, Any], str]] = [
    # images.edit (multipart) or images.generate (JSON) arguments, what the error must say
    ("edit", {"prompt": "a\0b"}, "prompt: strings must not contain NUL"),
    ("edit", {"prompt": "x", "image": ("empty.png", b"", "image/png")}, "image: is empty"),
    ("edit", {"prompt": "x", "mask": ("empty.png", b"", "image/png")}, "mask: is empty"),
    ("edit", {"prompt": "x <lora:escape:1>"}, "resolves outside"),
    ("edit", {"prompt": f"x <lora:{LONG}:1>"}, "255 bytes"),
    (
        "edit",
        {"prompt": 'x <sd_cpp_extra_args>{"cfg_scale": 1e999}</sd_cpp_extra_args>'},
        "cfg_scale: must be a finite",
    ),
    ("edit", {"prompt": 'x <sd_cpp_extra_args>{"cfg_scale": </sd_cpp_extra_args>'}, "invalid sd_cpp_extra_args"),
    ("edit", {"prompt": "x", "extra_body": {"n": "1e999"}}, "n: "),
    (
        "edit",
        {"prompt": 'x <sd_cpp_extra_args>{"sample_params": {"guidance": {"txt_cfg": 1e308}}}</sd_cpp_extra_args>'},
        "cfg_scale: must be a finite",
    ),
    ("edit", {"prompt": "x", "extra_body": {"user": "a\0b"}}, "user: strings must not contain NUL"),
    ("generate", {"prompt": "a\0b"}, "prompt: strings must not contain NUL"),
    ("generate", {"prompt": "x <lora:escape:1>"}, "resolves outside"),
    ("generate", {"prompt": "x", "extra_body": {"user": NESTED}}, "nested too deeply"),
]


@pytest.mark.parametrize(("call", "arguments", "says"), OPENAI_CASES, ids=lambda v: str(v)[:40])
def test_openai_refuses_hostile_input(
    server: ServerProcess, openai_client: openai.OpenAI, call: str, arguments: dict[str, Any], says: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        if call == "edit":
            openai_client.images.edit(**{"image": ("in.png", png(), "image/png"), "size": "64x64", **arguments})
        else:
            openai_client.images.generate(**{"size": "64x64", **arguments})
    assert refused.value.status_code == 400 and says in refused.value.message, refused.value.message
    no_server_errors(server)


def multipart(prompt_part: bytes) -> bytes:
    return (
        b"--XX\r\n" + prompt_part + b"\r\n--XX\r\n"
        b'Content-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        + png()
        + b"\r\n--XX--\r\n"
    )


@pytest.mark.parametrize(
    "prompt_part",
    [
        b'Content-Disposition: form-data; name="prompt"\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\nx',
        b'Content-Disposition: form-data; name="prompt"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nx\xff\xfe',
        b'Content-Disposition: form-data; name="prompt"\r\n\r\nx\xff\xfe',
    ],
    ids=["unknown-charset", "invalid-utf8", "invalid-utf8-no-charset"],
)
def test_openai_multipart_text_that_is_not_utf8_is_400(
    server: ServerProcess, http: httpx.Client, prompt_part: bytes
) -> None:
    response = http.post(
        "/v1/images/edits",
        content=multipart(prompt_part),
        headers={"Content-Type": "multipart/form-data; boundary=XX"},
    )
    error = response.json()["error"]
    assert response.status_code == 400 and "not valid UTF-8" in error["message"], response.text[:300]
    assert error["type"] == "invalid_request_error"
    no_server_errors(server)


# ---------------------------------------------------------------------------------------------- MCP


def mcp_session(server: ServerProcess) -> AbstractAsyncContextManager[ClientSession]:
    return keyed_mcp_session(server, AUTH)


MCP_CASES: list[tuple[str, dict[str, Any], str]] = [
    # tool, arguments, what the tool error must say
    ("generate", {"type": "txt2img", "prompt": "a\0b", **SMALL}, "prompt: strings must not contain NUL"),
    ("generate", {"type": "txt2img", "prompt": "x", "sampler": NESTED, **SMALL}, "nested too deeply"),
    ("generate", {"type": "txt2img", "prompt": "x", "cfg_scale": 1e308, **SMALL}, "cfg_scale: must be a finite number"),
    ("generate", {"type": "txt2img", "prompt": "x <lora:escape:1>", **SMALL}, "resolves outside"),
    ("generate", {"type": "txt2img", "prompt": f"x <lora:{LONG}:1>", **SMALL}, "255 bytes"),
    ("generate", {"type": "txt2img", "prompt": "x", "control_image_base64": "", **SMALL}, "control_image_base64"),
    ("generate", {"type": "txt2img", "prompt": "x", "ref_images": [""], **SMALL}, "ref_images[0]: is empty"),
    ("generate", {"type": "img2img", "prompt": "x", "init_image_base64": "", **SMALL}, "init_image_base64"),
    (
        "generate",
        {"type": "txt2img", "prompt": "x", "callback_url": "http://192.168.1.1/", **SMALL},
        "callback_url: 192.168.1.1 is",
    ),
    ("job", {"action": "search", "search": "a\0"}, "search: strings must not contain NUL"),
    ("model", {"action": "load", "model_name": LONG, "model_type": "diffusion"}, "255 bytes"),
    ("model", {"action": "load", "model_name": "a\0b", "model_type": "diffusion"}, "NUL"),
]


@pytest.mark.parametrize(("tool", "arguments", "says"), MCP_CASES, ids=lambda v: str(v)[:40])
async def test_mcp_refuses_hostile_input(
    server: ServerProcess, tool: str, arguments: dict[str, Any], says: str
) -> None:
    async with mcp_session(server) as session:
        result = await session.call_tool(tool, arguments)
    assert result.is_error and says in result.content[0].text, result.content
    no_server_errors(server)


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"NaN", b"Infinity"])
def test_mcp_refuses_non_finite_numbers(server: ServerProcess, number: bytes) -> None:
    """The mcp client cannot send these (it writes them as null), so the JSON-RPC goes out by hand."""
    headers = {**AUTH, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        started = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
        session = {"mcp-session-id": started.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        client.post("/mcp", headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = (
            b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "generate", "arguments": '
            b'{"type": "txt2img", "prompt": "x", "width": 64, "height": 64, "steps": 1, "cfg_scale": ' + number + b"}}}"
        )
        response = client.post("/mcp", headers=session, content=call)
    data = next(line for line in response.text.splitlines() if line.startswith("data:"))
    result = json.loads(data.removeprefix("data:"))["result"]
    assert result["isError"] and "cfg_scale: must be a finite number" in result["content"][0]["text"], result
    no_server_errors(server)


def test_mcp_refuses_json_nested_thousands_deep(server: ServerProcess) -> None:
    headers = {**AUTH, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    call = (
        '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "generate", "arguments": '
        '{"type": "txt2img", "prompt": "x", "sampler": ' + DEEP + "}}}"
    )
    response = httpx.post(server.url + "/mcp", headers=headers, content=call.encode(), timeout=60)
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == -32700 and "recursion limit" in error["message"]  # JSON-RPC's parse error
    no_server_errors(server)


# ------------------------------------------------------------------------------------------ sessions

OFFSITE_NEXT = [
    "//evil.example/",
    "/\\evil.example",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "/%5Cevil.example",
    "/%09/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/output\r\nSet-Cookie: x=1",
    "https://evil.example/",
    "javascript:alert(1)",
    "evil.example",
    "http://[::1",
]


@pytest.mark.parametrize("target", OFFSITE_NEXT)
def test_login_next_stays_on_this_site(server: ServerProcess, target: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        page = browser.get("/login?next=" + quote(target, safe=""))
        assert page.status_code == 200 and 'name="next" value="/output"' in page.text, page.text[-300:]
        signed_in = browser.post("/login", data={"key": KEY, "next": target})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/output"
    no_server_errors(server)


def test_logout_revokes_the_cookie_everywhere(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as browser, httpx.Client(base_url=server.url) as thief:
        assert browser.post("/login", data={"key": KEY, "next": "/ui/?view=queue"}).headers["location"] == (
            "/ui/?view=queue"
        )
        first = browser.cookies["sdcpp_session"]
        assert browser.get("/queue").status_code == 200
        thief.cookies.set("sdcpp_session", first)
        assert thief.get("/queue").status_code == 200
        assert browser.post("/logout").status_code == 303
        assert thief.get("/queue").status_code == 401  # the copied cookie died with the logout
        unicode_next = browser.post("/login", data={"key": KEY, "next": "/output/日本.png"})
        assert unicode_next.status_code == 303 and unicode_next.headers["location"] == "/output/%E6%97%A5%E6%9C%AC.png"
        assert browser.cookies["sdcpp_session"] != first  # every sign-in gets a new id
        assert browser.get("/queue").status_code == 200


def test_a_key_change_revokes_cookies_and_a_restart_keeps_them(
    own_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("sessions")

    def started(key: str) -> ServerProcess:
        return ServerProcess(
            own_models_dir, work / "output", work / "server.log", env={"SDCPP_RESTAPI_API_KEYS": key}
        ).start()

    process = started(KEY)
    try:
        with httpx.Client(base_url=process.url, timeout=30) as browser:
            browser.post("/login", data={"key": KEY})
            cookie = browser.cookies["sdcpp_session"]
    finally:
        process.stop()
    for key, status in ((KEY, 200), ("a-new-key", 401)):
        process = started(key)
        try:
            assert httpx.get(process.url + "/queue", cookies={"sdcpp_session": cookie}).status_code == status, key
        finally:
            process.stop()


# --------------------------------------------------------------------------- OpenAI multipart fuzzing
# The edit endpoint's multipart body has no schema in the OpenAPI document, so schemathesis cannot fuzz it.

FORM_NAMES = ["prompt", "n", "size", "response_format", "output_format", "output_compression", "stream",
              "partial_images", "model", "quality", "background", "user", "image[]", "bogus"]  # fmt: skip
FORM_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["64x64", "auto", "0", "1", "-1", "1e999", "nan", "inf", "true", "\0", "١", "9" * 5000, LONG, "<lora:escape:1>"]
)
UPLOADS = st.sampled_from([png(), png((8, 8)), b"", b"GIF89a", b"\x89PNG\r\n\x1a\n" + b"\0" * 64]) | st.binary(
    max_size=64
)


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(
    fields=st.dictionaries(st.sampled_from(FORM_NAMES), FORM_TEXT, max_size=6), image=UPLOADS, mask=st.none() | UPLOADS
)
def test_openai_edit_multipart_never_fails_internally(
    server: ServerProcess, http: httpx.Client, fields: dict[str, str], image: bytes, mask: bytes | None
) -> None:
    files = {
        "image": ("in.png", image, "image/png"),
        **({"mask": ("mask.png", mask, "image/png")} if mask is not None else {}),
    }
    response = http.post("/v1/images/edits", data=fields, files=files)
    assert response.status_code < 500, (fields, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["error"]["message"], response.text[:300]


# --------------------------------------------------------------------------------------- MCP fuzzing
# Schemathesis fuzzes the REST, A1111 and OpenAI JSON routes from the OpenAPI document (tests/integration/
# test_fuzz.py); MCP has no such document, so its tools get arguments drawn from their input schemas here:
# known and unknown names, any JSON value (NUL characters, huge integers, deep lists). A tool must answer with a
# result or a tool error that says what was wrong, never an internal error.

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
    | st.sampled_from(["", "\0", "a\0b", LONG, "../../etc/passwd", "<lora:escape:1>", "data:image/png;base64,"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def tool_arguments(schema: dict[str, Any], fixed: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.sampled_from([*schema["properties"], "unknown_field"])
    return st.builds(
        lambda drawn, pinned: {**drawn, **pinned},
        st.dictionaries(names, JSON_VALUES, max_size=6),
        st.fixed_dictionaries(fixed),
    )


TOOL_CALLS = st.one_of(
    st.tuples(st.just("generate"), tool_arguments(GENERATE_SCHEMA, {"type": st.sampled_from(["txt2img", "img2img", "upscale", "bogus"])})),
    st.tuples(st.just("model"), tool_arguments(MODEL_SCHEMA, {"action": st.sampled_from(["list", "status", "load", "bogus"])})),
    st.tuples(st.just("job"), tool_arguments(JOB_SCHEMA, {"action": st.sampled_from(["status", "cancel", "list", "search"])})),
)  # fmt: skip


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(calls=st.lists(TOOL_CALLS, min_size=1, max_size=5))
def test_mcp_tools_never_fail_internally(server: ServerProcess, calls: list[tuple[str, dict[str, Any]]]) -> None:
    """Runs last in this module: it never unloads the model, but jobs it gets accepted are cancelled."""

    async def main() -> None:
        async with mcp_session(server) as session:
            for tool, arguments in calls:
                result = await session.call_tool(tool, arguments)
                text = result.content[0].text if result.content else ""
                if not result.is_error and tool == "generate":
                    await session.call_tool("job", {"action": "cancel", "job_id": json.loads(text)["job_id"]})
                internal = text.startswith("Internal error") and "Model not found" not in text  # the contract's
                assert not internal, (tool, arguments, text)

    anyio.run(main)
    log = server.log_path.read_text()
    assert "MCP tool" not in log and "unhandled error" not in log, log[-3000:]
