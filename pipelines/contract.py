"""The contract every registered PE keeps, checked in memory.

As river's ``check_estimator`` runs every estimator through the same checks,
:func:`check_pe` runs one PE of a topology through these, on the records a whole
pipeline run in memory wrote (:func:`sample_logs`):

- **dead letters**: a malformed record on any channel the PE reads does not stop
  it: what it writes for the valid records is unchanged, and a PE that polices the
  channel sends the record to ``items.rejected`` naming itself and a reason;
- **replay**: the same input gives the same output (wall-clock fields aside);
- **restart**: the state a PE declares durable (``ctx.durable``), rebuilt from the
  logs it follows after a restart, equals the state before;
- **event loop**: no callback holds the event loop longer than 100 ms.

A PE whose outputs depend on people (the annotator's crowd answers as and when its
workers do) declares ``replayable=False`` and skips the two comparisons; the other
checks hold for it too. tests/unit/test_contract.py runs every registered PE, so a
new PE is checked as soon as it registers (docs/extending.md).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from channels.jobs import JobCommand, LabelingJob
from pe.registry import PeSpec, pe_spec
from pipelines.sample import load_sample
from pipelines.testing import PeHarness, Record, encode_record
from pipelines.topology import Topology

__all__ = ["ContractError", "LoopWatch", "check_pe", "sample_logs"]

#: A callback that holds the event loop longer than this fails the contract.
MAX_HOLD_S = 0.1
#: Fields that say when something happened (or sign such a field): replays differ.
WALL_CLOCK_FIELDS = frozenset({"ts", "ts_in", "ts_out", "created", "updated", "signature"})
#: A record no codec accepts.
MALFORMED = b"\xff{not json"


class ContractError(AssertionError):
    """A PE broke its contract; the message says which check and how."""


async def sample_logs(topology: Topology, items: int = 300) -> dict[str, list[bytes]]:
    """Every channel's records from a run of the whole topology in memory: the bundled
    sample stream, the simulated crowd, a labeling job, retrains every 10 labels."""
    data = topology.model_dump(mode="json")
    params = data["params"]
    params["annotator"] = {**params.get("annotator", {}), "speed": 50}
    params["learner"] = {**params.get("learner", {}), "retrain_every": 10, "min_train": 10}
    fast = Topology.model_validate(data)
    raw = load_sample(items)
    classifier = fast.classifiers[0].name
    job = JobCommand(
        action="submit",
        job_id="contract-job",
        spec=LabelingJob(
            classifier=classifier,
            budget=5.0,
            items=[{"id": f"job-{i}", "text": item["text"]} for i, item in enumerate(raw[:20])],
        ),
        ts=time.time(),
    )
    submitted = job.model_dump_json().encode()
    async with PeHarness(fast) as run:
        await run.feed("jobs", [(job.job_id, submitted)])
        await run.feed("items.raw", raw)
        for _ in range(40):
            await run.tick()
            await asyncio.sleep(0.1)
        logs = run.written()
    logs["items.raw"] = [encode_record(item) for item in raw]
    logs["jobs"] = [submitted, *logs.get("jobs", [])]
    return logs


async def check_pe(topology: Topology, pe: str, logs: Mapping[str, Sequence[bytes]]) -> None:
    """Run every check on PE ``pe``; raise :class:`ContractError` on the first broken."""
    spec = pe_spec(pe)
    topology, inputs = _with_sources(topology, spec, _inputs(spec, topology, logs), logs)
    if not inputs:
        raise ContractError(f"{pe}: the sample run wrote nothing on its inputs {spec.inputs}")
    first = await _run(topology, pe, inputs)
    await _check_dead_letters(topology, spec, inputs, first)
    if spec.replayable:
        await _check_replay(topology, pe, inputs, first)
        await _check_restart(topology, spec, inputs)


def _inputs(
    spec: PeSpec, topology: Topology, logs: Mapping[str, Sequence[bytes]]
) -> dict[str, list[bytes]]:
    return {
        channel: list(logs[channel])
        for channel in spec.inputs
        if channel in topology.topics(1) and logs.get(channel)
    }


def _with_sources(
    topology: Topology,
    spec: PeSpec,
    inputs: dict[str, list[bytes]],
    logs: Mapping[str, Sequence[bytes]],
) -> tuple[Topology, dict[str, list[bytes]]]:
    """An outside topic a PE reads, declared ``kafka:<parameter>``, is set to a topic
    the contract feeds with the sample stream's raw items."""
    data = topology.model_dump(mode="json")
    for source in spec.inputs:
        if source.startswith("kafka:<") and source.endswith(">"):
            parameter, topic = source[len("kafka:<") : -1], f"contract.{spec.name}.source"
            data["params"][spec.name] = {**data["params"].get(spec.name, {}), parameter: topic}
            inputs[topic] = list(logs["items.raw"])
    return Topology.model_validate(data), inputs


