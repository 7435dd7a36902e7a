"""Distillation: a sentence encoder's model teaches the fast word model.

The classifier keeps up with the stream only on hashed word n-grams; sentence
encoders learn far more from a few hundred crowd labels, but embed 75 (``use+minilm``,
the default) to 540 (``use``) items/s a core (docs/quality.md). So at each retrain the
learner fits logistic regression on
the encoder's embeddings of the crowd-labelled items (the teacher), lets it score a
sample of the stream, and fits the word model on the crowd's labels and on those soft
labels (the student). Only the student is published: classification keeps the word
features' speed.

:class:`StreamSample` is the learner's side (the sample of the stream, taken at a
bounded rate). :class:`Lesson` runs in the fitting process, where the encoder and a
cache of the embeddings it computed stay between retrains: :func:`warm` embeds the
sample a batch at a time between retrains, and a retrain embeds only the labels it has
not seen (a batch at most) and teaches from the sample's items embedded by then.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from pe.common.anchors import Anchors, Embedded, with_anchors
from pe.common.embedding import load_embedder
from pe.common.linear import feature_matrix
from pe.learner.neighbours import NeighbourGraph, smooth

__all__ = [
    "EMBEDDINGS",
    "EMBED_BATCH",
    "Fit",
    "Fitted",
    "Lesson",
    "PoolItem",
    "SampleUnknown",
    "SampleUpdate",
    "StreamSample",
    "Teacher",
    "Teaching",
    "embed_cached",
    "learn_from_teacher",
    "logistic",
    "warm",
    "with_sample",
]

FloatArray = npt.NDArray[np.float64]
_T = TypeVar("_T")


@dataclass(frozen=True)
class PoolItem:
    """An unlabelled item of the stream, for the teacher to score."""

    item_id: str
    text: str
    idx: Sequence[int]
    val: Sequence[float]
    sig: int = 0  #: its near-duplicate signature (SimHash)


class SampleUnknown(Exception):
    """The fitting process lacks items of the sample (it is new): send them all."""


#: The fitting process's copy of the stream's sample, by item id (see SampleUpdate).
SAMPLE: dict[str, PoolItem] = {}


@dataclass(frozen=True)
class SampleUpdate:
    """The stream's sample as a fit receives it: each item's id, in order, and the items
    the fitting process may not hold yet. Pickling the whole sample (20,000 items) at
    each retrain took 0.1-0.3 s of the worker's event loop; the ids alone, milliseconds."""

    ids: list[str]
    new: list[PoolItem]

    def items(self) -> list[PoolItem]:
        """The sample, from the fitting process's copy, which then keeps just these."""
        SAMPLE.update((item.item_id, item) for item in self.new)
        missing = sum(1 for key in self.ids if key not in SAMPLE)
        if missing:
            raise SampleUnknown(f"{missing} of {len(self.ids)} sample items unknown")
        wanted = set(self.ids)
        for stale in [key for key in SAMPLE if key not in wanted]:
            del SAMPLE[stale]
        return [SAMPLE[key] for key in self.ids]


class StreamSample:
    """The latest ``size`` items taken from the stream at most ``rate`` a second.

    The rate bounds what the teacher embeds (one thread embeds about 540 items/s);
    items of a batch are taken at random, so a burst does not fill the sample with one
    source, and an item with the signature of one in the sample (a retweet, a copy)
    is not taken: the teacher pays once per text. Not durable: after a restart the
    sample refills from the stream, and models published before it stand.
    """

    def __init__(self, size: int, rate: float, rng: random.Random | None = None) -> None:
        self.items: deque[PoolItem] = deque(maxlen=size)
        self._sigs: Counter[int] = Counter()
        self.rate = rate
        self._tokens = max(rate, 1.0)  # a second's worth: the first batch is sampled too
        self._stamp: float | None = None
        self._rng = rng or random.Random(0)
        self._shipped: set[str] = set()
        self.added = 0  #: items ever kept

    def update(self, whole: bool = False) -> SampleUpdate:
        """The sample for a fit in the fitting process: the items no earlier update
        carried, or all of them (``whole``: for a new process, or a fit in this one)."""
        ids = [item.item_id for item in self.items]
        new = [item for item in self.items if whole or item.item_id not in self._shipped]
        self._shipped = set(ids)
        return SampleUpdate(ids, new)

    def choose(self, n: int, now: float) -> list[int]:
        """Which of a batch of ``n`` items to take (:meth:`add`): as many as the rate
        allows, at random."""
        if self.items.maxlen == 0 or n == 0:
            return []
        elapsed = 0.0 if self._stamp is None else max(now - self._stamp, 0.0)
        self._stamp = now
        # A second's worth at most carries over: a quiet hour buys no burst.
        self._tokens = min(self._tokens + elapsed * self.rate, max(self.rate, 1.0))
        take = min(int(self._tokens), n)
        self._tokens -= take
        return sorted(self._rng.sample(range(n), take))

    def add(self, item: PoolItem) -> bool:
        """Keep ``item`` unless its copy is kept; whether it was kept."""
        if self._sigs[item.sig] > 0 or self.items.maxlen == 0:
            return False
        if len(self.items) == self.items.maxlen:
            self._sigs[self.items[0].sig] -= 1
        self.items.append(item)
        self._sigs[item.sig] += 1
        self.added += 1
        return True


