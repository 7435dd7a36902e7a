"""A crowd that replays a recorded one: the answers its workers gave, again, as fast
as they gave them.

An example of a crowd adapter added from outside crowdstream (docs/crowd.md walks
through it): the annotator's pool service drives it through the
:class:`~pe.annotator.crowd.CrowdAdapter` interface, and its workers act through the
service's :class:`~pe.annotator.crowd.WorkerDesk`, on the pool's clock. Plug it in
with the ``crowd`` setting::

    crowdstream up --crowd examples.replay_crowd:replay_crowd \\
        --set annotator.crowd_options.path=answers.jsonl

The recording is the answers export of an earlier run (``GET
/api/v1/export/answers?format=jsonl``): one row per answer, with its item,
classifier, worker, tag (or count) and latency. The replay is deterministic: the same
recording and the same tasks give the same answers at the same times.

- **Workers** are the recording's, in the order of their first answer, each joining
  once when the pool recruits, under their recorded id with a prefix
  (``replay-<id>``): labels tell replayed answers from recorded ones, and the
  quality loop and the pool's journal keep the two apart (a replay into the
  pipeline that was recorded reads the recorded workers' history from its logs).
  A recording holds no departures, so they never vanish; once all have joined,
  recruits no longer come. A qualification quiz is answered right: they were
  admitted in the recorded run.
- **Answers**: a task about an item (classifier and item id) gets the worker's own
  recorded answer to it, else the first recorded answer to it nobody gives yet, each
  after its recorded latency. With none left (straggler duplicates and adaptive
  redundancy can ask more answers than were recorded, or the item was never
  recorded), the worker answers N/A where the classifier allows it, and otherwise
  guesses as the simulated crowd's workers who cannot tell do: a tag (a count for a
  count task), drawn from the worker and the item, so every replay guesses alike.
  An enumeration gets "nothing found": the export does not carry enumerated values.
  Those answers take the worker's mean recorded latency.
- **Terminated** and **released** work is never answered, and a recorded answer
  that was not given goes back to the recording for another task of the item.
"""

from __future__ import annotations

import functools
import logging
import random
import statistics
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from channels.codec import DecodeError, decode, iter_json_lines
from channels.records import NA_TAG, Task
from pe.annotator.clock import Clock, Handle
from pe.annotator.crowd import CrowdAdapter, WorkerDesk
from pe.annotator.plugin import CrowdSetup
from pe.annotator.pool import AnswerValue, PoolTask

__all__ = ["RecordedAnswer", "ReplayCrowd", "read_recording", "replay_crowd"]

log = logging.getLogger(__name__)

#: What an answer is about: the classifier and the item (a count task's batch).
Key = tuple[str, str]


class RecordedAnswer(BaseModel):
    """The columns of an answers export (pe.common.export) a replay reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    item_id: str
    classifier: str
    worker_id: str
    tag: str | None = None  #: label tasks
    count: int | None = None  #: count tasks
    latency_s: float = Field(ge=0)


def read_recording(path: Path) -> list[RecordedAnswer]:
    """The answers of an answers export in JSON lines, in the file's order."""
    answers = []
    for number, line in enumerate(iter_json_lines(path.read_bytes()), 1):
        try:
            answers.append(decode(RecordedAnswer, line))
        except DecodeError as exc:
            raise ValueError(f"{path}: answer {number}: {exc}") from None
    return answers


@dataclass(frozen=True)
class _Answer:
    worker_id: str  #: as recorded, without the prefix
    value: AnswerValue
    latency_s: float


@dataclass
class _Pending:
    """An answer on its way."""

    task_id: str
    handle: Handle
    kind: str  #: own, other, na or guess (ReplayCrowd.replayed)
    taken: tuple[Key, int] | None  #: the recorded answer it gives, if one


@dataclass
class _Worker:
    recorded_id: str
    pace_s: float  #: mean recorded latency: what a quiz item, an N/A or a guess takes
    heartbeat: Handle | None = None
    quiz: Handle | None = None
    pending: _Pending | None = None


