"""Record schemas of every topic (pydantic v2 models).

Wire format: UTF-8 JSON, one record per Kafka message, keyed by item id on data-flow
topics and by classifier name on control topics.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "Anchor",
    "MAX_TEXT_CHARS",
    "MODEL_SCHEMA_VERSION",
    "NA_TAG",
    "Answer",
    "Decision",
    "PoolMember",
    "BatchItem",
    "ClassifiedItem",
    "FeatureItem",
    "InputItem",
    "Item",
    "ItemId",
    "Interval",
    "Label",
    "LinearModel",
    "ModelMetrics",
    "ModelHeader",
    "ModelUpdate",
    "Provenance",
    "Rejected",
    "SECOND_OPINION_REVISION",
    "SecondOpinion",
    "SparseRow",
    "TagMetrics",
    "TagPrediction",
    "Task",
    "TaskExample",
    "TaskForm",
    "TaskKind",
    "format_auc",
]

MAX_TEXT_CHARS = 10_000
#: Version of the ModelUpdate format; 2 added the signature (channels.signing).
MODEL_SCHEMA_VERSION = 2
#: The "no label" answer: a worker could not tell. Never used for training.
NA_TAG = "N/A"


class _Record(BaseModel):
    # NaN and infinity are not numbers JSON can carry: 1e400 would parse as infinity
    # and be written back as null, which another process then rejects.
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class _SparseFeatures(_Record):
    """Hashed features as parallel arrays, checked wherever a record carries them.

    The upper bound of an index depends on the pipeline (``features.dimensions``):
    consumers check it with ``pe.common.linear.features_in_range``.
    """

    idx: list[int]  #: feature indices (sorted, unique)
    val: list[float]  #: feature values, L2-normalised

    @model_validator(mode="after")
    def _check_features(self) -> _SparseFeatures:
        if len(self.idx) != len(self.val):
            raise ValueError("idx and val must have the same length")
        if self.idx and min(self.idx) < 0:
            raise ValueError("feature indices must not be negative")
        return self


def _id_as_string(value: object) -> object:
    # Numeric ids are common in exported data sets; keep them, as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


#: An item id as producers and job files give it: text, or a number kept as text.
ItemId = Annotated[str, BeforeValidator(_id_as_string), Field(min_length=1, max_length=256)]


class InputItem(BaseModel):
    """What a producer sends to ``items.raw`` or ``POST /items``."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)

    id: ItemId | None = None
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    ts: float | None = Field(None, ge=0)
    source: str | None = Field(None, max_length=256)
    meta: dict[str, Any] = Field(default_factory=dict)


class Item(_Record):
    """A validated item with its id and timestamps assigned."""

    id: str
    text: str
    ts: float  #: event time given by the producer, else arrival time
    ts_in: float  #: arrival time in crowdstream (start of end-to-end latency)
    source: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_input(cls, item: InputItem, arrival: float) -> Item:
        """Fill in a missing id (random) and event time (arrival)."""
        return cls(
            id=item.id or uuid.uuid4().hex,
            text=item.text,
            ts=item.ts if item.ts is not None else arrival,
            ts_in=arrival,
            source=item.source,
            meta=item.meta,
        )


class FeatureItem(Item, _SparseFeatures):
    """An item with its hashed unigram+bigram features and near-duplicate signature."""

    sig: int = Field(ge=0, lt=2**64)  #: 64-bit SimHash of the normalised tokens


#: Where a classified item's tag came from: the active ``model``; the ``crowd``, which
#: labeled this item; or a crowd label ``propagated`` from a labeled near-duplicate.
Provenance = Literal["model", "crowd", "propagated"]


class TagPrediction(_Record):
    tag: str | None  #: null while the classifier has neither a model nor a crowd label
    #: The model's probability of ``tag``; from the crowd, the label's posterior
    #: (else the share of answers that agreed).
    confidence: float | None
    #: The active model's version, whichever gave the tag (0 while there is none).
    model_version: int
    #: None only while the tag is null; records written before provenance have none.
    source: Provenance | None = None
    #: ``propagated``: the labeled near-duplicate whose crowd tag this is.
    from_item: str | None = None
    #: The model's tag decided again by its second opinion (a revision; see
    #: channels.records.SecondOpinion).
    second_opinion: bool = False


#: The revision of an item's record that carries its model's second opinion on its
#: first classification (0): below every crowd label's revision (the label's time in
#: microseconds), so a crowd tag always wins. A second opinion on a crowd label's
#: revision is that revision plus one.
SECOND_OPINION_REVISION = 1


class ClassifiedItem(_Record):
    id: str
    text: str
    ts_in: float
    ts_out: float
    source: str | None = None
    labels: dict[str, TagPrediction]
    #: 0 for an item's first classification. A crowd label of the item revises it:
    #: the record again, that classifier's tag from the crowd, with the label's time
    #: in microseconds as its revision (a later label, a higher revision; the same
    #: number when a crash makes it written twice). Revision 1: the model's second
    #: opinion on some of its tags (pe.classifier.second_opinion), below any crowd
    #: label's.
    revision: int = Field(0, ge=0)


