"""The bundled sample stream of real crisis messages (see pipelines/data/README.md)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

__all__ = ["SAMPLE_PATH", "load_sample"]

SAMPLE_PATH = Path(__file__).parent / "data" / "crisis_sample.jsonl.gz"


def load_sample(limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` messages (all 4,000 by default), as dicts."""
    rows: list[dict[str, Any]] = []
    with gzip.open(SAMPLE_PATH, "rb") as handle:
        for line in handle:
            if limit is not None and len(rows) >= limit:
                break
            rows.append(orjson.loads(line))
    return rows
