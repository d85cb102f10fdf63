"""Our Standard Webhooks signatures verify with the reference package, and a malformed secret says what is wrong."""

from __future__ import annotations

import datetime as dt

import pytest
from standardwebhooks.webhooks import Webhook

from core.webhooks.signing import BadSecret, headers, new_secret, secret_key, signature


def test_a_signature_verifies_with_the_standardwebhooks_package() -> None:
    secret = new_secret()
    body = b'{"type":"job.completed","timestamp":"2026-01-01T00:00:00.000Z","data":{}}'
    now = int(dt.datetime.now(dt.UTC).timestamp())
    sent = headers(secret_key(secret), "msg_1", now, body)
    assert Webhook(secret).verify(body, sent) == {
        "type": "job.completed",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "data": {},
    }
    reference = Webhook(secret).sign("msg_1", dt.datetime.fromtimestamp(now, dt.UTC), body.decode())
    assert sent["webhook-signature"] == reference == signature(secret_key(secret), "msg_1", now, body)


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("abc", "must start with 'whsec_'"),
        ("whsec_not base64!", "must be base64"),
        ("whsec_AAAA", "24 to 64 bytes of key (got 3)"),
    ],
)
def test_a_malformed_secret_says_why(secret: str, why: str) -> None:
    with pytest.raises(BadSecret, match=why.replace("(", r"\(").replace(")", r"\)")):
        secret_key(secret)
