"""Schemathesis fuzzes the whole API of a real worker (items, results, jobs, crowd)
from its one OpenAPI document."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipelines.broker import EmbeddedBroker
from tests.integration.conftest import Worker, start_worker, write_topology

pytestmark = pytest.mark.integration

OPERATOR = "operator-secret-for-fuzzing"
SETTINGS = {
    "CROWDSTREAM_OPERATOR_TOKEN": OPERATOR,
    # Rate limits would answer most generated calls with 429 and hide the rest.
    "CROWDSTREAM_CROWD_RATE_PER_IP": "100000",
    "CROWDSTREAM_CROWD_RATE_PER_WORKER": "100000",
}


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    topology: Path = write_topology(
        tmp_path_factory.mktemp("topology"),
        "apifuzz",
        annotator={"pool_size": 10_000, "redundancy": 1, "qualification": 2},
    )
    saved = {key: os.environ.get(key) for key in SETTINGS}
    os.environ.update(SETTINGS)
    try:
        running = start_worker(
            broker, topology, tmp_path_factory.mktemp("worker"), "--crowd", "web"
        )
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api_schema(worker: Worker) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(worker.http + "/api/v1/openapi.json")
    # Event streams never end by themselves; the APIs' own tests read them.
    return schema.exclude(operation_id=["tasks", "classified_stream"])


def worker_token(worker: Worker) -> str:
    """A fresh worker (a case may end its session), still qualifying: every call applies."""
    status, body = worker.post("/api/v1/workers", orjson.dumps({"name": "fuzz"}))
    assert status == 201, body
    return str(body["token"])


def test_the_api_never_answers_with_a_server_error(
    api_schema: schemathesis.BaseSchema, worker: Worker
) -> None:
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    tags = {tag for operation in operations for tag in operation.definition.raw["tags"]}
    assert tags == {
        "items",
        "results",
        "jobs",
        "classifiers",
        "labels",
        "export",
        "crowd",
        "crowd operator",
    }
    assert len(operations) >= 20

    def headers(path: str) -> dict[str, str]:
        if path.startswith(("/api/v1/operator/", "/api/v1/jobs")):
            return {"Authorization": f"Bearer {OPERATOR}"}
        if path.startswith("/api/v1/workers/me"):
            return {"Authorization": f"Bearer {worker_token(worker)}"}
        return {}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers=headers(case.operation.path), checks=checks)

        fuzz()
