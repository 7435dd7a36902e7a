"""Signed model messages on ``control.models``.

A model update is the whole classifier a worker will apply to the stream, so anyone
who can write to the topic could otherwise steer every classification. The learner
signs each update with HMAC-SHA256 under the key from settings (``model_key``); a
classifier applies an update only if its schema version is one it knows and the
signature matches. Models are weights in JSON (``LinearModel``): reading one never
executes code from the message.

The signature covers the update's canonical JSON (keys sorted, the ``signature``
field left out), computed on the parsed object, so it does not depend on how a
producer spaced or ordered its JSON.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
from pydantic import ValidationError

from channels.records import MODEL_SCHEMA_VERSION, ModelUpdate

__all__ = [
    "DEVELOPMENT_KEY",
    "SUPPORTED_SCHEMA_VERSIONS",
    "ModelRefused",
    "ModelSigner",
]

SUPPORTED_SCHEMA_VERSIONS = frozenset({MODEL_SCHEMA_VERSION})
#: Signs models on the embedded broker when no key is set. It is public, so it only
#: catches corruption and stray writers; on Kafka a key is required.
DEVELOPMENT_KEY = b"crowdstream embedded-broker development key"
ALGORITHM = "hmac-sha256"


class ModelRefused(ValueError):
    """A model message a classifier must not apply; ``kind`` is a fixed category:
    ``invalid`` (not a model), ``schema_version``, ``unsigned``, ``tampered`` or
    ``stale`` (not newer than the active model)."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


def _canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


class ModelSigner:
    """Signs and checks model updates with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a model key needs at least 16 bytes")
        self._key = key

    def _mac(self, body: dict[str, Any]) -> str:
        digest = hmac.new(self._key, _canonical(body), hashlib.sha256).hexdigest()
        return f"{ALGORITHM}:{digest}"

    def sign(self, update: ModelUpdate) -> bytes:
        """The wire bytes of ``update``, signed."""
        body = update.model_dump(mode="json", exclude={"signature"})
        return orjson.dumps({**body, "signature": self._mac(body)})

    def verify(self, data: bytes | None) -> ModelUpdate:
        """The update in ``data`` if it is signed with this key; else :class:`ModelRefused`."""
        try:
            body = orjson.loads(data or b"")
        except orjson.JSONDecodeError as exc:
            raise ModelRefused(f"not JSON: {exc}", "invalid") from None
        if not isinstance(body, dict):
            raise ModelRefused("not a JSON object", "invalid")
        version = body.get("schema_version")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            known = ", ".join(map(str, sorted(SUPPORTED_SCHEMA_VERSIONS)))
            raise ModelRefused(
                f"schema version {version!r} is not one this worker reads ({known})",
                "schema_version",
            )
        signature = body.pop("signature", None)
        if not isinstance(signature, str) or not signature:
            raise ModelRefused("the model is not signed", "unsigned")
        if not hmac.compare_digest(signature.encode(), self._mac(body).encode()):
            raise ModelRefused(
                "the signature does not match (tampered, or signed with another model_key)",
                "tampered",
            )
        try:
            return ModelUpdate.model_validate(body)
        except ValidationError as exc:
            raise ModelRefused(f"signed but not a valid model: {exc}", "invalid") from None
