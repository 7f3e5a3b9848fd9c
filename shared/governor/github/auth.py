"""GitHub App authentication: an RS256 JWT for the App, exchanged for installation tokens."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import jwt
import msgspec

JWT_BACKDATE: Final = timedelta(seconds=60)
"""GitHub recommends `iat` 60 s in the past against clock drift."""
JWT_LIFETIME: Final = timedelta(minutes=9)
"""`exp` at most 10 minutes after `iat`: 60 s back plus 9 minutes ahead stays inside."""
TOKEN_REFRESH_MARGIN: Final = timedelta(minutes=5)


def app_jwt(app_id: str, private_key_pem: str, now: datetime) -> str:
    """The App's JWT. PyJWT refuses a non-string `iss`, so the id is passed as a string."""
    payload = {
        "iat": int((now - JWT_BACKDATE).timestamp()),
        "exp": int((now + JWT_LIFETIME).timestamp()),
        "iss": str(app_id),
    }
    return jwt.encode(payload, private_key_pem, algorithm="RS256")


class InstallationToken(msgspec.Struct, frozen=True):
    token: str
    expires_at: datetime


class TokenCache:
    """Installation tokens, reused until shortly before they expire. Thread-safe."""

    def __init__(
        self,
        fetch: Callable[[int], InstallationToken],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._tokens: dict[int, InstallationToken] = {}
        self._lock = threading.Lock()

    def forget(self, installation_id: int) -> None:
        with self._lock:
            self._tokens.pop(installation_id, None)

    def token(self, installation_id: int) -> str:
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached is None or cached.expires_at - self._clock() < TOKEN_REFRESH_MARGIN:
                cached = self._fetch(installation_id)
                self._tokens[installation_id] = cached
            return cached.token