class ReplayCrowd(CrowdAdapter):
    """The workers and answers of ``answers``, replayed on ``clock``."""

    def __init__(
        self,
        answers: Sequence[RecordedAnswer],
        clock: Clock,
        *,
        prefix: str = "replay",
        heartbeat_s: float = 15.0,
    ) -> None:
        self.clock = clock
        self.prefix = prefix
        self.heartbeat_s = heartbeat_s
        self._recorded: dict[Key, list[_Answer]] = {}
        latencies: dict[str, list[float]] = {}
        for row in answers:
            value = row.tag if row.tag is not None else row.count
            if value is None:
                continue  # an enumeration's: the export does not carry its values
            answer = _Answer(row.worker_id, value, row.latency_s)
            self._recorded.setdefault((row.classifier, row.item_id), []).append(answer)
            latencies.setdefault(row.worker_id, []).append(row.latency_s)
        if not latencies:
            raise ValueError("the recording has no label or count answers to replay")
        self._pace = {worker: statistics.fmean(x) for worker, x in latencies.items()}
        #: Recorded workers yet to join, in the order of their first answer.
        self._roster = deque(self._pace)
        self._taken: set[tuple[Key, int]] = set()  #: recorded answers given or on their way
        self._desk: WorkerDesk | None = None
        self.workers: dict[str, _Worker] = {}
        #: Answers given, by where they came from: the worker's ``own`` recorded one,
        #: an ``other`` worker's, ``na`` or a ``guess`` (none left).
        self.replayed: Counter[str] = Counter()

    def start(self, desk: WorkerDesk) -> None:
        self._desk = desk

    def recruit(self, count: int) -> None:
        coming = min(count, len(self._roster))
        for _ in range(coming):
            # Joins come as events of their own, as a platform's do, never from
            # inside the pool service's call.
            self.clock.call_later(0.0, functools.partial(self._arrive, self._roster.popleft()))
        if coming < count:
            log.warning(
                "replay: the recording's %d workers have all joined; the pool stays %d short",
                len(self._pace),
                count - coming,
            )

    def resume(self, worker_ids: list[str]) -> None:
        """Replayed workers of the pool before a restart come back at once. Which
        answers were given is not kept: the tasks still open are replayed afresh."""
        for worker_id in worker_ids:
            recorded_id = worker_id.removeprefix(f"{self.prefix}-")
            if recorded_id != worker_id and recorded_id in self._roster:
                self._roster.remove(recorded_id)
                self.clock.call_later(0.0, functools.partial(self._arrive, recorded_id))

    def _arrive(self, recorded_id: str) -> None:
        desk = self._desk
        if desk is None:
            return
        worker_id = f"{self.prefix}-{recorded_id}"
        worker = _Worker(recorded_id, self._pace[recorded_id])
        # Known before joining: the join itself may offer them a task.
        self.workers[worker_id] = worker
        quiz = desk.join(worker_id)
        self._beat(worker_id)
        if quiz:
            # They answered tasks in the recorded run, so they passed its quiz.
            answers = {gold.gold_id: gold.truth for gold in quiz}
            qualify = functools.partial(self._qualify, worker_id, answers)
            worker.quiz = self.clock.call_later(worker.pace_s * len(quiz), qualify)

    def _qualify(self, worker_id: str, answers: dict[str, str]) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or self._desk is None:
            return
        worker.quiz = None
        if not self._desk.qualify(worker_id, answers):
            self._drop(worker_id)

    def _beat(self, worker_id: str) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or self._desk is None:
            return
        if not self._desk.heartbeat(worker_id):
            self._drop(worker_id)  # the pool no longer knows them
            return
        beat = functools.partial(self._beat, worker_id)
        worker.heartbeat = self.clock.call_later(self.heartbeat_s, beat)

    def offer(self, worker_id: str, task: PoolTask) -> None:
        worker = self.workers.get(worker_id)
        if worker is None:
            return
        payload: Task = task.payload
        key = (payload.classifier, payload.item_id)
        taken = self._take(key, worker.recorded_id)
        if taken is not None:
            answer = self._recorded[key][taken[1]]
            own = answer.worker_id == worker.recorded_id
            value, seconds, kind = answer.value, answer.latency_s, "own" if own else "other"
        else:
            value, kind = self._blank(worker_id, payload)
            seconds = worker.pace_s
        deliver = functools.partial(self._deliver, worker_id, task.task_id, value)
        handle = self.clock.call_later(seconds, deliver)
        worker.pending = _Pending(task.task_id, handle, kind, taken)

    def _take(self, key: Key, recorded_id: str) -> tuple[Key, int] | None:
        """The worker's own recorded answer about ``key`` not given yet, else the
        first one of anyone's; None if every one is given."""
        answers = self._recorded.get(key, [])
        free = [i for i in range(len(answers)) if (key, i) not in self._taken]
        if not free:
            return None
        own = [i for i in free if answers[i].worker_id == recorded_id]
        taken = (key, (own or free)[0])
        self._taken.add(taken)
        return taken

    def _blank(self, worker_id: str, task: Task) -> tuple[AnswerValue, str]:
        """The answer of a worker the recording has nothing left for, and its kind."""
        if task.form == "enumerate":
            return (), "na"
        if task.form == "label" and task.na_allowed:
            return NA_TAG, "na"
        # Seeded by the worker and the item (never by the task id, new in every run):
        # each replay makes the same guess.
        rng = random.Random(f"{worker_id}:{task.classifier}:{task.item_id}")
        guess = rng.randint(0, len(task.batch)) if task.form == "count" else rng.choice(task.tags)
        log.warning(
            "replay: %s guessed %r for %s %s: nothing recorded is left for it and N/A is "
            "not an answer",
            worker_id,
            guess,
            task.classifier,
            task.item_id,
        )
        return guess, "guess"

    def _deliver(self, worker_id: str, task_id: str, value: AnswerValue) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.pending is None or self._desk is None:
            return
        self.replayed[worker.pending.kind] += 1
        worker.pending = None
        self._desk.answer(worker_id, task_id, value)

    def terminate(self, worker_id: str, task_id: str) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None and worker.pending is not None and worker.pending.task_id == task_id:
            self._cancel(worker)

    def _cancel(self, worker: _Worker) -> None:
        pending, worker.pending = worker.pending, None
        if pending is None:
            return
        pending.handle.cancel()
        if pending.taken is not None:
            # Not given: another task about the item may give it.
            self._taken.discard(pending.taken)

    def release(self, worker_id: str) -> None:
        self._drop(worker_id)

    def _drop(self, worker_id: str) -> None:
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return
        self._cancel(worker)
        for handle in (worker.heartbeat, worker.quiz):
            if handle is not None:
                handle.cancel()

    def stop(self) -> None:
        for worker_id in list(self.workers):
            self._drop(worker_id)
        self._desk = None


def replay_crowd(setup: CrowdSetup) -> ReplayCrowd:
    """The factory of ``--crowd examples.replay_crowd:replay_crowd``.

    ``crowd_options``: ``path``, the recording (an answers export in JSON lines,
    required); ``prefix`` of the replayed workers' ids (default ``replay``).
    """
    path = setup.options.get("path")
    if not path:
        msg = "the replay crowd needs crowd_options.path: an answers export to replay"
        raise ValueError(msg)
    return ReplayCrowd(
        read_recording(Path(path)),
        setup.clock,
        prefix=setup.options.get("prefix", "replay"),
        # Four heartbeats per timeout, as the web crowd's page sends them: a replayed
        # worker is never taken for gone, whatever the timeout.
        heartbeat_s=setup.params.heartbeat_timeout_s / 4,
    )
