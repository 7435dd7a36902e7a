"""Classifiers added, paused and retired on a running pipeline on real Kafka, by the
HTTP API and the CLI; the changes survive a restart."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from tests.integration.conftest import (
    WEBHOOK_SECRET,
    read_all,
    start_worker,
    values,
    wait_for,
    write_topology,
)
from tests.integration.webhooks import Hooks

pytestmark = pytest.mark.integration

PIPELINE = "livecls"
NEEDS_HELP = {
    "name": "needs_help",
    "question": "Does the author ask for help?",
    "tags": ["yes", "no"],
    "truth_key": "request",  # the simulated crowd answers from the sample's truth
}


def cli(broker: EmbeddedBroker, topology: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "classifier", *args],
        capture_output=True,
        timeout=120,
        env={**os.environ, "CROWDSTREAM_BROKER": broker.url, "CROWDSTREAM_PIPELINE": str(topology)},
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_classifiers_change_on_a_running_pipeline_and_survive_a_restart(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = Hooks()
    topology = write_topology(
        tmp_path,
        PIPELINE,
        annotator={"speed": 60.0, "pool_size": 6},
        taskgen={"max_tasks_per_minute": 3000, "round_interval_s": 0.1},
        learner={"retrain_every": 10, "min_train": 10, "teacher": "none"},
        notifier={"webhooks": [{"url": hooks.url}], "attempts": 3},
    )
    sample = load_sample(1500)

    def read(key: str) -> list[dict[str, Any]]:
        return values(asyncio.run(read_all(broker.bootstrap, f"{PIPELINE}.{key}")))

    def push(rows: list[dict[str, Any]]) -> None:
        asyncio.run(push_lines([broker.bootstrap], PIPELINE, [orjson.dumps(r) for r in rows]))

    monkeypatch.setenv("CROWDSTREAM_WEBHOOK_SECRET", WEBHOOK_SECRET.decode())
    worker = start_worker(broker, topology, tmp_path)
    try:
        status, body = worker.post("/api/v1/classifiers", orjson.dumps(NEEDS_HELP))
        assert status == 202, body
        status, body = worker.post("/api/v1/classifiers", orjson.dumps(NEEDS_HELP))
        assert status == 409 and "exists" in body["error"]
        out = cli(broker, topology, "add", "roads", "--question", "A road?", "--tags", "yes", "no")
        assert "classifier roads active" in out
        push(sample[:800])

        def learned() -> bool:
            return any(m["classifier"] == "needs_help" for m in read("control.models"))

        wait_for(learned, 120, "a model of the added classifier")
        # Its history: every version published, in the learning API and the export.
        published = {
            m["version"] for m in read("control.models") if m["classifier"] == "needs_help"
        }
        status, raw = worker.get("/api/v1/learning/needs_help")
        assert status == 200
        progress = orjson.loads(raw)
        assert published <= {m["version"] for m in progress["models"]}
        assert sum(point["labels"] for point in progress["crowd"]) >= 10
        status, raw = worker.get("/api/v1/export/models?classifier=needs_help")
        exported = [orjson.loads(line) for line in raw.splitlines()]
        assert published <= {row["version"] for row in exported}
        classified = read("items.classified")
        assert all({"needs_help", "roads"} <= set(r["labels"]) for r in classified[-100:])
        tasks = read("crowd.tasks")
        assert any(t["classifier"] == "needs_help" for t in tasks)

        # An operator corrects a crowd label: the log keeps it, attributed, and the
        # item's classification is revised to it.
        crowd = next(
            label
            for label in read("crowd.labels")
            if label["classifier"] == "aid_related" and label["tag"] and label["kind"] != "gold"
        )
        right = "no" if crowd["tag"] == "yes" else "yes"
        path = f"/api/v1/labels/aid_related/{crowd['item_id']}/correct"
        status, body = worker.post(path, orjson.dumps({"tag": right}))
        assert status == 202, body

        def revised() -> bool:
            return any(
                r["id"] == crowd["item_id"] and r["labels"]["aid_related"]["tag"] == right
                for r in read("items.classified")
            )

        wait_for(revised, 60, "the correction to revise the item")
        [correction] = [label for label in read("crowd.labels") if label.get("corrected_by")]
        assert (correction["item_id"], correction["tag"]) == (crowd["item_id"], right)
        assert correction["answers"] == crowd["answers"]
        status, raw = worker.get("/api/v1/labels?corrected=true")
        assert [label["item_id"] for label in orjson.loads(raw)["labels"]] == [crowd["item_id"]]

        # Exports of what the logs held at a moment, streamed in each format.
        moment = time.time()

        def logged(key: str) -> list[dict[str, Any]]:
            records = asyncio.run(read_all(broker.bootstrap, f"{PIPELINE}.{key}"))
            return values([r for r in records if r.timestamp <= moment * 1000])

        status, raw = worker.get(f"/api/v1/export/labels?format=csv&until={moment}")
        assert status == 200
        exported = list(csv.DictReader(io.StringIO(raw.decode())))
        assert len(exported) == len(logged("crowd.labels")) > 0
        assert {r["corrected_by"] for r in exported} == {"", "operator"}
        query = f"format=parquet&classifier=needs_help&until={moment}"
        status, raw = worker.get(f"/api/v1/export/classified?{query}")
        table = pq.read_table(io.BytesIO(raw))
        assert set(table.column("classifier").to_pylist()) == {"needs_help"}
        items = [r for r in logged("items.classified") if "needs_help" in r["labels"]]
        assert table.num_rows == len(items)
        status, raw = worker.get(f"/api/v1/export/answers?since={moment + 3600}")
        assert (status, raw) == (200, b"")

        cli(broker, topology, "pause", "roads")
        cli(broker, topology, "retire", "needs_help")
        listed = [
            orjson.loads(line) for line in cli(broker, topology, "list", "--json").splitlines()
        ]
        states = {r["spec"]["name"]: r["state"] for r in listed}
        assert states == {
            "aid_related": "active",
            "request": "active",
            "needs_help": "retired",
            "roads": "paused",
        }
        # The webhook heard of each change and of the new classifier's model, signed.
        wanted = {"classifier.added", "classifier.paused", "classifier.retired"}
        wait_for(lambda: wanted <= {e["event"] for e in hooks.events()}, 30, f"webhooks {wanted}")
        assert any(
            e["event"] == "model.published" and e["data"]["classifier"] == "needs_help"
            for e in hooks.events()
        )
        status, raw = worker.get("/api/v1/webhooks")
        outcomes = {d["outcome"] for d in orjson.loads(raw)["deliveries"]}
        assert outcomes == {"delivered"}
    finally:
        worker.stop()
        hooks.close()

    # A new worker reads the changes from control.classifiers.
    again = start_worker(broker, topology, tmp_path)
    try:
        status, raw = again.get("/api/v1/classifiers")
        assert status == 200
        listed = orjson.loads(raw)["classifiers"]
        assert {c["spec"]["name"]: c["state"] for c in listed}["roads"] == "paused"
        push([{**row, "id": f"after-{row['id']}"} for row in sample[800:900]])

        def reclassified() -> bool:
            ids = {r["id"] for r in read("items.classified")}
            return f"after-{sample[899]['id']}" in ids

        wait_for(reclassified, 60, "the item to be classified again")
        after = [r for r in read("items.classified") if r["id"].startswith("after-")]
        assert after and all("roads" in r["labels"] for r in after)
        assert all("needs_help" not in r["labels"] for r in after)
    finally:
        again.stop()
