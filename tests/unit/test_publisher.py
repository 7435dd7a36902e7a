"""Where the publisher puts a keyed record: Kafka's default partitioner."""

from __future__ import annotations

from aiokafka.partitioner import murmur2

from runtime.batches import KeyHashes


def test_key_hashes_are_those_of_kafkas_default_partitioner() -> None:
    hashes = KeyHashes(memory=100)
    keys = [f"item-{n}".encode() for n in range(250)] + [b"", "é".encode(), b"item-7"]
    # Hashed, then again from memory or, past the memory, afresh: the same values.
    for _ in range(2):
        assert [hashes(key) for key in keys] == [murmur2(key) & 0x7FFFFFFF for key in keys]