@dataclass(frozen=True)
class Teaching:
    """What a fit is taught from: the encoder, its model's inverse regularisation, the
    weight of its soft labels against the crowd's, and the stream's sample it scores;
    ``second_share``: the share of the sample the published teacher is to decide
    again (0: it is not published; channels.records.SecondOpinion); ``anchors``: the
    classifier's worked examples, by tag (pe.common.anchors); ``smoothing``: how far
    each sampled item's soft labels move towards its neighbours' (0: not at all;
    pe.learner.neighbours)."""

    encoder: str
    c: float
    weight: float
    pool: SampleUpdate
    second_share: float = 0.0
    anchors: Anchors = ()
    smoothing: float = 0.0


@dataclass(frozen=True)
class Teacher:
    """A trainer's distillation settings (see :class:`Teaching`), with the live sample
    of the stream (the trainers share it)."""

    encoder: str
    c: float
    weight: float
    sample: StreamSample
    second_share: float = 0.0
    smoothing: float = 0.0

    def teaching(self, whole: bool = False, anchors: Anchors = ()) -> Teaching:
        """For the next fit: the sample as it is now (:meth:`StreamSample.update`), and
        the fitted classifier's ``anchors``."""
        return Teaching(
            self.encoder,
            self.c,
            self.weight,
            self.sample.update(whole),
            self.second_share,
            anchors,
            self.smoothing,
        )


#: New items one call to the fitting process embeds at most: labels in a refit, the
#: sample's items in a warm-up between refits (:func:`warm`). About 7-10 s with
#: ``use+minilm`` on one thread, so a refit never waits long for the teacher; the next
#: calls embed the rest. Fewer a call embed fewer a second: MiniLM pads each batch of
#: texts sorted by length to its longest, and 128 a call embedded 34 a second where
#: 512 embedded 61.
EMBED_BATCH = 512
#: Labelled items' embeddings kept, least recently used dropped first: a refit needs
#: every one of its classifier's. 20,000 of ``use+minilm`` take 72 MB.
LABELS_KEPT = 20_000

#: The fitting process's embeddings, by (``pool`` or ``label``, encoder, item id),
#: most recently used last: the current sample's items and the labelled items'.
#: Derived data, lost with the process and computed again.
EMBEDDINGS: OrderedDict[tuple[str, str, str], npt.NDArray[np.float32]] = OrderedDict()
#: The fitting process's sampled items' neighbours (pe.learner.neighbours), found by
#: :func:`warm` from :data:`EMBEDDINGS`; derived data too.
GRAPH = NeighbourGraph()


def embed_cached(
    kind: str, encoder: str, keys: Sequence[str], texts: Sequence[str], most: int | None = None
) -> list[int]:
    """Embed those of ``texts`` whose key has no embedding yet, at most ``most`` of
    them (:data:`EMBED_BATCH` by default; the last: the newest items of the sample stay
    in it longest); the positions of ``keys`` that have one now, each marked as just
    used."""
    most = EMBED_BATCH if most is None else most
    missing = [i for i, key in enumerate(keys) if (kind, encoder, key) not in EMBEDDINGS]
    missing = missing[max(len(missing) - most, 0) :]
    if missing:
        vectors = load_embedder(encoder)([texts[i] for i in missing])
        for i, vector in zip(missing, vectors, strict=True):
            EMBEDDINGS[(kind, encoder, keys[i])] = vector.astype(np.float32)
    cached = []
    for i, key in enumerate(keys):
        if (kind, encoder, key) in EMBEDDINGS:
            EMBEDDINGS.move_to_end((kind, encoder, key))
            cached.append(i)
    return cached


def _vectors(kind: str, encoder: str, keys: Sequence[str], dims: int) -> FloatArray:
    rows = [EMBEDDINGS[(kind, encoder, key)] for key in keys]
    return np.vstack(rows).astype(np.float64) if rows else np.zeros((0, dims))


