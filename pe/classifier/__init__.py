"""Classifier PE.

Input: ``items.features`` (FeatureItem), in batches: straight from the features PE
when it runs in this process (fused), else read from Kafka by the data plane;
``control.models`` (ModelUpdate), followed whole by every instance so each has the
latest model of every classifier; ``crowd.labels`` (Label), followed whole by every
instance into its crowd labels index, and read once more in the classifier's
consumer group to revise labeled items.
Output: ``items.classified`` (ClassifiedItem: per classifier the tag, its
confidence, the active model's version, and the tag's ``source``: ``model``;
``crowd``, the item was labeled; or ``propagated``, from the labeled near-duplicate
``from_item``. Tag null before a first model or label, so items never wait for
humans. When a usable training label of an item arrives, the item's record again
with that tag from the crowd, as a *revision* numbered by the label's time;
first classifications are revision 0; the revision after a record, its model's
second opinion on the tags its word model was least sure of (1 for a first
classification), pe.classifier.second_opinion);
``items.rejected``.
State: the active models (rebuilt from the compacted ``control.models`` on start;
the stage waits until it has read them before classifying). Only signed models of
a known schema version are applied (pe.common.modelbook). The crowd labels index
(pe.classifier.crowdlabels), rebuilt from ``crowd.labels`` on start: the newest
usable label of each (classifier, item), bounded by ``crowd_labels`` (20,000 labels
by default, about 0.5 KB each besides 4 MiB of lookup tables; the oldest is
forgotten first). Items classified while it catches up get the labels read so far.
The second pass's queue (at most ``second_opinion_queue`` items; not durable: its
items keep their first tags), its memory of the last ``second_opinion_memory``
embeddings by near-duplicate signature (pe.classifier.embedding_memory; in memory
only, about 1.8 KB each with the default teacher), and its helper process, which
holds the encoders.
Guarantee: at least once; a batch is classified by one model per classifier, and a
new model is swapped in between batches, so no item is dropped by a swap. A label
revises its item at least once (its offset is committed after the revision is
acknowledged), with the same revision number each time; labels older than
``revise_within_s`` when read only tag later items. A second opinion is best
effort: the least doubtful queued item is shed when the queue is full, one older
than ``second_opinion_max_age_s`` is dropped, and a crash loses the queue.
Load shedding: as the features PE, on the age of its input (see channels.shedding),
when it reads ``items.features`` from Kafka; fused, the features PE has decided.
Metrics: items in/out/rejected/shed (pe="classifier"), batch time, end-to-end
latency, model version and AUC per classifier, tags taken from the crowd
(``crowd_tags`` by source), revisions, and second opinions (by outcome), their
queue and their embeddings (by source: the encoder's or a near-duplicate's).
Query API: every classifier worker follows ``items.classified`` into a bounded
window of recent results (pe.classifier.recent), the latest revision of each item,
and serves ``GET /api/v1/classified`` and its event stream (pe.classifier.api).
"""

from pe.params import ClassifierParams
from pe.registry import PeSpec, register_pe

__all__ = ["SPEC"]

SPEC = register_pe(
    PeSpec(
        name="classifier",
        package=__name__,
        summary="every item tagged by every classifier's active model, or by the crowd",
        inputs=(
            "items.features",
            "control.models",
            "crowd.labels",
            "items.classified",
            "jobs.results",
        ),
        outputs=("items.classified", "items.rejected"),
        agents="pe.classifier.agent:register",
        params=ClassifierParams,
        singleton=False,
    )
)
