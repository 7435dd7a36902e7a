"""The bundled sample stream of real crisis messages (see pipelines/data/README.md)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

__all__ = ["SAMPLE_PATH", "STREAM_PATH", "known_tags", "load_sample", "load_tagged"]

SAMPLE_PATH = Path(__file__).parent / "data" / "crisis_sample.jsonl.gz"
#: 12,000 more messages of the same data set, none of them in the sample: with it, the
#: demo's stream lasts the minutes its learner's teacher needs.
STREAM_PATH = Path(__file__).parent / "data" / "crisis_stream.jsonl.gz"


def load_sample(limit: int | None = None, path: Path = SAMPLE_PATH) -> list[dict[str, Any]]:
    """The first ``limit`` messages of ``path`` (the sample's 4,000 by default), as
    dicts."""
    rows: list[dict[str, Any]] = []
    with gzip.open(path, "rb") as handle:
        for line in handle:
            if limit is not None and len(rows) >= limit:
                break
            rows.append(orjson.loads(line))
    return rows


def known_tags(
    truth_fields: dict[str, str], path: Path = SAMPLE_PATH
) -> dict[str, list[tuple[str, str, str]]]:
    """Gold items per classifier: (id, text, tag) of the messages of a JSON-lines file
    (the bundled sample by default) whose tag is known; ``truth_fields`` maps a
    classifier to its key in ``meta.truth``."""
    gold: dict[str, list[tuple[str, str, str]]] = {name: [] for name in truth_fields}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        records = [orjson.loads(line) for line in handle if line.strip()]
    for record in records:
        truth = record.get("meta", {}).get("truth", {})
        for name, key in truth_fields.items():
            tag = truth.get(key)
            if tag is not None:
                gold[name].append((str(record["id"]), str(record["text"]), str(tag)))
    return gold


def load_tagged(path: Path, classifier: str) -> list[tuple[str, str]]:
    """(text, "yes"/"no") of every message of a JSON-lines file (``.gz`` too) whose
    tag for ``classifier`` is known: the bundled sample keeps tags in ``meta.truth``,
    the full dataset 0/1 ``labels``."""
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rb") as handle:
        for line in handle:
            record = orjson.loads(line)
            if "labels" in record:
                value = record["labels"].get(classifier)
                tag = None if value is None else ("yes" if int(value) == 1 else "no")
            else:
                tag = record.get("meta", {}).get("truth", {}).get(classifier)
            if tag in ("yes", "no") and record.get("text"):
                records.append((str(record["text"]), str(tag)))
    return records
