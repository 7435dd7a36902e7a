"""The collector's Kafka source and the broker command."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipelines.broker import EmbeddedBroker, free_port
from tests.integration.conftest import read_topic, start_worker, values, write_topology

pytestmark = pytest.mark.integration


async def test_collector_ingests_an_existing_kafka_topic(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    source = "external.tweets"
    topology = write_topology(tmp_path, "srctest", collector={"source_topic": source})
    worker = start_worker(
        broker, topology, tmp_path, "--crowd", "none", "--pe", "collector", "features", "classifier"
    )
    try:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for i in range(10):
                await producer.send(source, orjson.dumps({"id": f"ext-{i}", "text": f"fire {i}"}))
            await producer.send_and_wait(source, b"not json")
        finally:
            await producer.stop()
        classified = await read_topic(
            broker.bootstrap, "srctest.items.classified", lambda rs: len(rs) >= 10
        )
        assert {item["id"] for item in values(classified)} == {f"ext-{i}" for i in range(10)}
        rejected = await read_topic(
            broker.bootstrap, "srctest.items.rejected", lambda rs: len(rs) >= 1
        )
        assert values(rejected)[0]["stage"] == "collector"
    finally:
        worker.stop()


def test_broker_command_serves_until_interrupted() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline().decode()  # printed once the broker listens
        assert f"kafka://127.0.0.1:{port}" in banner
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) == 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
    time.sleep(0.2)
    with socket.socket() as sock:  # the broker process is gone with it
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_broker_command_refuses_a_busy_port(broker: EmbeddedBroker) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "broker", "--port", str(broker.port)],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert b"in use" in done.stderr
