"""Jobs PE: labeling, counting and enumeration jobs that share the crowd.

Input: ``POST /api/v1/jobs`` and ``crowdstream job submit`` (both append to
``jobs``); ``jobs`` (JobCommand: submissions, cancellations, the items a window
collected, window items shed); ``items.features`` (stream windows, fused with the
features stage when it runs here); ``crowd.tasks`` and ``crowd.labels`` (the
job's tasks and their outcomes, and the annotator's gold answers, which measure
the workers); ``jobs.results`` (what was already reported);
``control.models`` (models label the rest of a labeling job and assist counts).
Output: ``crowd.tasks`` (Task with ``job`` and ``priority``), ``jobs`` (window
items and samples), ``jobs.results`` (JobStatus and ItemResult), ``items.rejected``
(malformed records on ``jobs``, rejected as they arrive).
State: one run per job, rebuilt after a restart by reading those logs from their
start (event sourcing: every decision is in a log); a counting or enumeration
window's sample is in memory until the window closes, and is rebuilt from
``items.features`` after a restart.
Logic (pure): ``manager`` routes events to runs (``run``; ``labeling``,
``counting``, ``enumeration``), whose estimators are ``proportion`` (shares and
the difference estimator, corrected for worker error), ``calibrated_count`` (count
batches corrected by calibration batches; ``thresh``, Qurk's uncorrected count
aggregation with gold, is what bench/counting.py compares it with) and ``species``
(Chao92, streaker correction, pay-as-you-go). ``api`` serves ``/api/v1/jobs``.
Metrics: jobs by kind and status, job tasks issued by kind.
"""

from pe.registry import PeSpec, register_pe

__all__ = ["SPEC"]

SPEC = register_pe(
    PeSpec(
        name="jobs",
        package=__name__,
        summary="labeling, counting and enumeration jobs on the crowd",
        inputs=(
            "http:/api/v1/jobs",
            "jobs",
            "items.features",
            "crowd.tasks",
            "crowd.labels",
            "jobs.results",
            "control.models",
        ),
        outputs=("jobs", "crowd.tasks", "jobs.results", "items.rejected"),
        agents="pe.jobs.agent:register",
        params=None,
        singleton=True,
    )
)
