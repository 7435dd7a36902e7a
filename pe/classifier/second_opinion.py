"""The classifier's second pass: a distilled model's teacher decides again the items
its student is least sure of.

The word model (the student) classifies every item at the stream's speed. Its
teacher, a logistic regression over a sentence encoder's embedding, decides better
(docs/quality.md) but embeds tens of items a second on a core. A model published
with a second opinion (channels.records.SecondOpinion) names a band of the student's
probability around its threshold, where about ``learner.second_opinion_share`` of the
stream lies. An item whose student probability falls in it (and whose tag is the
model's, not the crowd's) is queued here after its record is out: its first
classification, or a crowd label's revision of it, whose other classifiers' tags are
the models'. A helper process embeds the queue a batch at a time, and the item's
record is written again as the next revision (one above the record's: 1, or
channels.records.SECOND_OPINION_REVISION, for a first classification), each such
classifier's tag decided by the mean of the two models' log-odds
(``second_opinion: true`` on the tag).

Best effort, by design: the item's record is already out, so the queue is
bounded (``classifier.second_opinion_queue``), and a crash loses what was queued.
The queue is kept most doubtful first: the helper takes the items whose student
probability lies nearest its threshold (CompiledOpinion.distance), and a full queue
sheds the least doubtful (counted), which may be the newcomer. An item whose record
is older than ``classifier.second_opinion_max_age_s`` leaves the queue unrevised
(counted as expired) before the helper takes its next batch. Under load, the
helper's few embeddings a second go where a second opinion changes most tags
(docs/quality.md, "The second opinion"); the other tags stay the student's.

An item whose near-duplicate the helper embedded lately (a retweet, a copy) takes
that embedding from the memory (pe.classifier.embedding_memory) and is served first:
it costs the helper nothing. Near-duplicates waiting in one batch are embedded once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from sortedcontainers import SortedKeyList

from pe.classifier.embedding_memory import EmbeddingMemory
from pe.common.embedding import load_embedder
from pe.common.lifecycle import Helper
from pe.common.linear import CompiledModel, CompiledOpinion

__all__ = [
    "BATCH",
    "Doubt",
    "Queued",
    "SecondOpinions",
    "doubt",
    "embed_texts",
    "revise",
]

log = logging.getLogger(__name__)

#: Items embedded a call: MiniLM pads a batch to its longest text, and larger batches
#: embed more a second (pe.learner.teacher.EMBED_BATCH); a smaller one than the
#: teacher's keeps each revision within seconds.
BATCH = 128
#: After the helper failed (an encoder's fault, not a death), the wait before the
#: next batch.
RETRY_S = 5.0


@dataclass(frozen=True)
class Doubt:
    """A tag to decide again: the second opinion of the model that gave it (it belongs
    with that student), the model's two tags, and the student's probability of the
    decision's tag."""

    opinion: CompiledOpinion
    decided: str  #: the decision's tag
    other: str
    probability: float


@dataclass(frozen=True)
class Queued:
    """An item classified and waiting for a second opinion: its record (a first
    classification or a crowd label's revision), its tags to decide again, by
    classifier, and its place in the queue."""

    record: dict[str, Any]
    doubts: dict[str, Doubt]
    seq: int  #: arrival: among equally doubtful items, the older goes first
    sig: int = 0  #: its text's SimHash (0: none), to find its near-duplicates
    #: The memory held a near-duplicate's embedding for each of its doubts when it came.
    recalled: bool = False

    @property
    def encoders(self) -> set[str]:
        """The encoders its doubts' second opinions need."""
        return {found.opinion.encoder for found in self.doubts.values()}

    def order(self) -> tuple[bool, float, int]:
        """Those the memory can serve first (they cost no embedding), then the most
        doubtful: its most doubtful tag's distance, then arrival."""
        # The queue computes it once, when the item is added.
        nearest = min(found.opinion.distance(found.probability) for found in self.doubts.values())
        return not self.recalled, nearest, self.seq


