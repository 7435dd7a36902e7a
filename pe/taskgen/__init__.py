"""Task generator PE.

Input: ``items.features`` (FeatureItem) into a bounded buffer of the latest items;
``control.models`` (the latest model scores uncertainty); ``crowd.tasks`` and
``crowd.labels``, followed whole, to rebuild which items were issued and not shed
(and the budget used) on start.
Output: ``crowd.tasks`` (Task: one item, one classifier).
State: per classifier the buffer (in memory, refilled by the stream), issued item ids
and near-duplicate signatures (rebuilt from ``crowd.tasks``, less the training tasks
``crowd.labels`` reports shed from a full crowd queue: their budget returns and their
items and near-duplicates may be picked again).
Budgets: per classifier, ``label_budget`` tasks and, if set, ``answer_budget`` crowd
answers (pe.taskgen.budget), both rebuilt from the logs.
Sampling: every round, per classifier, within the task-rate cap and the budgets,
``active_fraction`` of the picks are the least confident of a random sample of the
buffer and the rest are random (the fraction of a pick carried to the next round);
near-duplicates of issued items are skipped.
Metrics: items in and out (pe="taskgen"), crowd tasks by classifier and kind, near-duplicates
skipped by classifier.
"""

from pe.params import TaskgenParams
from pe.registry import PeSpec, register_pe

__all__ = ["SPEC"]

SPEC = register_pe(
    PeSpec(
        name="taskgen",
        package=__name__,
        summary="crowd tasks for the items worth labelling",
        inputs=("items.features", "control.models", "crowd.tasks", "crowd.labels"),
        outputs=("crowd.tasks",),
        agents="pe.taskgen.agent:register",
        params=TaskgenParams,
        singleton=True,
    )
)
