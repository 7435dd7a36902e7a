"""Faults on a three-node Kafka cluster: what a stream loses and how long it pauses.

A benchmark, not a test: the full version of tests/integration/test_cluster_faults.py
(its scenario, with 50,000 items by default). A :class:`LocalCluster` (three Kafka
nodes, each a broker and a KRaft controller, every topic replicated three times, two
replicas in sync for a write) runs one worker of the default crisis topology (every
PE, the simulated crowd, load shedding on). An independent confluent-kafka client
(acks=all, idempotent) pushes the items at a steady rate (``--mandatory-every n``
marks every n-th ``meta.mandatory``, never shed); mid-stream, the broker leading the
most partitions
is SIGKILLed and started again a few seconds later, then the active controller, then
the worker (started again at once).

It reports: items pushed, acknowledged, missing from ``items.raw`` (acknowledged
writes the cluster lost), classified, missing from ``items.classified`` (all of them,
and the mandatory ones), shed, duplicates (records the dedup rule drops), crowd
tasks, labels and duplicate labels (outcomes per task), and for each kill how long
the output stream paused (the longest gap between consecutive classified records'
``ts_out``) and how long the pusher waited for an acknowledgement. Prints JSON and
writes it to reports/bench-cluster-faults-<timestamp>.json.

Usage: python bench/cluster_faults.py [--items 50000] [--rate 400] [--down-s 5]
       [--mandatory-every 0] [--acks all|1] [--keep]
``--acks 1`` (without idempotence) shows what a weaker producer loses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The scenario lives with its test, in the tests package at the repository's root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.kafka.cluster import CLUSTER_DEFAULTS, LocalCluster
from pipelines.kafka.dist import kafka_version
from tests.integration.conftest import crisis_shedding, write_topology
from tests.integration.test_cluster_faults import run_faults

PIPELINE = "faultbench"


async def _run(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.acks != "all":
        overrides = {"acks": args.acks, "enable.idempotence": False}
    with LocalCluster(work_dir / "kafka") as cluster:
        # The worker declares its topics with three replicas, as an operator would.
        os.environ["CROWDSTREAM_REPLICATION_FACTOR"] = "3"
        os.environ["CROWDSTREAM_BROKER"] = cluster.url
        topology = write_topology(work_dir, PIPELINE, shedding=crisis_shedding())
        run = await run_faults(
            cluster,
            topology,
            work_dir,
            pipeline=PIPELINE,
            items=args.items,
            rate=args.rate,
            mandatory_every=args.mandatory_every,
            down_s=args.down_s,
            producer_overrides=overrides,
        )
    return run.summary()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=400.0, help="items pushed per second")
    parser.add_argument("--down-s", type=float, default=5.0, help="a killed node's time away")
    parser.add_argument(
        "--mandatory-every",
        type=int,
        default=0,
        help="every n-th item has meta.mandatory (never shed); 0: none",
    )
    parser.add_argument("--acks", choices=["all", "1"], default="all", help="the pusher's acks")
    parser.add_argument("--keep", action="store_true", help="keep the nodes' and workers' logs")
    args = parser.parse_args()
    # Clients log every failed connection to a dead node: thousands of lines.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("tests.feeds").setLevel(logging.CRITICAL)
    out_dir = Path("reports")
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    work_dir = Path(tempfile.mkdtemp(prefix="crowdstream-cluster-faults-"))
    try:
        summary = asyncio.run(_run(args, work_dir))
    finally:
        if args.keep:
            print(f"logs kept in {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    result = {
        "benchmark": "cluster_faults",
        "when": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "cluster": {
            "kafka": kafka_version(),
            "nodes": 3,
            "roles": "broker,controller",
            "configs": dict(CLUSTER_DEFAULTS),
        },
        "pipeline": "crisis topology (shedding on), one worker, simulated crowd",
        "items": args.items,
        "rate_per_s": args.rate,
        "mandatory_every": args.mandatory_every,
        "acks": args.acks,
        "down_s": args.down_s,
        **summary,
    }
    text = json.dumps(result, indent=2)
    print(text)
    (out_dir / f"bench-cluster-faults-{stamp}.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
