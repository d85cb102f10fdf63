"""The one validation path (core/request_types.py), login sessions and the login form's `next`, without a server;
tests/integration/test_hostile.py sends the same hostile values through every face of the real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec
import pytest

from core.errors import BadRequest
from core.login_sessions import LoginSessions
from core.models.downloads import UpstreamError, _upstream_int
from core.prompt_help.features import parse_assistant_reply
from core.request_types import check_http_url, check_json_numbers, check_values, convert_request
from core.safe_paths import resolve_inside, stat_inside
from litestar_app.routes.login import _safe_next

T = TypeVar("T")


def nested(depth: int) -> list[object]:
    """Lists `depth` levels deep, built without recursion (deeper than Python could recurse through)."""
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"prompt": "a\0b"}, "prompt: strings must not contain NUL"),
        ({"a": [{"b": "\0"}]}, "a[0].b: strings must not contain NUL"),
        ({"cfg_scale": float("inf")}, "cfg_scale: must be a finite number"),
        ({"cfg_scale": float("nan")}, "cfg_scale: must be a finite number"),
        ({"sigmas": [1.0, -1e308]}, "sigmas[1]: must be a finite number within"),
        ({"a\0": 1}, "keys must not contain NUL"),
        ({"deep": nested(10_000)}, "nested too deeply"),
    ],
)
def test_check_values_refuses_naming_the_field(value: object, says: str) -> None:
    with pytest.raises(BadRequest) as refused:
        check_values(value)
    assert says in refused.value.message


def test_check_values_passes_ordinary_requests() -> None:
    check_values({"prompt": "a cat", "cfg_scale": 3.4e38, "ref_images": ["aGk="], "seed": 2**63 - 1, "x": None})


class Options(msgspec.Struct):
    cfg_scale: float = 1.0
    prompt: str = ""


def test_convert_request_checks_what_lax_conversion_makes() -> None:
    """A form's "inf" becomes a float only while converting: the result is checked too."""
    with pytest.raises(BadRequest) as refused:
        convert_request({"cfg_scale": "inf"}, Options, strict=False)
    assert "cfg_scale: must be a finite number" in refused.value.message
    with pytest.raises(BadRequest) as wrong_type:
        convert_request({"cfg_scale": "x"}, Options)
    assert wrong_type.value.message.startswith("cfg_scale: expected `float`")
    assert convert_request({"cfg_scale": "2.5"}, Options, strict=False).cfg_scale == 2.5


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://example.com:99999999/x", "Port out of range"),
        ("http:///x", "names no host"),
        ("ftp://example.com/x", "http(s)"),
        ("http://exa mple.com/x", "spaces"),
    ],
)
def test_check_http_url(url: str, says: str) -> None:
    with pytest.raises(BadRequest) as refused:
        check_http_url(url, "url")
    assert refused.value.message.startswith("url") and says in refused.value.message
    assert check_http_url("https://huggingface.co:443/a", "url").hostname == "huggingface.co"


def test_upstream_numbers_that_are_not_numbers_are_502() -> None:
    assert _upstream_int(" 1024 ", "file size") == 1024
    for value in ("lots", "9" * 5000, "-1", "1e3", "١٢"):
        with pytest.raises(UpstreamError) as refused:
            _upstream_int(value, "file size")
        assert refused.value.status == 502 and "not a number" in refused.value.message


def test_a_deeply_nested_assistant_reply_is_text() -> None:
    reply = "[" * 50_000 + "]" * 50_000
    assert parse_assistant_reply(reply) == (reply, [])


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "/%2F%2Fevil.example",
        "/%5cevil.example",
        "/%0a/evil.example",
        "/\t/evil.example",
        "https://evil.example",
        "evil.example",
        "http://[::1",
        "/a\0",
    ],
)
def test_next_keeps_to_this_site(target: str) -> None:
    assert _safe_next(target) == "/output"


@pytest.mark.parametrize("target", ["/output", "/ui/?view=queue", "/output/a%20b.png", "/ui/#queue"])
def test_next_follows_own_paths(target: str) -> None:
    assert _safe_next(target) == target


def test_next_goes_out_as_ascii() -> None:
    assert _safe_next("/output/日本.png") == "/output/%E6%97%A5%E6%9C%AC.png"
    assert _safe_next("/ui/\u2028") == "/ui/%E2%80%A8"


class MemoryStore:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def value(self, key: str, type_: type[T]) -> T | None:
        return msgspec.json.decode(self.values[key], type=type_) if key in self.values else None

    async def set_value(self, key: str, value: object | None) -> None:
        self.values[key] = msgspec.json.encode(value)


def test_sessions_are_revoked_by_logout_and_by_a_key_change() -> None:
    async def main() -> Any:
        store = MemoryStore()
        sessions = LoginSessions(store, b"secret")
        first, second = await sessions.issue("key-a"), await sessions.issue("key-a")
        assert first != second
        assert sessions.key_of(first, [b"key-a"]) == sessions.key_of(second, [b"key-a"]) == b"key-a"
        assert sessions.key_of(first, [b"key-b"]) is None  # the key it signed in with is gone
        assert sessions.key_of("0" * 64, [b"key-a"]) is None
        assert await sessions.revoke(first) and sessions.key_of(first, [b"key-a"]) is None
        assert first not in store.values["login_sessions"].decode()  # only the token's hash is stored
        restarted = LoginSessions(store, b"secret")
        await restarted.restore()
        assert restarted.key_of(second, [b"key-a"]) == b"key-a" and restarted.key_of(first, [b"key-a"]) is None

    anyio.run(main)


def test_a_symlink_loop_is_a_400_or_skipped_not_an_exception(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(BadRequest) as refused:
        resolve_inside(tmp_path, "a/model.safetensors", "model_name")
    assert refused.value.message.startswith("model_name ")
    assert stat_inside(tmp_path / "a", tmp_path.resolve()) is None


@pytest.mark.parametrize("text", ['{"cfg_scale": 1e999}', '{"cfg_scale": NaN}', '{"cfg_scale": -Infinity}'])
def test_json_numbers_our_parser_refuses_are_named(text: str) -> None:
    with pytest.raises(BadRequest) as refused:
        check_json_numbers(text)
    assert refused.value.message.startswith("cfg_scale: must be a finite number")
    check_json_numbers('{"cfg_scale": ')  # not JSON at all: the parser's own error stands
