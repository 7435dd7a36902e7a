"""The worker's OpenAPI 3.1 document, built from its endpoints (pe.common.api)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

if TYPE_CHECKING:
    from pe.common.api import Endpoint

__all__ = ["ErrorBody", "openapi_document"]

_REF = "#/components/schemas/{model}"


class ErrorBody(BaseModel):
    """Every refusal of the API (pe.common.http.HttpError). Some carry more fields:
    ``POST /items`` with no valid record, its answer's counts and errors."""

    error: str = Field(description="What was wrong, for a person to read.")
    reason: str | None = Field(
        None,
        description="On a crowd worker's 410 for an ended session, why it ended "
        "(released, left, vanished, failed_qualification, stopped); `error` is then "
        "the farewell the worker was shown.",
    )
    details: list[dict[str, Any]] | None = Field(
        None, description="One entry per invalid field (loc, msg) or record (record, error)."
    )


def _present(field: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema without its null: a query parameter is left out
    rather than sent as null."""
    options = [o for o in field.get("anyOf", ()) if o != {"type": "null"}]
    if len(options) != 1:
        return field
    merged = {k: v for k, v in field.items() if k not in ("anyOf", "default")}
    return {**merged, **options[0]}


def _parameters(e: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", e.path)
    ]
    if e.query is not None:
        schema = e.query.model_json_schema()
        required = set(schema.get("required", ()))
        for name, field in schema["properties"].items():
            field = _present(field)
            param = {"name": name, "in": "query", "required": name in required, "schema": field}
            if "description" in field:
                param["description"] = field["description"]
            params.append(param)
    return params


def _operation(e: Endpoint, ref: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": e.operation,
        "summary": e.summary,
        "tags": [e.tag] if e.tag else [],
        "responses": {},
    }
    if e.access.scheme is not None:
        operation["security"] = [{e.access.scheme: []}]
    parameters = _parameters(e)
    if parameters:
        operation["parameters"] = parameters
    if e.body is not None:
        schema = ref(e.body.model) if e.body.model is not None else {"type": "string"}
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media in e.body.media},
        }
    for code in e.responses:
        answer: dict[str, Any] = {"description": HTTPStatus(code).phrase}
        if code == e.status:
            if e.stream:
                answer["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
            elif e.response is not None:
                answer["content"] = {"application/json": {"schema": ref(e.response)}}
        else:
            answer["content"] = {"application/json": {"schema": ref(ErrorBody)}}
        operation["responses"][str(code)] = answer
    return operation


def openapi_document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for e in endpoints:
        body = e.body.model if e.body is not None else None
        models |= {m for m in (body, e.response) if m is not None}
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, schemas = models_json_schema([(m, "validation") for m in ordered], ref_template=_REF)

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, ref)
    schemes = sorted({e.access.scheme for e in endpoints if e.access.scheme is not None})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crowdstream worker API",
            "version": "1",
            "description": "Items in, classified items out, jobs, and the crowd: workers "
            "join a retainer pool, receive tasks as server-sent events and answer them; "
            "operators submit jobs and manage the pool.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {name: {"type": "http", "scheme": "bearer"} for name in schemes},
        },
    }
