"""Browser sign-ins (the /login form): each login cookie is a fresh random token whose record (an id, the issue
time, which key signed in) is kept in the store, so that logging out revokes that cookie, a change of the API
keys revokes every cookie signed in with a key no longer configured, and cookies expire after `SESSION_SECONDS`.
The token itself is never stored, only its SHA-256 (the id)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

import msgspec

from core.stored_values import ValueStore

SESSIONS_KEY = "login_sessions"
SESSION_SECONDS = 30 * 86400
MAX_SESSIONS = 1000  # the oldest sign-ins go first beyond this


class LoginSession(msgspec.Struct, frozen=True):
    id: str  # SHA-256 of the cookie's token
    issued_at: float  # Unix time
    key_mac: str  # HMAC of the key that signed in: a key removed from the settings revokes the session


class LoginSessions:
    def __init__(self, store: ValueStore, secret: bytes) -> None:
        self.store = store
        self.secret = secret
        self.sessions: dict[str, LoginSession] = {}

    def key_mac(self, key: bytes) -> str:
        return hmac.new(self.secret, key, hashlib.sha256).hexdigest()

    @staticmethod
    def _id(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    async def restore(self) -> None:
        stored = await self.store.value(SESSIONS_KEY, list[LoginSession]) or []
        now = time.time()
        self.sessions = {item.id: item for item in stored if now - item.issued_at < SESSION_SECONDS}

    async def _save(self) -> None:
        await self.store.set_value(SESSIONS_KEY, list(self.sessions.values()))

    async def issue(self, key: str) -> str:
        """A new cookie token for a sign-in with `key` (already checked by the caller)."""
        token = secrets.token_urlsafe(32)
        session = LoginSession(self._id(token), time.time(), self.key_mac(key.encode()))
        self.sessions[session.id] = session
        while len(self.sessions) > MAX_SESSIONS:
            del self.sessions[min(self.sessions.values(), key=lambda item: item.issued_at).id]
        await self._save()
        return token

    def key_of(self, token: str, keys: Iterable[bytes]) -> bytes | None:
        """The configured key a live session was signed in with (None: no such session, or its key is gone)."""
        session = self.sessions.get(self._id(token))
        if session is None or time.time() - session.issued_at >= SESSION_SECONDS:
            return None
        matches = [key for key in keys if hmac.compare_digest(session.key_mac, self.key_mac(key))]
        return matches[0] if matches else None

    async def revoke(self, token: str) -> bool:
        if self.sessions.pop(self._id(token), None) is None:
            return False
        await self._save()
        return True
