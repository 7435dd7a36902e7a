"""Signed, expiring bearer tokens for web workers (itsdangerous).

A token carries the worker id and the time it was issued, signed with the server's
key (HMAC). Nothing is stored server-side, so a token stays valid until it expires;
the pool decides whether its worker is still a member.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from itsdangerous import BadPayload, BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

__all__ = ["TokenError", "TokenSigner"]

#: Keeps these tokens apart from anything else signed with the same key.
_SALT = "crowdstream.worker-token"


class TokenError(ValueError):
    """A token that is malformed, tampered with or expired (``expired`` tells which)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class _ClockSigner(TimestampSigner):
    """Timestamps from a given clock (tests move it)."""

    def __init__(self, *args: Any, clock: Callable[[], float] = time.time, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class TokenSigner:
    """Issues and checks tokens valid for ``ttl_s`` seconds (whole seconds): the
    verifier's lifetime counts, from the time a token was issued."""

    def __init__(self, key: bytes, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise ValueError("the token key needs at least 16 bytes")
        self.ttl_s = ttl_s
        self._clock = clock
        self._serializer = URLSafeTimedSerializer(
            key, salt=_SALT, signer=_ClockSigner, signer_kwargs={"clock": clock}
        )

    def issue(self, subject: str) -> tuple[str, float]:
        """A token for ``subject`` and the time it expires (epoch seconds)."""
        token = self._serializer.dumps(subject)
        return token, int(self._clock()) + int(self.ttl_s)

    def verify(self, token: str) -> str:
        """The subject of a valid token; raises :class:`TokenError` otherwise."""
        try:
            subject = self._serializer.loads(token, max_age=int(self.ttl_s))
        except SignatureExpired:
            raise TokenError("token expired: join again", expired=True) from None
        except BadPayload:
            raise TokenError("malformed token") from None
        except BadSignature as exc:
            # Without a payload the value was not a token at all.
            message = "invalid token signature" if exc.payload is not None else "malformed token"
            raise TokenError(message) from None
        if not isinstance(subject, str):
            raise TokenError("malformed token")
        return subject
