"""Worker tokens and rate limits of the web crowd."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from pe.annotator.web.ratelimit import RateLimiter
from pe.annotator.web.tokens import TokenError, TokenSigner


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_names_its_worker_until_it_expires() -> None:
    clock = Clock()
    signer = TokenSigner(b"s" * 32, 60.0, clock=clock)
    token, expires = signer.issue("w-1")
    assert expires == 1060.0 and signer.verify(token) == "w-1"
    clock.now = 1059.9
    assert signer.verify(token) == "w-1"
    clock.now = 1060.0
    with pytest.raises(TokenError, match="expired") as caught:
        signer.verify(token)
    assert caught.value.expired


def test_tokens_of_another_key_or_altered_are_refused() -> None:
    signer = TokenSigner(b"s" * 32, 60.0)
    token, _ = signer.issue("w-1")
    other, _ = TokenSigner(b"t" * 32, 60.0).issue("w-1")
    version, payload, mac = token.split(".")
    forged_payload = TokenSigner(b"s" * 32, 60.0).issue("w-2")[0].split(".")[1]
    for bad in (other, f"{version}.{forged_payload}.{mac}", f"v2.{payload}.{mac}", "", "a.b"):
        with pytest.raises(TokenError) as caught:
            signer.verify(bad)
        assert not caught.value.expired


@pytest.mark.parametrize("exp", ["nan", "inf", "Infinity", "-inf"])
def test_a_signed_token_whose_expiry_is_not_a_number_is_refused(exp: str) -> None:
    # Only the key's holder can sign one, but it would never expire.
    key = b"s" * 32
    payload = base64.urlsafe_b64encode(orjson.dumps({"sub": "w-1", "exp": exp}))
    body = payload.rstrip(b"=").decode()
    mac = hmac.new(key, f"v1.{body}".encode(), hashlib.sha256).digest()
    token = f"v1.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(TokenError, match="malformed"):
        TokenSigner(key, 60.0).verify(token)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        TokenSigner(b"short", 60.0)


def test_rate_limiter_allows_bursts_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("a") == pytest.approx(0.5)
    assert limiter.check("b") == 0.0  # keys are independent
    clock.now += 0.5
    assert limiter.check("a") == 0.0
    clock.now += 100
    assert [limiter.check("a") for _ in range(4)][-1] > 0  # the bucket holds 3, not 200


def test_rate_limiter_keeps_a_bounded_number_of_keys() -> None:
    limiter = RateLimiter(1.0, 1, max_keys=2, clock=Clock())
    for key in ("a", "b", "c"):
        limiter.check(key)
    assert limiter.check("a") == 0.0  # forgotten, so a full bucket again
    assert limiter.check("c") > 0
