"""Signed webhook deliveries, tried again with backoff."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

__all__ = ["Delivery", "Event", "Sender", "sign"]

log = logging.getLogger(__name__)

#: Backoff between tries: from 1 s, doubling, at most this far apart.
MAX_WAIT_S = 60.0


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 of ``"<timestamp>.<body>"``. The
    timestamp inside lets a receiver refuse an old request replayed."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True)
class Event:
    """Something that happened to the pipeline, told to the webhooks that want it."""

    name: str  #: e.g. ``model.published``
    #: What makes it this event (the same event read twice has the same key).
    key: str
    data: dict[str, Any]

    def delivery(self, pipeline: str, url: str) -> str:
        """The id of this event's delivery to ``url``: stable, for receivers to drop
        a duplicate (deliveries are at least once)."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{pipeline}/{self.name}/{self.key}/{url}").hex


class Delivery(BaseModel):
    """One delivery's outcome (``GET /api/v1/webhooks``)."""

    delivery: str
    event: str
    url: str
    outcome: str  #: delivered, failed
    attempts: int
    status: int | None  #: the last answer's HTTP status (None: no answer)
    error: str | None
    at: float


class _Refused(Exception):
    """The webhook answered, but not with a 2xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class Sender:
    """Posts events to webhooks; keeps the newest ``keep`` outcomes."""

    def __init__(
        self,
        pipeline: str,
        secret: bytes,
        *,
        attempts: int,
        timeout_s: float,
        keep: int = 200,
        first_wait_s: float = 1.0,
    ) -> None:
        self.pipeline = pipeline
        self._secret = secret
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._first_wait_s = first_wait_s
        self.recent: deque[Delivery] = deque(maxlen=keep)

    async def send_all(self, events: list[tuple[Event, str]]) -> list[Delivery]:
        """Every (event, url) delivery at once: a slow webhook does not hold the others."""
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            sent = await asyncio.gather(*(self.send(session, e, url) for e, url in events))
        return list(sent)

    async def send(self, session: aiohttp.ClientSession, event: Event, url: str) -> Delivery:
        """Deliver ``event`` to ``url``, trying again with backoff; never raises."""
        delivery = event.delivery(self.pipeline, url)
        body = orjson.dumps(
            {
                "event": event.name,
                "pipeline": self.pipeline,
                "delivery": delivery,
                "data": event.data,
            }
        )
        tries, status, error = 0, None, None
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._first_wait_s, max=MAX_WAIT_S),
            retry=retry_if_exception_type((_Refused, aiohttp.ClientError, TimeoutError)),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    tries += 1
                    status = await self._post(session, url, event.name, delivery, body)
            outcome, error = "delivered", None
        except RetryError as exc:
            outcome, error = "failed", str(exc.last_attempt.exception())
        except (ValueError, aiohttp.InvalidURL) as exc:  # a URL aiohttp cannot use
            outcome, error = "failed", str(exc)
        done = Delivery(
            delivery=delivery,
            event=event.name,
            url=url,
            outcome=outcome,
            attempts=tries,
            status=status,
            error=error,
            at=time.time(),
        )
        if outcome == "failed":
            log.error(
                "webhook %s: %s not delivered after %d tries: %s", url, event.name, tries, error
            )
        self.recent.append(done)
        return done

    async def _post(
        self, session: aiohttp.ClientSession, url: str, name: str, delivery: str, body: bytes
    ) -> int:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "crowdstream-webhooks",
            "X-Crowdstream-Event": name,
            "X-Crowdstream-Delivery": delivery,
            "X-Crowdstream-Timestamp": timestamp,
            "X-Crowdstream-Signature": sign(self._secret, timestamp, body),
        }
        async with session.post(url, data=body, headers=headers) as answer:
            await answer.read()
            if not 200 <= answer.status < 300:
                raise _Refused(answer.status)
            return answer.status