class BatchItem(_Record):
    """One item of a count task's batch."""

    id: str
    text: str
    truth: str | None = None  #: simulated crowds only, never shown to people


TaskForm = Literal["label", "count", "enumerate"]
TaskKind = Literal["active", "passive", "job", "gold"]


class TaskExample(_Record):
    text: str
    tag: str


class Task(_SparseFeatures):
    """One crowd task.

    ``form`` says what the worker does: ``label`` one item with one of ``tags``;
    ``count`` how many items of ``batch`` have tag ``count_tag``; ``enumerate`` the
    distinct things ``question`` asks for in ``text``.
    """

    task_id: str
    item_id: str  #: the item (label, enumerate) or the batch's id (count)
    classifier: str  #: empty for enumeration tasks
    question: str
    tags: list[str]
    #: Whether N/A ("cannot tell") is an answer too (ClassifierSpec.na_allowed).
    na_allowed: bool = True
    #: Worked examples shown beside the question (ClassifierSpec.examples).
    examples: list[TaskExample] = Field(default_factory=list)
    text: str
    #: How the item was picked: by uncertainty, at random, or by a job; ``gold``: a
    #: question with a known answer, to measure the worker.
    kind: TaskKind
    created: float
    sig: int = 0  #: the item's near-duplicate signature
    #: Training tasks: the item's arrival time and producer's source, which a
    #: revised classification of the item carries (see ClassifiedItem.revision).
    ts_in: float | None = None
    source: str | None = None
    #: Ground truth from ``meta.truth``, for simulated crowds only; never shown to
    #: people, never read by the learner.
    truth: str | None = None
    truth_values: list[str] | None = None  #: enumerate: the simulated crowd's answers
    form: TaskForm = "label"
    job: str | None = None  #: None: a classifier's training task
    #: Higher first; when the crowd queue is full the lowest, oldest are shed.
    priority: int = Field(5, ge=0, le=9)
    redundancy: int | None = Field(None, ge=1, le=15)  #: answers (None: the annotator's)
    batch: list[BatchItem] = Field(default_factory=list)
    count_tag: str | None = None
    #: Count tasks: gold items hidden in the batch, and how many of them have the tag.
    #: A counting job's label task on a gold question: 1, and 1 if it has the tag.
    gold: int = 0
    gold_positive: int = 0


class Answer(_Record):
    task_id: str
    worker_id: str
    tag: str | None = None  #: label tasks
    count: int | None = None  #: count tasks
    values: list[str] | None = None  #: enumerate tasks
    latency_s: float
    #: The quality loop's estimate of this worker's accuracy on the classifier when
    #: the label was settled (None without the loop, and for count and enumerate).
    accuracy: float | None = Field(None, ge=0, le=1)


class PoolMember(_Record):
    """What the retainer pool knows of one worker, on ``crowd.pool`` (the last record
    of a worker is its state; ``present`` false once it left the pool)."""

    worker_id: str
    present: bool = True
    qualified: bool = True
    marked: Literal["slow", "low_quality"] | None = None
    completed: list[float] = Field(default_factory=list)  #: per-label latencies (s)
    terminated: int = 0
    finishers: list[float] = Field(default_factory=list)  #: at each termination
    ts: float = 0.0


class Label(_SparseFeatures):
    """The outcome of one crowd task: its answers and their majority tag.

    ``status`` is ``shed`` when the crowd queue was full and the task lost its place,
    ``withdrawn`` when its job ended before anyone took it; both have no answers.
    """

    item_id: str
    classifier: str
    tag: str | None  #: None when the answers did not agree (or there are none)
    agreement: float
    #: How the item was picked (see Task.kind). A gold label's tag is the known
    #: answer; it has no features and never trains a model.
    kind: TaskKind = "passive"
    answers: list[Answer]
    ts: float
    task_id: str | None = None
    #: When the task generator made the task (None in labels written before it was
    #: kept): ``ts - task_created`` is the label's latency.
    task_created: float | None = None
    job: str | None = None
    form: TaskForm = "label"
    status: Literal["labeled", "shed", "withdrawn"] = "labeled"
    #: Crowd pay for this task: every record of work, straggler duplicates included.
    cost: float = 0.0
    #: The quality loop's posterior probability of ``tag`` (None without the loop):
    #: the learner weights the example by it.
    posterior: float | None = Field(None, ge=0, le=1)
    #: The item as its task had it (None in labels written before they were kept):
    #: the classifier propagates the label to near-duplicates by ``sig`` (the
    #: task's SimHash; None where the task had none) and revises the item's
    #: classification with ``text``, ``ts_in`` and ``source`` (the producer's); the
    #: learner's teacher reads ``text`` (pe.learner.teacher).
    text: str | None = None
    sig: int | None = Field(None, ge=0, lt=2**64)
    ts_in: float | None = None
    source: str | None = None
    #: Who set ``tag`` over the crowd's (an operator correcting a label; None: the
    #: crowd's own). A correction repeats the label it corrects, answers included,
    #: with the new tag and a later ``ts``; the newest label of an item wins.
    corrected_by: str | None = Field(None, min_length=1, max_length=100)


