"""A live feed for tests and benchmarks: an independent client (confluent-kafka)
pushing items at a steady rate, as a collector of a crisis's messages would."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

__all__ = ["SteadyProducer"]


class SteadyProducer:
    """Pushes items to ``<pipeline>.items.raw`` at a steady rate from a thread of its
    own, with confluent-kafka (librdkafka): a client independent of crowdstream's.

    Before item ``i`` of ``holds`` it waits until that item's event is set.
    """

    def __init__(
        self,
        bootstrap: str,
        pipeline: str,
        rows: Sequence[tuple[str, bytes]],
        rate: float,
        *,
        holds: Mapping[int, threading.Event] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        """``overrides`` replace producer settings (to check that the test can fail)."""
        self.topic = f"{pipeline}.items.raw"
        self.rows = rows
        self.rate = rate
        self.holds = dict(holds or {})
        self.config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            # Java's partitioner, as crowdstream's clients use: an id lives on the same
            # partition whoever writes it.
            "partitioner": "murmur2_random",
            # Its disconnects while a node is down are logged, not printed.
            "logger": logging.getLogger("tests.feeds.producer"),
            **(overrides or {}),
        }
        self.sent = 0
        self.acked = 0
        self.errors: list[str] = []
        #: Per acknowledged record: when it was sent (epoch seconds), and how long
        #: its acknowledgement took.
        self.acks: list[tuple[float, float]] = []
        self.held_s = 0.0
        self._sent_at: list[float] = [0.0] * len(rows)
        self._thread = threading.Thread(target=self._run, name="steady-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"the pusher did not finish in {timeout_s:.0f} s")

    def _run(self) -> None:
        producer = Producer(self.config)
        # The first record goes alone: the client's start (metadata, a producer id)
        # takes seconds on a loaded machine, and is no pause of a fault.
        self._send(producer, 0)
        producer.flush(60)
        self.acks.clear()
        started = time.monotonic() - 1 / self.rate
        for i in range(1, len(self.rows)):
            hold = self.holds.get(i)
            if hold is not None and not hold.is_set():
                held = time.monotonic()
                while not hold.wait(0.05):
                    producer.poll(0)
                waited = time.monotonic() - held
                self.held_s += waited
                started += waited
            while (ahead := started + i / self.rate - time.monotonic()) > 0:
                producer.poll(min(ahead, 0.05))
            self._send(producer, i)
        left = producer.flush(120)
        if left:
            self.errors.append(f"{left} records not delivered within 120 s of the end")

    def _send(self, producer: Producer, i: int) -> None:
        key, value = self.rows[i]
        self._sent_at[i] = time.time()
        while True:
            try:
                producer.produce(self.topic, value, key, on_delivery=partial(self._delivered, i))
                break
            except BufferError:  # its queue is full while a node is away
                producer.poll(0.1)
        self.sent = i + 1
        producer.poll(0)

    def _delivered(self, index: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(f"{msg.key()!r}: {err}")
            return
        self.acked += 1
        sent = self._sent_at[index]
        self.acks.append((sent, time.time() - sent))
