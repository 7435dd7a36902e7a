"""A pipeline whose features include the MiniLM sentence embedding, end to end."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pe.params import EMBEDDING_DIMS, FeaturesParams
from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from tests.integration.conftest import read_topic, start_worker, values, write_topology

pytestmark = pytest.mark.integration

PIPELINE = "embtest"
FEATURES = {"char_ngrams": True, "embedding": "minilm"}
PARAMS = FeaturesParams.model_validate(FEATURES)
HASHED, DIMS = PARAMS.n_features, PARAMS.dimensions
WIDTH = EMBEDDING_DIMS["minilm"]


async def test_items_carry_the_embedding_and_models_learn_and_classify_with_it(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topology = write_topology(
        tmp_path,
        PIPELINE,
        features=FEATURES,
        annotator={"speed": 400.0, "pool_size": 12},
        taskgen={"max_tasks_per_minute": 6000, "round_interval_s": 0.1, "label_budget": 200},
        learner={"retrain_every": 20, "min_train": 10, "c": 0.3},
    )
    worker = start_worker(broker, topology, tmp_path)
    try:
        sample = load_sample(600)
        first, later = sample[:500], sample[500:]
        lines = [orjson.dumps(row) for row in first]
        assert await push_lines([broker.bootstrap], PIPELINE, lines) == 500
        features = values(
            await read_topic(
                broker.bootstrap, f"{PIPELINE}.items.features", lambda r: len(r) >= 500
            )
        )
        assert len(features) == 500
        for row in features:
            dense = [i for i in row["idx"] if i >= HASHED]
            assert len(dense) == WIDTH and max(dense) < DIMS  # the whole embedding block

        def models(records: list) -> bool:  # type: ignore[type-arg]
            return any(m["classifier"] == "aid_related" for m in values(records))

        published = values(
            await read_topic(broker.bootstrap, f"{PIPELINE}.control.models", models, 120.0)
        )
        model = next(m for m in published if m["classifier"] == "aid_related")
        assert model["model"]["n_features"] == DIMS
        # Weights on the embedding block: the model learned from it.
        assert any(i >= HASHED for i in model["model"]["rows"][0]["idx"])

        lines = [orjson.dumps(row) for row in later]
        assert await push_lines([broker.bootstrap], PIPELINE, lines) == 100
        later_ids = {row["id"] for row in later}
        classified = values(
            await read_topic(
                broker.bootstrap,
                f"{PIPELINE}.items.classified",
                lambda rs: later_ids <= {r.key.decode() for r in rs},
            )
        )
        assert later_ids <= {item["id"] for item in classified}
        for item in classified:
            if item["id"] in later_ids:
                assert item["labels"]["aid_related"]["model_version"] >= 1
                assert item["labels"]["aid_related"]["tag"] in {"yes", "no"}
    finally:
        worker.stop()
