"""Load shedding on the real embedded broker: bounded age, protected items, balanced books."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from tests.integration.conftest import (
    Worker,
    crisis_shedding,
    read_topic,
    start_worker,
    wait_until,
    write_topology,
)

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
            "max_drain_s": 0.2,
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
        # The worker is paused while the burst lands, so it all waits when it reads
        # again: a worker that kept up with the push would see no burst at all.
        os.kill(worker.proc.pid, signal.SIGSTOP)
        try:
            await push_lines([broker.bootstrap], PIPELINE, lines)
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)

        # Until both stages' books balance: a batch is counted in when it is read and
        # out when it is done, so a scrape can fall between the two.
        assert await wait_until(lambda: settled(worker, N + 1), timeout_s=120)
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


def settled(worker: Worker, pushed: int) -> bool:
    """Every pushed record read by both data-flow stages and accounted for."""
    fin, fout, frej, fshed = books(worker, "features")
    cin, cout, crej, cshed = books(worker, "classifier")
    return fin == pushed and fin == fout + frej + fshed and cin == fout and cin == cout + cshed


async def test_a_burst_the_default_pipeline_clears_in_seconds_is_classified_whole(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # 30,000 items at once from an independent client into the default shedding policy:
    # the stage clears them in seconds, well within max_drain_s, so none is shed.
    topology = write_topology(tmp_path, "burstwhole", shedding=crisis_shedding())
    worker = start_worker(broker, topology, tmp_path, "--crowd", "none")
    try:
        n = 30_000
        lines = [
            orjson.dumps({"id": f"b{i}", "text": f"road {i} blocked, need water"}) for i in range(n)
        ]
        await push_lines([broker.bootstrap], "burstwhole", lines)
        assert await wait_until(lambda: settled(worker, n), timeout_s=180)
        fin, fout, _, fshed = books(worker, "features")
        assert fshed == 0 and fout == n
    finally:
        worker.stop()


def cli_push(broker: EmbeddedBroker, pipeline: str, path: Path, *args: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "push",
            str(path),
            "--pipeline",
            pipeline,
            "--broker",
            broker.url,
            *args,
        ],
        capture_output=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


# A pipeline that sheds what a push piles up (a thousand records waiting, a fifth of a
# second to read them), and nothing a paced push sends.
TOUCHY = {"enabled": True, "max_age_s": 0.05, "trend_s": 0.2, "max_drain_s": 0.2}


async def test_push_paces_itself_so_a_file_is_not_shed_and_reports_what_became_of_it(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topology = write_topology(tmp_path, "pushpace", shedding=TOUCHY)
    worker = start_worker(broker, topology, tmp_path, "--crowd", "none")
    try:
        n = 20_000
        path = tmp_path / "backfill.jsonl"
        rows = [orjson.dumps({"id": f"p{i}", "text": f"bridge {i} down"}) for i in range(n)]
        path.write_bytes(b"\n".join([*rows, b'{"id": "bad", "text": ""}']) + b"\n")
        out = await asyncio.to_thread(cli_push, broker, "pushpace", path, "--max-lag", "200")
        assert (
            f"pushed {n + 1} records to pushpace.items.raw: {n} classified, 1 rejected, 0 shed"
            in out
        )
        assert books(worker, "features")[3] == 0
    finally:
        worker.stop()


async def test_an_unpaced_push_reports_how_many_of_its_items_were_shed(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topology = write_topology(tmp_path, "pushburst", shedding=TOUCHY)
    worker = start_worker(broker, topology, tmp_path, "--crowd", "none")
    try:
        n = 20_000
        path = tmp_path / "burst.jsonl"
        path.write_bytes(
            b"".join(
                orjson.dumps({"id": f"u{i}", "text": f"school {i} flooded"}) + b"\n"
                for i in range(n)
            )
        )
        out = await asyncio.to_thread(cli_push, broker, "pushburst", path, "--max-lag", "0")
        assert await wait_until(lambda: settled(worker, n), timeout_s=60)
        _, fout, _, fshed = books(worker, "features")
        cshed = books(worker, "classifier")[3]
        assert fshed + cshed > 0
        assert f"{n - int(fshed + cshed)} classified, 0 rejected, {int(fshed + cshed)} shed" in out
    finally:
        worker.stop()
