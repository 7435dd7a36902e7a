"""Job files: a job spec in YAML or JSON, whose items may come from a file.

``items_file`` (JSON lines, ``.gz`` too, each line an item ``{"id", "text",
"meta"}``) is read relative to the job file and sent inline: the server never
reads paths it is given.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import TypeAdapter

from channels.jobs import JobSpec

__all__ = ["load_job_file"]

_SPEC: TypeAdapter[Any] = TypeAdapter(JobSpec)


def load_job_file(path: Path) -> Any:
    """The validated job spec in ``path``; ValueError says what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path.name}: not valid YAML or JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path.name}: a job is a mapping (kind, budget, items or stream, ...)")
    items_file = raw.pop("items_file", None)
    if items_file is not None:
        if "items" in raw:
            raise ValueError(f"{path.name}: give items or items_file, not both")
        raw["items"] = _read_items(path.parent / str(items_file))
    return _SPEC.validate_python(raw)


def _read_items(path: Path) -> list[Any]:
    if not path.is_file():
        raise ValueError(f"items_file {str(path)!r} is not a file")
    opener = gzip.open if path.suffix == ".gz" else open
    items = []
    with opener(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path.name}:{number}: invalid JSON: {exc}") from None
    return items