def _trim(sample: Sequence[PoolItem]) -> None:
    """Keep the embeddings of ``sample`` (the current one) and of the
    :data:`LABELS_KEPT` labelled items used last."""
    current = {item.item_id for item in sample}
    labels = 0
    for key in reversed(list(EMBEDDINGS)):
        kind, _, item_id = key
        labels += kind == "label"
        if (kind == "pool" and item_id not in current) or labels > LABELS_KEPT:
            del EMBEDDINGS[key]


def _embed_sample(encoder: str, pool: Sequence[PoolItem], most: int | None = None) -> list[int]:
    """The positions of ``pool``'s items with an embedding, after embedding ``most``
    more at most (:func:`embed_cached`)."""
    return embed_cached(
        "pool", encoder, [item.item_id for item in pool], [item.text for item in pool], most
    )


def _anchors(teaching: Teaching) -> Embedded:
    """Each anchored tag of ``teaching`` and its examples' embeddings (embedded at the
    first fit, then found in :data:`EMBEDDINGS`)."""
    embedded = []
    for tag, texts in teaching.anchors:
        embed_cached("anchor", teaching.encoder, texts, texts, most=len(texts))
        embedded.append((tag, _vectors("anchor", teaching.encoder, texts, 0)))
    return tuple(embedded)


def warm(teaching: Teaching) -> tuple[int, int]:
    """In the fitting process, between refits: embed up to :data:`EMBED_BATCH` items
    of the sample that have no embedding yet, so that a refit finds them ready, and
    find the embedded items' neighbours again when many have none (with
    ``teaching.smoothing``). Returns how many of the sample's items have an
    embedding, and the sample's size."""
    pool = teaching.pool.items()
    cached = _embed_sample(teaching.encoder, pool)
    _trim(pool)
    if teaching.smoothing > 0:
        ids = [pool[i].item_id for i in cached]
        if GRAPH.stale(ids):
            # As stored (float32), not _vectors' float64: the search over 20,000
            # items took 21 s of a core where float64 took 36, at half the memory.
            vectors = [EMBEDDINGS[("pool", teaching.encoder, key)] for key in ids]
            GRAPH.find(ids, np.vstack(vectors))
    return len(cached), len(pool)


