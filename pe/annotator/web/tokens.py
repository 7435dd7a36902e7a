"""Signed, expiring bearer tokens for web workers.

A token is ``v1.<payload>.<mac>``: the payload (worker id, expiry) in base64url JSON,
the mac an HMAC-SHA256 over it with the server's key. Nothing is stored server-side,
so a token stays valid until it expires; the pool decides whether its worker is
still a member.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Callable

import orjson

__all__ = ["TokenError", "TokenSigner"]

_VERSION = "v1"


class TokenError(ValueError):
    """A token that is malformed, tampered with or expired (``expired`` tells which)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, key: bytes, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise ValueError("the token key needs at least 16 bytes")
        self._key = key
        self.ttl_s = ttl_s
        self._clock = clock

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, f"{_VERSION}.{payload}".encode(), hashlib.sha256)
        return _b64(digest.digest())

    def issue(self, subject: str) -> tuple[str, float]:
        """A token for ``subject`` and the time it expires (epoch seconds)."""
        expires = self._clock() + self.ttl_s
        payload = _b64(orjson.dumps({"sub": subject, "exp": round(expires, 3)}))
        return f"{_VERSION}.{payload}.{self._mac(payload)}", expires

    def verify(self, token: str) -> str:
        """The subject of a valid token; raises :class:`TokenError` otherwise."""
        version, _, rest = token.partition(".")
        payload, _, mac = rest.partition(".")
        if version != _VERSION or not payload or not mac:
            raise TokenError("malformed token")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise TokenError("invalid token signature")
        try:
            claims = orjson.loads(_unb64(payload))
            subject, expires = str(claims["sub"]), float(claims["exp"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError("malformed token") from exc
        if not math.isfinite(expires):  # "nan" or "inf" would never expire
            raise TokenError("malformed token")
        if self._clock() >= expires:
            raise TokenError("token expired: join again", expired=True)
        return subject
