"""Worker tokens and rate limits of the web crowd."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from pe.annotator.web.tokens import TokenError, TokenSigner
from pe.common.ratelimit import RateLimiter


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
    clock.now = 1060.9
    assert signer.verify(token) == "w-1"
    clock.now = 1061.0
    with pytest.raises(TokenError, match="expired") as caught:
        signer.verify(token)
    assert caught.value.expired


def test_tokens_of_another_key_or_altered_are_refused() -> None:
    signer = TokenSigner(b"s" * 32, 60.0)
    token, _ = signer.issue("w-1")
    other, _ = TokenSigner(b"t" * 32, 60.0).issue("w-1")
    payload, stamp, mac = token.split(".")
    forged_payload = TokenSigner(b"t" * 32, 60.0).issue("w-2")[0].split(".")[0]
    for bad, message in [
        (other, "signature"),
        (f"{forged_payload}.{stamp}.{mac}", "signature"),
        (f"{payload}.{stamp}.{mac[:-2]}xx", "signature"),
        ("", "malformed"),
        ("garbage", "malformed"),
    ]:
        with pytest.raises(TokenError, match=message) as caught:
            signer.verify(bad)
        assert not caught.value.expired


def test_a_signed_token_that_does_not_name_a_worker_is_refused() -> None:
    # Only the key's holder can sign one, but it names no worker.
    serializer = URLSafeTimedSerializer(b"s" * 32, salt="crowdstream.worker-token")
    with pytest.raises(TokenError, match="malformed"):
        TokenSigner(b"s" * 32, 60.0).verify(serializer.dumps({"sub": "w-1"}))


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