async def with_sample(
    executor: Executor, work: Callable[..., _T], args_of: Callable[[bool], Sequence[Any]]
) -> _T:
    """``work(*args_of(False))`` in the fitting process, which gets only the sample's
    new items; again with the whole sample (``args_of(True)``) if that process is new
    (the last one died) and lacks the rest."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(executor, work, *args_of(False))
    except SampleUnknown:
        return await loop.run_in_executor(executor, work, *args_of(True))


def logistic(c: float) -> LogisticRegression:
    """The learner's logistic regression (classes weighted to balance). Newton-CG: on a
    distilled fit (450 labels, 20,000 sampled items) it took 17 s where L-BFGS took
    46 s, to the same held-out AUC (0.828 and 0.825)."""
    return LogisticRegression(C=c, class_weight="balanced", max_iter=1000, solver="newton-cg")


#: A fit's models: the one to publish, and the teacher it learned from (None: none).
Fitted = tuple[LogisticRegression, LogisticRegression | None]
#: Fits on (features, tags, weights).
Fit = Callable[[sp.csr_matrix, list[str], list[float]], Fitted]


@dataclass(frozen=True)
class Lesson:
    """What the teacher teaches from: the pool's word features and embeddings, and the
    labelled items' embeddings (a zero row for a label without text, or not embedded yet)."""

    pool_words: sp.csr_matrix
    pool_embeddings: FloatArray
    label_embeddings: FloatArray
    teacher_c: float
    teacher_weight: float
    #: Each anchored tag and its examples' embeddings; both embeddings above end with
    #: a column for each (pe.common.anchors).
    anchors: Embedded = ()
    #: The share of the way each pool item's soft labels move to the mean of its
    #: neighbours' (``neighbours``: pe.learner.neighbours.NeighbourGraph.links).
    smoothing: float = 0.0
    neighbours: sp.csr_matrix | None = None

    @classmethod
    def prepare(
        cls,
        labelled: Sequence[tuple[str, str | None]],
        pool: Sequence[PoolItem],
        teaching: Teaching,
        n_features: int,
    ) -> Lesson:
        """``labelled``: each training example's item id and text, in order; ``pool``:
        the sample (``teaching.pool``'s items)."""
        named = [(i, key, text) for i, (key, text) in enumerate(labelled) if text]
        # The labels embedded by now and at most a batch more (after a restart,
        # 20,000 labels would take minutes), and the sample's items warm() has
        # embedded: the teacher learns from those labels and scores those items; the
        # rest wait for the next call. A refit embeds none of the sample: while the
        # stream is sampled faster than the encoder embeds, a batch of it took each
        # refit 10 s, twice per published model. The student learns from every label.
        named = [
            named[i]
            for i in embed_cached(
                "label",
                teaching.encoder,
                [key for _, key, _ in named],
                [text for _, _, text in named],
            )
        ]
        label_keys = [key for _, key, _ in named]
        ready = _embed_sample(teaching.encoder, pool, most=0)
        vectors = _vectors("label", teaching.encoder, label_keys, 0)
        labels = np.zeros((len(labelled), vectors.shape[1]))
        labels[[i for i, _, _ in named]] = vectors
        taught = [pool[i] for i in ready]
        taught_ids = [item.item_id for item in taught]
        pool_vectors = _vectors("pool", teaching.encoder, taught_ids, vectors.shape[1])
        _trim(pool)
        anchors = _anchors(teaching) if vectors.shape[1] else ()
        sets = [examples for _, examples in anchors]
        neighbours = None
        if teaching.smoothing > 0:
            neighbours = GRAPH.links(taught_ids)
        return cls(
            pool_words=feature_matrix([(item.idx, item.val) for item in taught], n_features),
            pool_embeddings=with_anchors(pool_vectors, sets),
            label_embeddings=with_anchors(labels, sets),
            teacher_c=teaching.c,
            teacher_weight=teaching.weight,
            anchors=anchors,
            smoothing=teaching.smoothing,
            neighbours=neighbours,
        )

    def columns(self, words: sp.csr_matrix) -> npt.NDArray[np.int64]:
        """The word features the student learns: those of the labelled items
        (``words``) and those at least two pool items share. A feature of one pool item
        only (most bigrams) teaches nothing beyond that item, and would add a weight
        to the model message for each of thousands of them."""
        shared = np.flatnonzero(np.bincount(self.pool_words.indices) >= 2)
        return np.union1d(words.indices, shared)

    def matrix(self, words: sp.csr_matrix) -> sp.csr_matrix:
        """The fit's matrix: the labelled items' word features, then their embeddings."""
        return sp.hstack([words, sp.csr_matrix(self.label_embeddings)], format="csr")

    def student(self, pool_words: sp.csr_matrix, c: float) -> Fit:
        """The fit of a :meth:`matrix` (any of its rows): the teacher learns from the
        rows with an embedding and scores every pool item; the student learns from
        the rows' word features and from each pool item (``pool_words``: its word
        features in the matrix's columns) once per tag, weighted by the teacher's
        probability of that tag times ``teacher_weight``. The fit returns the student
        and its teacher (None when there was none to fit)."""
        width = pool_words.shape[1]

        def fit(x: sp.csr_matrix, tags: list[str], weights: list[float]) -> Fitted:
            words, embedded = x[:, :width], x[:, width:].toarray()
            taught = np.flatnonzero(np.abs(embedded).sum(axis=1) > 0)
            if len({tags[i] for i in taught}) < 2 or pool_words.shape[0] == 0:
                return logistic(c).fit(words, tags, sample_weight=weights), None
            teacher = logistic(self.teacher_c).fit(
                embedded[taught],
                [tags[i] for i in taught],
                sample_weight=[weights[i] for i in taught],
            )
            soft = teacher.predict_proba(self.pool_embeddings)
            if self.neighbours is not None:
                soft = smooth(soft, self.neighbours, self.smoothing)
            classes = [str(cls) for cls in teacher.classes_]
            student = learn_from_teacher(
                words, tags, weights, pool_words, soft * self.teacher_weight, classes, c
            )
            return student, teacher

        return fit


def learn_from_teacher(
    words: sp.csr_matrix,
    tags: Sequence[Any],
    weights: Sequence[float],
    pool_words: sp.csr_matrix,
    soft: FloatArray,
    classes: Sequence[Any],
    c: float,
) -> LogisticRegression:
    """The student: fitted on the labelled rows (``words``, ``tags``, ``weights``) and on
    each pool row once per class, weighted by the teacher's probability of it (``soft``:
    a column per class, in ``classes`` order)."""
    rows = sp.vstack([words] + [pool_words] * len(classes), format="csr")
    y = list(tags) + [cls for cls in classes for _ in range(pool_words.shape[0])]
    w = np.concatenate([np.asarray(weights, dtype=np.float64), soft.T.ravel()])
    return logistic(c).fit(rows, y, sample_weight=w)
