"""Security rules through the real server, each both ways: API keys (HTTP and both WebSocket endpoints), the
login cookie, cross-site and DNS-rebinding refusals, body types, limits, backpressure, exposure refusal."""

from __future__ import annotations

import base64
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.conftest import TINY_LOAD
from tests.support import REPO, ServerProcess, running_server_with_config, wait_for_job

pytestmark = pytest.mark.integration
KEY = "correct horse battery staple"
UI = "http://ui.example:3000"


def png_b64(size: tuple[int, int] = (64, 64)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def open_server(own_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No keys, loopback, and a small queue bound."""
    yield from running_server_with_config(
        own_models_dir, tmp_path_factory.mktemp("open"), "[limits]\nmax_pending = 2\n"
    )


@pytest.fixture(scope="module")
def keyed_server(own_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server_with_config(
        own_models_dir,
        tmp_path_factory.mktemp("keyed"),
        f'[cors]\nallow_origins = ["{UI}"]\n',
        env={"SDCPP_RESTAPI_API_KEYS": f"other-key, {KEY}"},
    )


# ------------------------------------------------------------------------------------ cross-site, types


def test_cross_site_simple_requests_are_refused_and_queue_nothing(open_server: ServerProcess) -> None:
    with httpx.Client(base_url=open_server.url, timeout=30) as http:
        before = http.get("/queue").json()["total_count"]
        for headers in (
            {"Content-Type": "text/plain", "Origin": "https://evil.example"},
            {"Content-Type": "application/json", "Origin": "https://evil.example"},
            {"Content-Type": "application/json", "Origin": "null"},
        ):
            refused = http.post("/txt2img", content=b'{"prompt": "x"}', headers=headers)
            assert refused.status_code == 403 and "cross-site" in refused.json()["error"], refused.text
        assert http.delete("/ollama/history", headers={"Origin": "https://evil.example"}).status_code == 403
        assert http.post("/models/unload", headers={"Origin": "https://evil.example"}).status_code == 403
        assert http.get("/queue").json()["total_count"] == before
        # The server's own pages and scripts (same origin) and curl (no Origin) keep working.
        same = http.put("/preview/settings", json={"interval": 2}, headers={"Origin": open_server.url})
        assert same.status_code == 200, same.text
        assert http.post("/models/unload").status_code == 200  # the contract's bodiless curl -X POST
        assert http.get("/health", headers={"Origin": "https://evil.example"}).status_code == 200  # reads pass


def test_a_body_must_be_declared_as_json(open_server: ServerProcess) -> None:
    with httpx.Client(base_url=open_server.url, timeout=30) as http:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            response = http.put("/preview/settings", content=b'{"interval": 3}', headers={"Content-Type": content_type})
            assert response.status_code == 415 and "application/json" in response.json()["error"], response.text
        missing = http.put("/preview/settings", content=b'{"interval": 3}', headers={"Content-Type": ""})
        assert missing.status_code == 415
        ok = http.put(
            "/preview/settings", content=b'{"interval": 3}', headers={"Content-Type": "application/json; charset=utf-8"}
        )
        assert ok.status_code == 200


def test_dns_rebinding_host_names_are_refused_on_loopback(open_server: ServerProcess) -> None:
    port = open_server.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}"):
        refused = httpx.get(open_server.url + "/health", headers={"Host": host})
        assert refused.status_code == 403 and "allowed_hosts" in refused.json()["error"], (host, refused.text)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1"):
        assert httpx.get(open_server.url + "/health", headers={"Host": host}).status_code == 200, host
    with pytest.raises(InvalidStatus) as refused_ws:
        connect(f"ws://127.0.0.1:{open_server.ws_port}", additional_headers={"Host": "evil.example"})
    assert refused_ws.value.response.status_code == 403


@pytest.mark.parametrize("endpoint", ["ws_port", "http_port"])
def test_websocket_handshakes_check_the_origin(open_server: ServerProcess, endpoint: str) -> None:
    url = f"ws://127.0.0.1:{open_server.ws_port}/" if endpoint == "ws_port" else f"ws://127.0.0.1:{open_server.port}/ws"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=Origin("https://evil.example"))
    assert refused.value.response.status_code == 403
    with connect(url) as ws:  # scripts send no Origin
        assert '"server_status"' in ws.recv(timeout=10)
    own = f"http://127.0.0.1:{open_server.ws_port if endpoint == 'ws_port' else open_server.port}"
    with connect(url, origin=Origin(own)) as ws:
        assert '"server_status"' in ws.recv(timeout=10)


# ---------------------------------------------------------------------------------------- limits


def test_hostile_values_are_refused_with_the_field_named(open_server: ServerProcess) -> None:
    with httpx.Client(base_url=open_server.url, timeout=60) as http:
        assert http.post("/models/load", json=TINY_LOAD).status_code == 200
        cases = [
            ({"prompt": "x", "seed": 2**80}, "seed"),
            ({"prompt": "x", "seed": -(2**70)}, "seed"),
            ({"prompt": "x", "clip_skip": 2**40}, "clip_skip"),
            ({"prompt": "x", "batch_count": 2**33}, "batch_count"),
            ({"prompt": "x" * (5 * 1024 * 1024)}, "prompt: at most"),
            ({"prompt": "x", "negative_prompt": "y" * 20_001}, "negative_prompt: at most"),
            ({"prompt": "a\u0000--model /etc/passwd"}, "NUL"),
            ({"prompt": "x", "ref_images": [png_b64((8, 8))] * 17}, "ref_images"),
            ({"prompt": "x", "custom_sigmas": [1.0] * 1001}, "custom_sigmas"),
            ({"prompt": "x", "pm_id_embed_path": "/etc/passwd"}, "pm_id_embed_path"),
            ({"prompt": "x", "pm_id_embed_path": "../../../etc/passwd"}, "pm_id_embed_path"),
        ]
        for body, fragment in cases:
            response = http.post("/txt2img", json=body)
            assert response.status_code == 400 and fragment in response.json()["error"], (fragment, response.text[:200])
        utf8 = http.post(
            "/txt2img", content=b'{"prompt": "a \xff\xfe cat"}', headers={"Content-Type": "application/json"}
        )
        assert utf8.status_code == 400 and "UTF-8" in utf8.json()["error"]
        truncated = "data:image/png;base64," + base64.b64encode(base64.b64decode(png_b64((128, 128)))[:200]).decode()
        response = http.post(
            "/img2img", json={"prompt": "x", "width": 64, "height": 64, "init_image_base64": truncated}
        )
        assert response.status_code == 400 and "init_image_base64" in response.json()["error"]
        assert (
            http.post(
                "/txt2img", json={"prompt": "x", "seed": 2**63 - 1, "width": 64, "height": 64, "steps": 1}
            ).status_code
            == 202
        )  # the largest int64 is fine
        wait_for_job(http, http.get("/queue").json()["items"][-1]["job_id"])


def test_deep_nesting_long_names_and_huge_ranges_are_4xx_not_500(open_server: ServerProcess) -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    long_name = "x" * 300
    with httpx.Client(base_url=open_server.url, timeout=60) as http:
        assert http.post("/models/load", json=TINY_LOAD).status_code == 200
        for body in (deep, b'{"prompt": "x", "ref_images": ' + deep + b"}"):
            nested = http.post("/txt2img", content=body, headers={"Content-Type": "application/json"})
            assert nested.status_code == 400 and "nested too deeply" in nested.json()["error"], nested.text[:200]
        extra = "<sd_cpp_extra_args>" + "[" * 50_000 + "]" * 50_000 + "</sd_cpp_extra_args>"
        embedded = http.post("/sdapi/v1/txt2img", json={"prompt": "x " + extra})
        assert embedded.status_code == 400 and "nested too deeply" in embedded.json()["detail"], embedded.text[
            :200
        ]  # A1111 shape
        for method, path, payload in (
            ("GET", f"/output/{long_name}", None),
            ("GET", f"/thumb/{long_name}.png", None),
            ("GET", f"/models/hash/lora/{long_name}", None),
            ("POST", "/models/load", {"model_name": long_name, "model_type": "diffusion"}),
            ("POST", "/txt2img", {"prompt": f"a cat <lora:{long_name}:1>"}),
        ):
            response = http.request(method, path, json=payload)
            assert 400 <= response.status_code < 500 and "255 bytes" in response.text, (path, response.text[:200])
        job = http.post("/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 1})
        output = wait_for_job(http, job.json()["job_id"])["outputs"][0]
        huge = "9" * 5000  # more digits than Python converts to an int by default
        assert http.get(f"/output/{output}", headers={"Range": f"bytes={huge}-"}).status_code == 416
        assert http.get(f"/output/{output}", headers={"Range": f"bytes=0-{huge}"}).status_code == 206


def test_a_full_queue_answers_429_with_retry_after(open_server: ServerProcess) -> None:
    with httpx.Client(base_url=open_server.url, timeout=60) as http:
        assert http.post("/models/load", json=TINY_LOAD).status_code == 200
        running = http.post("/txt2img", json={"prompt": "slow", "width": 256, "height": 256, "steps": 60}).json()
        queued = [http.post("/txt2img", json={"prompt": "q", "width": 64, "height": 64, "steps": 1}) for _ in range(3)]
        statuses = [response.status_code for response in queued]
        assert statuses.count(429) >= 1 and statuses.count(202) >= 1, statuses
        full = next(response for response in queued if response.status_code == 429)
        assert int(full.headers["Retry-After"]) > 0 and "max_pending" in full.json()["error"]
        for response in queued:
            if response.status_code == 202:
                http.delete(f"/queue/{response.json()['job_id']}")
        http.delete(f"/queue/{running['job_id']}")
        assert wait_for_job(http, running["job_id"])["status"] in ("cancelled", "completed")


# ------------------------------------------------------------------------------------------ keys


def test_keys_are_required_everywhere_but_health(keyed_server: ServerProcess) -> None:
    url = keyed_server.url
    assert httpx.get(url + "/health").status_code == 200
    for path in ("/queue", "/models", "/options", "/models/types", "/defaults", "/output", "/schema/openapi.json"):
        refused = httpx.get(url + path)
        assert refused.status_code == 401 and "API key" in refused.json()["error"], (path, refused.text)
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert httpx.post(url + "/models/unload").status_code == 401
    assert httpx.get(url + "/queue", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url + "/queue", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(url + "/queue", headers={"Authorization": "Bearer other-key"}).status_code == 200
    assert httpx.get(url + "/queue", headers={"X-API-Key": KEY}).status_code == 200
    assert httpx.get(url + "/queue", auth=("webui", KEY)).status_code == 200  # HTTP Basic, key as password
    assert httpx.get(url + "/queue", auth=(KEY, "")).status_code == 401  # the key as user name is not it
    assert httpx.get(url + "/queue", params={"token": KEY}).status_code == 401  # ?token= is for WebSockets only
    assert KEY not in (keyed_server.log_path.read_text())  # keys are never logged


@pytest.mark.parametrize("endpoint", ["ws_port", "http_port"])
def test_websockets_need_the_key_as_token(keyed_server: ServerProcess, endpoint: str) -> None:
    base = (
        f"ws://127.0.0.1:{keyed_server.ws_port}/" if endpoint == "ws_port" else f"ws://127.0.0.1:{keyed_server.port}/ws"
    )
    for query in ("", "?token=wrong"):
        with pytest.raises(InvalidStatus) as refused:
            connect(base + query)
        assert refused.value.response.status_code in (401, 403)
    with connect(base + "?token=" + quote(KEY)) as ws:
        assert '"server_status"' in ws.recv(timeout=10)


def test_a_browser_signs_in_and_the_cookie_serves_files(keyed_server: ServerProcess) -> None:
    with httpx.Client(base_url=keyed_server.url, timeout=30) as browser:
        page = browser.get("/output", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Foutput"
        form = browser.get("/login")
        assert form.status_code == 200 and 'type="password"' in form.text
        wrong = browser.post("/login", data={"key": "nope", "next": "/output"})
        assert wrong.status_code == 401 and "not valid" in wrong.text and "sdcpp_session" not in browser.cookies
        # Paths a browser would turn into another site (it drops tabs and line breaks, reads '\\' as '/'), and a
        # line break that once dropped the connection: each signs in and goes to /output.
        for offsite_next in (
            "/\t/evil.example/",
            "/\n/evil.example",
            "/\\evil.example",
            "/ /evil.example",
            "/output\r\nSet-Cookie: x=1",
        ):
            redirected = browser.post("/login", data={"key": KEY, "next": offsite_next})
            assert redirected.status_code == 303 and redirected.headers["location"] == "/output", offsite_next
        offsite = browser.post("/login", data={"key": KEY, "next": "//evil.example/"})
        assert offsite.status_code == 303 and offsite.headers["location"] == "/output"
        assert (
            browser.post("/login", data={"key": KEY, "next": "/ui/?view=queue"}).headers["location"]
            == "/ui/?view=queue"
        )
        cookie = offsite.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and KEY not in offsite.headers["set-cookie"]
        assert browser.get("/output").status_code == 200
        assert browser.get("/queue").status_code == 200
        forged = httpx.get(keyed_server.url + "/queue", cookies={"sdcpp_session": "0" * 64})
        assert forged.status_code == 401
        assert browser.post("/logout").status_code == 303
        assert browser.get("/queue").status_code == 401


def test_cors_allows_the_configured_origin_only(keyed_server: ServerProcess) -> None:
    url = keyed_server.url
    preflight = httpx.options(
        url + "/txt2img",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code in (200, 204) and preflight.headers["access-control-allow-origin"] == UI
    other = httpx.options(
        url + "/txt2img", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"
    allowed = httpx.put(
        url + "/preview/settings", json={"interval": 1}, headers={"Origin": UI, "Authorization": f"Bearer {KEY}"}
    )
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == UI
    refused = httpx.put(
        url + "/preview/settings",
        json={"interval": 1},
        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {KEY}"},
    )
    assert refused.status_code == 403


# -------------------------------------------------------------------------------------- exposure


def test_an_unprotected_non_loopback_bind_is_refused_unless_no_auth(own_models_dir: Path, tmp_path: Path) -> None:
    process = ServerProcess(own_models_dir, tmp_path / "output", tmp_path / "server.log", "--host", "0.0.0.0")
    refused = subprocess.run(process.argv(), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert refused.returncode == 2 and "--no-auth" in refused.stderr and "SDCPP_RESTAPI_API_KEYS" in refused.stderr
    assert "Traceback" not in refused.stderr
    exposed = ServerProcess(
        own_models_dir, tmp_path / "output", tmp_path / "exposed.log", "--host", "0.0.0.0", "--no-auth"
    ).start()
    try:
        assert httpx.get(exposed.url + "/health").status_code == 200
    finally:
        exposed.stop()
