"""Classifier PE.

Input: ``items.features`` (FeatureItem), in batches: straight from the features PE
when it runs in this process (fused), else read from Kafka by the data plane;
``control.models`` (ModelUpdate), followed whole by every instance so each has the
latest model of every classifier.
Output: ``items.classified`` (ClassifiedItem: tag, confidence and model version per
classifier; tag null before a first model, so items never wait for humans);
``items.rejected``.
State: the active models (rebuilt from the compacted ``control.models`` on start;
the stage waits until it has read them before classifying). Only signed models of
a known schema version are applied (pe.common.modelbook).
Guarantee: at least once; a batch is classified by one model per classifier, and a
new model is swapped in between batches, so no item is dropped by a swap.
Load shedding: as the features PE, on the age of its input (see channels.shedding),
when it reads ``items.features`` from Kafka; fused, the features PE has decided.
Metrics: items in/out/rejected/shed (pe="classifier"), batch time, end-to-end
latency, model version and AUC per classifier.
Query API: every classifier worker follows ``items.classified`` into a bounded
window of recent results (pe.classifier.recent) and serves
``GET /api/v1/classified`` and its event stream (pe.classifier.api).
"""

from pe.params import ClassifierParams
from pe.registry import PeSpec, register_pe

__all__ = ["SPEC"]

SPEC = register_pe(
    PeSpec(
        name="classifier",
        package=__name__,
        summary="every item tagged by every classifier's active model",
        inputs=("items.features", "control.models", "items.classified", "jobs.results"),
        outputs=("items.classified", "items.rejected"),
        agents="pe.classifier.agent:register",
        params=ClassifierParams,
        singleton=False,
    )
)
