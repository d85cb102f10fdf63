"""Signed result URLs: one file, until they expire, and only with this server's secret."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest

from core.login_sessions import LoginSessions
from core.settings import Settings
from litestar_app.security import SIGNED_URL_TTL_S, RequestFacts, SecurityPolicy

SECRET = b"s" * 32


class NoStore:
    """The login sessions' store: not used by signed URLs."""

    async def value(self, key: str, type_: type[object]) -> None:
        return None

    async def set_value(self, key: str, value: object | None) -> None:
        return None


def policy(secret: bytes = SECRET) -> SecurityPolicy:
    settings = msgspec.convert({"auth": {"api_keys": ["k"]}}, Settings)
    return SecurityPolicy(settings, LoginSessions(NoStore(), secret))


def facts_of(url: str) -> RequestFacts:
    parts = urlsplit(url)
    return RequestFacts("GET", parts.path, {"host": "127.0.0.1:8080"}, dict(parse_qsl(parts.query)), "http")


def test_a_signed_url_opens_its_file_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    url = policy().output_url("http://127.0.0.1:8080", "job 1/image_0.png")
    assert url.startswith("http://127.0.0.1:8080/output/job%201/image_0.png?expires=")
    facts = RequestFacts(**{**msgspec.structs.asdict(facts_of(url)), "path": "/output/job 1/image_0.png"})
    assert policy().refusal(facts) is None
    assert policy(b"t" * 32).refusal(facts) is not None  # another server's secret
    later = time.time() + SIGNED_URL_TTL_S + 1
    monkeypatch.setattr(time, "time", lambda: later)
    refused = policy().refusal(facts)
    assert refused is not None and refused.status == 401


def test_without_keys_the_url_is_plain() -> None:
    open_policy = SecurityPolicy(Settings(), LoginSessions(NoStore(), SECRET))
    assert open_policy.output_url("http://h", "a/b.png") == "http://h/output/a/b.png"