def embed_texts(encoder: str, texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """Embed ``texts`` in the helper process (the encoder is loaded once there)."""
    return load_embedder(encoder)(texts)


def doubt(model: CompiledModel | None, prediction: Mapping[str, Any]) -> Doubt | None:
    """The doubt of a model's tag (a TagPrediction dict) if it is one to decide again:
    the model's own, with a second opinion, in its band."""
    if model is None or model.second_opinion is None or model.decision is None:
        return None
    if prediction.get("source") != "model":
        return None  # the crowd's tag, the item's or a near-duplicate's
    column = model.decision[0]
    decided, other = model.classes[column], model.classes[1 - column]
    confidence = float(prediction["confidence"])
    probability = confidence if prediction["tag"] == decided else 1.0 - confidence
    opinion = model.second_opinion
    if not opinion.in_band(probability):
        return None
    return Doubt(opinion, decided, other, probability)


class SecondOpinions:
    """The bounded queue of items to decide again, and the loop that does it."""

    def __init__(
        self, capacity: int, max_age_s: float = 0.0, memory: EmbeddingMemory | None = None
    ) -> None:
        self.capacity = capacity
        self.max_age_s = max_age_s  #: 0: no limit
        self.memory = memory  #: None: every item is embedded
        self.queue: SortedKeyList[Queued, tuple[bool, float, int]] = SortedKeyList(key=Queued.order)
        self.busy = 0  #: items taken from the queue and not yet written
        self._ready = asyncio.Event()
        self._seq = 0

    @property
    def waiting(self) -> int:
        """Items queued or being decided again."""
        return len(self.queue) + self.busy

    def offer(
        self,
        records: Sequence[dict[str, Any]],
        sigs: Sequence[int],
        models: Mapping[str, CompiledModel],
    ) -> dict[str, int]:
        """Queue the records (ClassifiedItem dicts) with a tag for a second opinion;
        ``sigs``: their texts' signatures; ``models``: the models that classified
        them, by classifier. Returns, by classifier, the entries shed: the least
        doubtful of a full queue and the newcomers."""
        shed: dict[str, int] = {}
        entries = []
        for record, sig in zip(records, sigs, strict=True):
            chosen = {
                name: found
                for name, prediction in record["labels"].items()
                if (found := doubt(models.get(name), prediction)) is not None
            }
            if chosen:
                self._seq += 1
                entries.append(Queued(record, chosen, self._seq, sig))
        for queued in self._mark_recalled(entries):
            self.queue.add(queued)
            if len(self.queue) > self.capacity:
                for name in self.queue.pop().doubts:
                    shed[name] = shed.get(name, 0) + 1
        if self.queue:
            self._ready.set()
        return shed

    def _mark_recalled(self, entries: list[Queued]) -> list[Queued]:
        """``entries``, those whose every encoder's embedding the memory holds marked."""
        if self.memory is None or not entries:
            return entries
        held = [True] * len(entries)
        for encoder in {encoder for queued in entries for encoder in queued.encoders}:
            rows = [i for i, queued in enumerate(entries) if encoder in queued.encoders]
            found = self.memory.recall(encoder, [entries[i].sig for i in rows])
            for i, vector in zip(rows, found, strict=True):
                held[i] = held[i] and vector is not None
        return [replace(q, recalled=True) if h else q for q, h in zip(entries, held, strict=True)]

    def expire(self, now: float) -> dict[str, int]:
        """Drop the entries whose record was written more than ``max_age_s`` before
        ``now``; returns, by classifier, the entries dropped."""
        if self.max_age_s <= 0:
            return {}
        oldest = now - self.max_age_s
        stale = [queued for queued in self.queue if queued.record["ts_out"] < oldest]
        expired: dict[str, int] = {}
        for queued in stale:
            self.queue.remove(queued)
            for name in queued.doubts:
                expired[name] = expired.get(name, 0) + 1
        if not self.queue:
            self._ready.clear()
        return expired

    def take(self, most: int = BATCH) -> list[Queued]:
        """The ``most`` most doubtful entries, out of the queue."""
        batch = [self.queue.pop(0) for _ in range(min(most, len(self.queue)))]
        if not self.queue:
            self._ready.clear()
        return batch

    async def ready(self) -> None:
        """Wait until something is queued."""
        await self._ready.wait()

    async def run(
        self,
        helper: Helper,
        publish: Callable[[list[dict[str, Any]]], Awaitable[None]],
        now: Callable[[], float],
        counted: Callable[[str, bool], None],
        expired: Callable[[Mapping[str, int]], None],
        embedded: Callable[[str, int], None] = lambda source, count: None,
    ) -> None:
        """Forever: embed a batch of the queue in ``helper``'s process, ``publish`` the
        revised records; ``counted(classifier, changed)`` for each tag decided again,
        ``expired`` with the tags that waited too long (:meth:`expire`),
        ``embedded(source, count)`` with the embeddings the encoder computed
        (``encoder``) and those a near-duplicate's served (``near_duplicate``)."""
        while True:
            await self.ready()
            expired(self.expire(now()))
            batch = self.take()
            if not batch:
                continue
            self.busy = len(batch)
            executor = helper.executor
            try:
                vectors = await self._vectors(executor, batch, embedded)
                revised = [
                    revise(queued, vectors, i, now(), counted) for i, queued in enumerate(batch)
                ]
                await publish([record for record in revised if record is not None])
            except BrokenProcessPool as exc:
                helper.renew(executor, exc)  # the batch is lost: its first tags stand
            except Exception:  # an encoder's or the broker's: the batch's first tags stand
                log.exception("a batch of second opinions failed; the next in %.0f s", RETRY_S)
                await asyncio.sleep(RETRY_S)
            finally:
                self.busy = 0

    async def _vectors(
        self,
        executor: Executor,
        batch: Sequence[Queued],
        counted: Callable[[str, int], None],
    ) -> dict[tuple[str, int], npt.NDArray[np.float32]]:
        """Each item's embedding by each encoder its doubts need, by (encoder,
        position): a near-duplicate's from the memory, else the encoder's, computed
        once for the items of one signature and remembered."""
        by_encoder: dict[str, list[int]] = {}
        for i, queued in enumerate(batch):
            for encoder in queued.encoders:
                by_encoder.setdefault(encoder, []).append(i)
        loop = asyncio.get_running_loop()
        vectors: dict[tuple[str, int], npt.NDArray[np.float32]] = {}
        for encoder, rows in by_encoder.items():
            sigs = [batch[i].sig for i in rows]
            held = self.memory.recall(encoder, sigs) if self.memory else [None] * len(rows)
            first: dict[int, int] = {}  #: a signature -> the row embedded for it
            copies: dict[int, int] = {}  #: a row -> the row whose embedding it shares
            todo: list[int] = []
            for i, sig, vector in zip(rows, sigs, held, strict=True):
                if vector is not None:
                    vectors[encoder, i] = vector
                elif sig and sig in first:
                    copies[i] = first[sig]
                else:
                    first[sig] = i
                    todo.append(i)
            if todo:
                texts = [batch[i].record["text"] for i in todo]
                computed = await loop.run_in_executor(executor, embed_texts, encoder, texts)
                vectors.update(((encoder, i), computed[j]) for j, i in enumerate(todo))
                if self.memory is not None:
                    self.memory.keep(encoder, [batch[i].sig for i in todo], computed)
            vectors.update(((encoder, i), vectors[encoder, j]) for i, j in copies.items())
            counted("encoder", len(todo))
            counted("near_duplicate", len(rows) - len(todo))
        return vectors


def revise(
    queued: Queued,
    embedded: Mapping[tuple[str, int], npt.NDArray[np.float32]],
    row: int,
    now: float,
    counted: Callable[[str, bool], None],
) -> dict[str, Any] | None:
    """``queued``'s record as its second opinion's revision, each of its classifiers' tags
    decided by the second opinion (``embedded``: by encoder and ``row``, the item's
    embedding); None when none could be (an embedding of the wrong size)."""
    labels = dict(queued.record["labels"])
    for name, found in queued.doubts.items():
        opinion = found.opinion
        vector = embedded.get((opinion.encoder, row))
        if vector is None or vector.shape[-1] != opinion.dimensions:
            log.warning("classifier %s: an embedding does not fit its second opinion", name)
            continue
        embedding = np.asarray(vector, dtype=np.float64)[None, :]
        joined = float(opinion.joined(np.array([found.probability]), embedding)[0])
        tag = found.decided if joined >= opinion.threshold else found.other
        before = labels[name]
        labels[name] = {
            **before,
            "tag": tag,
            "confidence": round(joined if tag == found.decided else 1.0 - joined, 4),
            "second_opinion": True,
        }
        counted(name, tag != before["tag"])
    if labels == queued.record["labels"]:
        return None
    # The next revision: it replaces its record, and any later crowd label's revision
    # (the label's time in microseconds) replaces it.
    revision = queued.record["revision"] + 1
    return {**queued.record, "labels": labels, "ts_out": now, "revision": revision}
