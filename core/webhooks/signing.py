"""Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-signature: v1,<base64 of
HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`, the key being the base64 after `whsec_`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from core.webhooks.schemas import SECRET_PREFIX

MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64


class BadSecret(ValueError):
    pass


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret; BadSecret says what is wrong with it."""
    if not secret.startswith(SECRET_PREFIX):
        raise BadSecret(f"[webhooks] secret must start with '{SECRET_PREFIX}'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise BadSecret(f"[webhooks] secret: the part after '{SECRET_PREFIX}' must be base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise BadSecret(f"[webhooks] secret: {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes of key (got {len(key)})")
    return key


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, message_id, timestamp, body),
    }
