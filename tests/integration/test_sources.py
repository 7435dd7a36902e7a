"""The collector's Kafka source and the broker command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from channels.topics import TopicPolicy, TopicSpec
from pipelines.broker import EmbeddedBroker, free_port
from runtime.admin import declare_topics
from tests.integration.conftest import read_topic, start_worker, values, write_topology

pytestmark = pytest.mark.integration


async def test_collector_ingests_an_existing_kafka_topic(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    source = "external.tweets"
    # The user's own topic, there before crowdstream (which never creates it).
    await declare_topics([broker.bootstrap], [TopicSpec(source, source, 2)], TopicPolicy())
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


def test_broker_command_serves_until_interrupted(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CROWDSTREAM_DATA_DIR": str(tmp_path)},
        # As from a terminal: a suite started in the background of a shell without
        # job control runs with SIGINT ignored, and a child would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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
    assert (tmp_path / "kafka" / "node-1" / "meta.properties").is_file()  # its data stays


def test_broker_command_refuses_a_busy_port(broker: EmbeddedBroker) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "broker", "--port", str(broker.port)],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert b"in use" in done.stderr


def test_up_embedded_serves_a_third_party_client_and_cleans_up(tmp_path: Path) -> None:
    """`crowdstream up --embedded` as a user runs it, with a librdkafka client."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    broker_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "up",
            "--embedded",
            "--broker-port",
            str(broker_port),
            "--http-port",
            str(http_port),
            "--crowd",
            "none",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CROWDSTREAM_DATA_DIR": str(tmp_path / "data")},
    )
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline().decode() for _ in range(3)]
        assert any(f"kafka://127.0.0.1:{broker_port}" in line for line in banner)
        assert any(f"http://127.0.0.1:{http_port}" in line for line in banner)
        bootstrap = f"127.0.0.1:{broker_port}"
        producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
        for i in range(5):
            producer.produce(
                "crisis.items.raw",
                key=f"lib-{i}",
                value=orjson.dumps({"id": f"lib-{i}", "text": f"need help {i}"}),
            )
        assert producer.flush(30) == 0
        consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "reader", "fetch.wait.max.ms": 50}
        )
        consumer.assign(
            [
                confluent_kafka.TopicPartition(
                    "crisis.items.classified", p, confluent_kafka.OFFSET_BEGINNING
                )
                for p in range(4)
            ]
        )
        found: set[str] = set()
        deadline = time.monotonic() + 90  # includes the worker joining its group
        while len(found) < 5 and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                found.add(orjson.loads(message.value())["id"])
        consumer.close()
        assert found == {f"lib-{i}" for i in range(5)}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    with socket.socket() as sock:  # the embedded broker stopped with it
        assert sock.connect_ex(("127.0.0.1", broker_port)) != 0
