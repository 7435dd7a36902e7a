"""Fixtures that run pipelines against the real embedded broker, Apache Kafka (never a
mock)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from playwright.sync_api import Browser, sync_playwright

from pipelines.broker import EmbeddedBroker, free_port
from pipelines.local import terminate
from runtime.cluster import PLAINTEXT
from runtime.ranges import read_range
from tests.integration.browser import CHROMIUM, CHROMIUM_ARGS

#: A worker joins its consumer groups in a few seconds; this bound is for a loaded CI
#: machine.
READY_TIMEOUT_S = 90.0
#: The model key of every test worker: they do not own the broker, so they need one.
TEST_MODEL_KEY = b"crowdstream integration-test model key"
#: The webhook secret of test workers that send webhooks (CROWDSTREAM_WEBHOOK_SECRET).
WEBHOOK_SECRET = b"webhook secret of the tests"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    embedded = EmbeddedBroker(free_port(), tmp_path_factory.mktemp("broker"))
    embedded.start()
    yield embedded
    embedded.stop()


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    http: str
    log: Path

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=5) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post_chunks(self, path: str, chunks: list[bytes]) -> tuple[int, dict[str, Any]]:
        """POST with chunked transfer encoding, one chunk per element."""
        return self.post(path, iter(chunks), {"Transfer-Encoding": "chunked"})

    def post(
        self, path: str, body: bytes | Iterator[bytes], headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.http + path,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, orjson.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of the worker's Prometheus exposition (0 if absent)."""
        _, body = self.get("/metrics")
        wanted = {f'{k}="{v}"' for k, v in labels.items()}
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                inside = line[line.find("{") + 1 : line.find("}")] if "{" in line else ""
                if wanted <= set(inside.split(",")):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def tail(self, chars: int = 6000) -> str:
        """The end of the worker's log (with its threads' stacks if it had to be
        aborted), for a failing assertion to show."""
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Stop the worker; fail with its log if it had already died."""
        if self.proc.poll() is not None:
            raise AssertionError(f"worker had exited with {self.proc.returncode}:\n{self.tail()}")
        terminate(self.proc)


CRISIS_YAML = Path(__file__).parents[2] / "pipelines" / "crisis.yaml"


def crisis_shedding() -> dict[str, Any]:
    """The shedding parameters of the default crisis topology (for tests that prove
    nothing is lost in the configuration users run)."""
    params: dict[str, Any] = yaml.safe_load(CRISIS_YAML.read_text())["params"]["shedding"]
    return params


def write_topology(directory: Path, name: str, **params: dict[str, Any]) -> Path:
    """A copy of the crisis topology under another name (its own topics), with params.

    Load shedding is off unless ``shedding`` is given: tests that count every item
    must not depend on how fast the machine running them is.
    """
    data = yaml.safe_load(CRISIS_YAML.read_text())
    data["name"] = name
    data["gold_file"] = str(CRISIS_YAML.parent / data["gold_file"])  # the copy lives elsewhere
    data.setdefault("params", {})["shedding"] = {"enabled": False}
    for pe, values in params.items():
        data.setdefault("params", {}).setdefault(pe, {}).update(values)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_worker(broker: EmbeddedBroker, topology: Path, log_dir: Path, *args: str) -> Worker:
    """A worker on ``broker``, once it reports ready."""
    worker = spawn_worker(broker.url, topology, log_dir, *args)
    wait_ready(worker)
    return worker


def spawn_worker(broker_url: str, topology: Path, log_dir: Path, *args: str) -> Worker:
    """Start a worker process on ``broker_url`` without waiting for it."""
    port = free_port()
    log = log_dir / f"worker-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "up",
        str(topology),
        "--broker",
        broker_url,
        "--http-port",
        str(port),
        *args,
    ]
    env = {
        **os.environ,
        "CROWDSTREAM_DATA_DIR": str(log_dir / f"data-{port}"),
        "CROWDSTREAM_MODEL_KEY": TEST_MODEL_KEY.decode(),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    return Worker(proc, f"http://127.0.0.1:{port}", log)


def wait_ready(worker: Worker) -> None:
    """Wait until ``worker`` answers /healthz with 200; fail with its log if it does not."""
    proc = worker.proc
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{worker.tail()}")
        try:
            if worker.get("/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    worker.stop()
    raise AssertionError(f"worker not ready in {READY_TIMEOUT_S} s:\n{worker.tail()}")


async def read_topic(
    bootstrap: str,
    topic: str,
    done: Callable[[list[ConsumerRecord]], bool],
    timeout_s: float = 60.0,
) -> list[ConsumerRecord]:
    """Read ``topic`` from its start until ``done(records)`` or the timeout."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(records) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """What ``topic`` holds now: each partition read up to the end it had at the call
    (at once, where waiting for the topic to go quiet took seconds a read)."""
    records: list[ConsumerRecord] = []
    async for batch in read_range(bootstrap.split(","), topic, 0, 2**62, PLAINTEXT):
        records.extend(batch)
    return records


def values(records: list[ConsumerRecord]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` until it holds; an AssertionError naming ``what`` after
    ``timeout_s`` (for the synchronous tests: browsers, CLI calls)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


async def wait_until(check: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.2)
    return check()


@pytest.fixture(scope="module")
def output() -> Path:
    folder = Path(os.environ.get("CROWDSTREAM_TEST_OUTPUT", "test-output")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make test` (it installs chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()