async def _run(
    topology: Topology,
    pe: str,
    inputs: Mapping[str, Sequence[Record]],
) -> dict[str, list[Any]]:
    """Feed ``inputs`` channel by channel, one batch each, ticking the timers; what the
    PE wrote, by channel."""
    async with PeHarness(topology, [pe]) as run:
        async with _loop_watch(pe):
            await _feed(run, inputs)
        return {channel: _stable(values) for channel, values in run.all_outputs().items()}


async def _check_dead_letters(
    topology: Topology,
    spec: PeSpec,
    inputs: Mapping[str, Sequence[bytes]],
    clean: Mapping[str, Sequence[Any]],
) -> None:
    for channel in inputs:
        fouled = {
            key: ([MALFORMED, *records] if key == channel else list(records))
            for key, records in inputs.items()
        }
        out = await _run(topology, spec.name, fouled)
        rejected = [
            r
            for r in out.get("items.rejected", [])
            if r.get("raw") == MALFORMED.decode("utf-8", "replace")
        ]
        for record in rejected:
            if record.get("stage") != spec.name or not record.get("reason"):
                raise ContractError(
                    f"{spec.name}: dead letter without its stage or reason: {record}"
                )
        kept = {key: values for key, values in out.items() if key != "items.rejected"}
        expected = {key: values for key, values in clean.items() if key != "items.rejected"}
        if spec.replayable and kept != expected:
            raise ContractError(
                f"{spec.name}: a malformed record on {channel} changed what it wrote for the "
                f"valid ones ({_diff(expected, kept)})"
            )


async def _check_replay(
    topology: Topology,
    pe: str,
    inputs: Mapping[str, Sequence[bytes]],
    first: Mapping[str, Sequence[Any]],
) -> None:
    again = await _run(topology, pe, inputs)
    if again != first:
        raise ContractError(
            f"{pe}: a replay of the same input wrote otherwise ({_diff(first, again)})"
        )


async def _check_restart(
    topology: Topology, spec: PeSpec, inputs: Mapping[str, Sequence[bytes]]
) -> None:
    async with PeHarness(topology, [spec.name]) as run:
        async with _loop_watch(spec.name):
            await _feed(run, inputs)
        before = run.state(spec.name)
        followed = run.followed()
        written = run.written()
    if before is None:
        return  # no state kept across a restart
    # What a restarted PE finds: every log it follows as it was, its own writes too.
    # (The data-flow channels it reads in batches go on from committed offsets.)
    logs = {channel: [*inputs.get(channel, []), *written.get(channel, [])] for channel in followed}
    async with PeHarness(topology, [spec.name], logs=logs) as again:
        after = again.state(spec.name)
    if _stable(after) != _stable(before):
        raise ContractError(
            f"{spec.name}: its state rebuilt from the logs differs from the state before "
            f"the restart ({_first_difference(_stable(before), _stable(after))})"
        )


async def _feed(run: PeHarness, inputs: Mapping[str, Sequence[Record]]) -> None:
    """Each input channel as one batch, the timers ticked after each, then thrice."""
    for channel, records in inputs.items():
        await run.feed(channel, records)
        await run.tick()
    await run.tick(3)


class LoopWatch:
    """Measures how long the event loop was held: a task asks to wake every
    ``TICK_S``; waking later than that means some callback kept the loop that long
    (asyncio's debug mode would say which, but slows every callback several times)."""

    TICK_S = 0.01

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(self.TICK_S)
            self.longest = max(self.longest, time.perf_counter() - asked - self.TICK_S)

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        await asyncio.sleep(0)  # the watch is waiting before anything else runs
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


@asynccontextmanager
async def _loop_watch(pe: str) -> AsyncIterator[None]:
    """Fail if the event loop was held past MAX_HOLD_S while the PE worked (building
    the worker is not watched: a worker does that before its loop serves anything)."""
    # The harnesses run before this one left garbage a full collection would walk
    # while the PE works: that pause is the test's, not the PE's.
    gc.collect()
    async with LoopWatch() as watch:
        yield
    if watch.longest > MAX_HOLD_S:
        raise ContractError(
            f"{pe}: held the event loop {watch.longest * 1000:.0f} ms (at most "
            f"{MAX_HOLD_S * 1000:.0f} ms)"
        )


def _stable(value: Any) -> Any:
    """``value`` without the fields that say when (they differ between runs)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in WALL_CLOCK_FIELDS}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _diff(expected: Mapping[str, Sequence[Any]], got: Mapping[str, Sequence[Any]]) -> str:
    for channel in sorted(set(expected) | set(got)):
        want, have = list(expected.get(channel, [])), list(got.get(channel, []))
        if want != have:
            if len(want) != len(have):
                return f"{channel}: {len(want)} records expected, {len(have)} written"
            for i, (a, b) in enumerate(zip(want, have, strict=True)):
                if a != b:
                    return f"{channel} record {i}: {_first_difference(a, b)}"
    return "no difference"


def _first_difference(expected: Any, got: Any, path: str = "") -> str:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in sorted(set(expected) | set(got), key=str):
            if expected.get(key) != got.get(key):
                return _first_difference(expected.get(key), got.get(key), f"{path}.{key}")
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return f"{path or 'value'}: expected {expected!r:.200}, got {got!r:.200}"
