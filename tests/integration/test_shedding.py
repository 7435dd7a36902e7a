"""Load shedding on the real embedded broker: bounded age, protected items, balanced books."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from tests.integration.conftest import Worker, read_topic, start_worker, wait_until, write_topology

pytestmark = pytest.mark.integration

PIPELINE = "shedtest"
N = 20_000


def books(worker: Worker, pe: str) -> tuple[float, float, float, float]:
    def total(kind: str) -> float:
        return worker.metric(f"crowdstream_items_{kind}_total", pe=pe)

    return total("in"), total("out"), total("rejected"), total("shed")


async def test_a_burst_is_shed_by_policy_and_every_item_is_accounted(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # A bound far below what a burst of 20,000 items takes to process, and a trend
    # window shorter than the burst: it is judged overload while it comes in.
    topology = write_topology(
        tmp_path,
        PIPELINE,
        shedding={
            "enabled": True,
            "max_age_s": 0.05,
            "trend_s": 0.2,
            "protect_sources": ["911"],
        },
    )
    worker = start_worker(broker, topology, tmp_path, "--crowd", "none")
    try:
        lines = []
        for i in range(N):
            item: dict[str, object] = {"id": f"s{i}", "text": f"flood on street {i % 500} help"}
            if i % 100 == 0:
                item["source"] = "911"
            if i % 100 == 50:
                item["meta"] = {"mandatory": True}
            lines.append(orjson.dumps(item))
        lines.append(b"not json")
        await push_lines([broker.bootstrap], PIPELINE, lines)

        def settled() -> bool:
            fin, fout, frej, fshed = books(worker, "features")
            cin, cout, crej, cshed = books(worker, "classifier")
            return fin == N + 1 and cin == fout and cout + cshed == cin

        assert await wait_until(settled, timeout_s=120)
        fin, fout, frej, fshed = books(worker, "features")
        assert fin == fout + frej + fshed and frej == 1
        assert fshed > 0
        cin, cout, crej, cshed = books(worker, "classifier")
        assert cin == cout + crej + cshed
        reasons = {
            reason: worker.metric("crowdstream_items_shed_total", pe="features", reason=reason)
            for reason in ("near_duplicate", "sample")
        }
        assert sum(reasons.values()) == fshed and reasons["near_duplicate"] > 0
        assert worker.metric("crowdstream_shedding_keep_fraction", pe="features") <= 1.0

        protected = {f"s{i}" for i in range(N) if i % 100 in (0, 50)}
        classified = await read_topic(
            broker.bootstrap,
            f"{PIPELINE}.items.classified",
            lambda rs: len(rs) >= cout,
        )
        ids = {r.key.decode() for r in classified}
        assert len(classified) == cout and len(ids) == cout  # each kept item once
        assert protected <= ids  # never shed
    finally:
        worker.stop()
