"""Learner PE.

Input: ``crowd.labels`` (Label), followed whole from its start, so a restarted learner
rebuilds its training and held-out sets from the log; ``control.models`` (to number
versions and to know what the active model already learned); ``models.history``
(the learning plots; an active model missing from it, a crash between the two
writes, is appended again); ``items.features``
(FeatureItem), sampled at ``teacher_rate`` items/s for distillation (not read with
``teacher: none``).
Output: ``control.models`` (ModelUpdate: weights as sparse arrays, no pickle, with
held-out precision, recall and AUC per tag, each with its 95% interval, signed with
``model_key``), keyed by classifier; ``models.history``: the same model's header
(ModelHeader, no weights), kept forever for the learning plots; ``crowd.labels``:
an operator's corrections (the labels API, pe.learner.review), which replace the
crowd's tag at the next retrain.
State: per classifier the labels (rebuilt from ``crowd.labels``), split by item id into
~80% training and ~20% held out; the latest ``teacher_pool`` sampled items (not
durable: they refill from the stream, and a model is trained from what is there).
Run one learner per pipeline.
Schedule: retrain every ``retrain_every`` new labels; sklearn refits off the event
loop, river learns each label online. Distillation (pe.learner.teacher, sklearn
family): at each refit a sentence encoder's model, trained on the labels' texts,
scores the sample, and the word model learns from its soft labels (smoothed over
each sampled item's neighbours, pe.learner.neighbours) and the crowd's; the encoder
runs only in the fitting process, which embeds the sample between refits (a batch a
call) and finds its items' neighbours when a fifth of it is new. A new model is
published only if it passes AIDR's activation rule (pe.learner.state.replaces).
Serves: the labels API (``/api/v1/labels``: the newest ``review_labels`` labels with
their answers; a correction) and the learning progress API (``/api/v1/learning``:
labels, answers, cost and label latency over time, every model's held-out metrics,
pe.learner.progress), operator APIs.
Metrics: labels in, models out (pe="learner"), models trained by outcome, labels held
per classifier, the teacher's sample (sampled and embedded items).
"""

from pe.params import LearnerParams
from pe.registry import PeSpec, register_pe

__all__ = ["SPEC"]

SPEC = register_pe(
    PeSpec(
        name="learner",
        package=__name__,
        summary="models learned from the crowd's labels",
        inputs=("crowd.labels", "control.models", "models.history", "items.features"),
        outputs=("control.models", "models.history", "crowd.labels"),
        agents="pe.learner.agent:register",
        params=LearnerParams,
        singleton=True,
    )
)
