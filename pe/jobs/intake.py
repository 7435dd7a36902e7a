"""Reading a job command off its log without holding the event loop.

A submission may carry 100,000 items. On the loop, parsing and validating one of
20,000 items held it 0.4 s (JSON 0.14-0.26 s, pydantic 0.24 s, measured) and hashing
their features in a thread held it 0.2 s at a time (the hashing holds the
interpreter lock). So a big command is read in a helper process, which parses and
validates it and computes its items' features, and hands back plain tuples; the
loop builds the items from them a chunk at a time, letting go between chunks.
Small commands (cancellations, sheds, small jobs) are read on the loop.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from channels.codec import DecodeError, decode, summarise
from channels.jobs import JobCommand, JobItem
from pe.common.hashing import sparse_rows
from pe.common.lifecycle import Helper
from pe.common.linear import feature_matrix
from pe.common.space import FeatureSpace
from pe.params import FeaturesParams

__all__ = ["BIG_BYTES", "CHUNK", "Featurizer", "read_command"]

#: A command at least this big is read in the helper process.
BIG_BYTES = 64 * 1024
#: Items built at a time on the loop from the helper's tuples: a chunk of 1,000 held
#: the loop 68 ms on an idle two-core machine and over 100 ms in a loaded test run
#: (about 60 µs an item, with its feature lists).
CHUNK = 250
_ITEMS = TypeAdapter(list[JobItem])
#: Where a command keeps items: its own (windows) and its spec's (submissions).
_PLACES = (("items",), ("spec", "items"))

#: A place's items from the helper: (id, text, meta, predicted) of each, and their
#: features as a CSR matrix's indptr, indices and data.
_Items = tuple[list[tuple[str, str, dict[str, Any], float | None]], Any, Any, Any]
#: What the helper hands back: the command without its items, and each place's
#: items; or the reason and kind of a DecodeError.
_Read = tuple[dict[str, Any], dict[tuple[str, ...], _Items]] | tuple[str, str]


class Featurizer:
    """Reads big commands and computes features in a helper process of its own,
    started at the first job with items (it dies with the worker: pe.common.lifecycle)."""

    def __init__(self, params: FeaturesParams) -> None:
        self.params = params
        self._helper: Helper | None = None

    async def call(self, work: Any, *args: Any) -> Any:
        """``work(params, *args)`` in the helper. If the helper dies (killed, out of
        memory), another is started and the work tried once more; if that one dies
        too, the work is what kills it, and the command is refused (DecodeError)."""
        if self._helper is None:
            self._helper = Helper("jobs-intake")
        for _ in range(2):
            executor = self._helper.executor
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    executor, work, self.params, *args
                )
            except BrokenProcessPool as exc:
                self._helper.renew(executor, exc)
        msg = "its helper process died twice reading this command (too big for memory?)"
        raise DecodeError(msg, "error")


async def read_command(raw: bytes | None, featurizer: Featurizer) -> JobCommand:
    """The command in ``raw``, its items with their features; DecodeError if invalid."""
    if raw is None or len(raw) < BIG_BYTES:
        return await _with_features(decode(JobCommand, raw), featurizer)
    found: _Read = await featurizer.call(_read, raw)
    if len(found) == 2 and isinstance(found[0], str):
        raise DecodeError(found[0], str(found[1]))
    data, places = found
    for place, (fields, indptr, indices, values) in places.items():
        items: list[JobItem] = []
        for start in range(0, len(fields), CHUNK):
            for n, (item_id, text, meta, predicted) in enumerate(
                fields[start : start + CHUNK], start
            ):
                a, b = indptr[n], indptr[n + 1]
                items.append(
                    JobItem.model_construct(
                        id=item_id,
                        text=text,
                        meta=meta,
                        idx=indices[a:b].tolist(),
                        val=values[a:b].tolist(),
                        predicted=predicted,
                    )
                )
            await asyncio.sleep(0)  # let the loop serve others between chunks
        _put(data, place, items)  # in place of the stand-in
    # The items are models already: validating the command does not look into them.
    return JobCommand.model_validate(data)


async def _with_features(command: JobCommand, featurizer: Featurizer) -> JobCommand:
    """A small command with features on the items it carries."""
    update: dict[str, Any] = {}
    if command.items:
        update["items"] = await _featured(command.items, featurizer)
    if command.spec is not None and command.spec.items:
        items = await _featured(command.spec.items, featurizer)
        update["spec"] = command.spec.model_copy(update={"items": items})
    return command.model_copy(update=update) if update else command


async def _featured(items: list[JobItem], featurizer: Featurizer) -> list[JobItem]:
    todo = [item for item in items if not item.idx]
    if not todo:
        return items
    rows = await featurizer.call(_rows, [item.text for item in todo])
    done = {
        item.id: item.model_copy(update={"idx": idx, "val": val})
        for item, (idx, val) in zip(todo, rows, strict=True)
    }
    return [done.get(item.id, item) for item in items]


def _put(data: dict[str, Any], place: tuple[str, ...], value: Any) -> None:
    for key in place[:-1]:
        data = data[key]
    data[place[-1]] = value


# -- in the helper process ---------------------------------------------------------


@functools.cache
def _space(params: FeaturesParams) -> FeatureSpace:
    return FeatureSpace(params)  # made once, at the helper's first call


def _rows(params: FeaturesParams, texts: list[str]) -> list[tuple[list[int], list[float]]]:
    return sparse_rows(_space(params).matrix(texts))


def _read(params: FeaturesParams, raw: bytes) -> _Read:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON: {exc}", "json"
    if not isinstance(data, dict):
        return "expected a JSON object", "schema"
    places: dict[tuple[str, ...], _Items] = {}
    for place in _PLACES:
        holder: Any = data
        for key in place[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        found = holder.get(place[-1]) if isinstance(holder, dict) else None
        if not isinstance(found, list) or not found:
            continue
        try:
            items = _ITEMS.validate_python(found)
        except ValidationError as exc:
            return summarise(exc), "schema"
        # Features of every item, given or computed, as one CSR matrix: arrays cross
        # the process boundary as bytes, where lists of numbers are objects each.
        todo = [i for i, item in enumerate(items) if not item.idx]
        computed = _space(params).matrix([items[i].text for i in todo]) if todo else None
        rows: list[tuple[list[int], list[float]]] = [(item.idx, item.val) for item in items]
        if computed is not None:
            for i, row in zip(todo, sparse_rows(computed), strict=True):
                rows[i] = row
        matrix = feature_matrix(rows, params.dimensions)
        fields = [(item.id, item.text, item.meta, item.predicted) for item in items]
        places[place] = (fields, matrix.indptr, matrix.indices, matrix.data)
        # The rest of the command is checked below with one stand-in for these items.
        holder[place[-1]] = [{"id": "stand-in", "text": "x"}]
    try:
        JobCommand.model_validate(data)
    except ValidationError as exc:
        return summarise(exc), "schema"
    return data, places