class SparseRow(_Record):
    idx: list[int]
    val: list[float]


class Decision(_Record):
    """How a model chooses its tag: ``tag`` when its probability reaches ``threshold``,
    else the most probable other tag (without a decision: the most probable tag)."""

    tag: str
    threshold: float = Field(ge=0, le=1)


class _Range(_Record):
    """A range [``low``, ``high``] of probabilities."""

    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low > self.high:
            raise ValueError(f"{type(self).__name__}: low must not exceed high")
        return self


class Anchor(_Record):
    """A tag's worked examples, embedded by a teacher's encoder (pe.common.anchors)."""

    tag: str
    vectors: list[list[float]] = Field(min_length=1)


class SecondOpinion(_Range):
    """A distilled model's teacher, for a second pass over the items its student is
    least sure of (pe.classifier.second_opinion): logistic regression over the
    ``encoder``'s embedding of an item's text, followed by its nearest example's
    similarity for each of ``anchors`` (their weights come last). An item whose student
    probability of the decision's tag lies in [``low``, ``high``] is decided again by
    the mean of the two models' log-odds: the tag when that joined probability reaches
    ``threshold``."""

    encoder: str
    weights: list[float] = Field(min_length=1)
    intercept: float
    threshold: float = Field(ge=0, le=1)
    #: Models published before anchors existed have none.
    anchors: list[Anchor] = Field(default_factory=list)

    @model_validator(mode="after")
    def _anchors_fit(self) -> Self:
        dims = len(self.weights) - len(self.anchors)
        if dims < 1 or any(len(v) != dims for a in self.anchors for v in a.vectors):
            raise ValueError(
                "SecondOpinion: each anchor vector needs as many dimensions as the "
                "weights, less one for each anchor"
            )
        return self


class LinearModel(_Record):
    """Weights of a linear model over hashed features; no code, no pickle.

    ``link="sigmoid"``: one row, the probability of ``classes[1]``.
    ``link="softmax"``: one row per class. ``link="ovr"``: one sigmoid per class,
    normalised to sum to one.
    """

    classes: list[str]
    link: Literal["sigmoid", "softmax", "ovr"]
    n_features: int
    intercept: list[float]
    rows: list[SparseRow]
    #: Models published before decisions existed have none (the most probable tag).
    decision: Decision | None = None
    #: A distilled two-tag model's teacher, to decide its least sure items again
    #: (needs ``decision``); None: every tag is the decision's.
    second_opinion: SecondOpinion | None = None


class Interval(_Range):
    """A 95% confidence interval of a held-out metric (see pe.common.intervals)."""


# The intervals are optional: models published before they existed stay on the
# compacted control.models topic, and are read with none.
class TagMetrics(_Record):
    precision: float
    recall: float
    auc: float | None
    support: int
    precision_ci: Interval | None = None
    recall_ci: Interval | None = None
    auc_ci: Interval | None = None


class ModelMetrics(_Record):
    auc: float | None  #: macro average over tags of the held-out one-vs-rest AUC
    accuracy: float | None
    per_tag: dict[str, TagMetrics]
    auc_ci: Interval | None = None
    accuracy_ci: Interval | None = None

    def describe_auc(self) -> str:
        """The AUC with its interval, for people (see :func:`format_auc`)."""
        ci = self.auc_ci
        return format_auc(self.auc, ci.low if ci else None, ci.high if ci else None)


def format_auc(auc: float | None, low: float | None = None, high: float | None = None) -> str:
    """An AUC for people: ``0.875 (95% CI 0.576-0.969)``; ``-`` when there is none."""
    if auc is None:
        return "-"
    if low is None or high is None:
        return f"{auc:.3f}"
    return f"{auc:.3f} (95% CI {low:.3f}-{high:.3f})"


class ModelHeader(_Record):
    """What a model update says about its model, without the weights.

    Kept for the active model of each classifier once its weights are compiled: a
    model's weights decoded as Python numbers take several times their compiled size.
    """

    schema_version: int = MODEL_SCHEMA_VERSION
    classifier: str
    version: int
    family: str
    created: float
    n_train: int
    n_holdout: int
    metrics: ModelMetrics


class ModelUpdate(ModelHeader):
    """A control-flow message on ``control.models``: a new active model.

    On the wire it carries ``signature`` (see channels.signing); classifiers apply
    only signed updates of a schema version they know.
    """

    model: LinearModel
    signature: str | None = None

    def header(self) -> ModelHeader:
        """This update without its weights and signature."""
        return ModelHeader(**{name: getattr(self, name) for name in ModelHeader.model_fields})


class Rejected(_Record):
    """A record some stage could not accept, kept with its reason."""

    stage: str
    reason: str
    raw: str  #: the raw record, decoded with replacement characters, cut to 4 KiB
    raw_size: int
    ts: float
