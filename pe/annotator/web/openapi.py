"""The crowd API's OpenAPI 3.1 document, built from its endpoint table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pe.annotator.web.schemas import ErrorBody

if TYPE_CHECKING:
    from pe.annotator.web.api import Endpoint

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def openapi_document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for e in endpoints:
        models |= {m for m in (e.body, e.response) if m is not None}
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, schemas = models_json_schema([(m, "validation") for m in ordered], ref_template=_REF)

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        operation: dict[str, Any] = {
            "operationId": e.operation,
            "summary": e.summary,
            "tags": ["operator" if e.auth == "operator" else "worker"],
            "responses": {},
        }
        if e.auth != "none":
            operation["security"] = [
                {"operatorToken" if e.auth == "operator" else "workerToken": []}
            ]
        params = re.findall(r"{(\w+)}", e.path)
        if params:
            operation["parameters"] = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "maxLength": 64},
                }
                for name in params
            ]
        if e.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(e.body)}},
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
        paths.setdefault(e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crowdstream crowd API",
            "version": "1",
            "description": "Workers join a retainer pool, receive tasks as server-sent "
            "events and answer them; operators watch and manage the pool.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "workerToken": {"type": "http", "scheme": "bearer"},
                "operatorToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
