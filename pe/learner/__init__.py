"""Learner PE.

Input: ``crowd.labels`` (Label), followed whole from its start, so a restarted learner
rebuilds its training and held-out sets from the log; ``control.models`` (to number
versions and to know what the active model already learned).
Output: ``control.models`` (ModelUpdate: weights as sparse arrays, no pickle, with
held-out precision, recall and AUC per tag, each with its 95% interval, signed with
``model_key``), keyed by classifier.
State: per classifier the labels (rebuilt from ``crowd.labels``), split by item id into
~80% training and ~20% held out. Run one learner per pipeline.
Schedule: retrain every ``retrain_every`` new labels; sklearn refits off the event
loop, river learns each label online. A new model is published only if it passes
AIDR's activation rule (pe.learner.state.replaces).
Metrics: labels in, models out (pe="learner"), models trained by outcome, labels held
per classifier.
"""

from pe.params import LearnerParams
from pe.registry import PeSpec, register_pe

__all__ = ["SPEC"]

SPEC = register_pe(
    PeSpec(
        name="learner",
        package=__name__,
        summary="models learned from the crowd's labels",
        inputs=("crowd.labels", "control.models"),
        outputs=("control.models",),
        agents="pe.learner.agent:register",
        params=LearnerParams,
        singleton=True,
    )
)
