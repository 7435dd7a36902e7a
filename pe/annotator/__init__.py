"""Crowd annotator PE: a CLAMShell retainer pool labels tasks at interactive speed.

Input: ``crowd.tasks`` (Task: training tasks and jobs' tasks), ``crowd.labels``
(outcomes already written; an operator's correction is gold evidence about the
workers who answered) and ``jobs.results`` (jobs that ended), each read from
its start by a follower: every task without an outcome waits in the pool's queue,
after a restart too; ``crowd.pool`` (PoolMember), read at start only: the pool's
workers before a restart.
Output: ``crowd.labels`` (Label: the answers of a task, each with the quality
loop's estimate of its worker, and, for label tasks, the loop's tag and its
posterior, null when they disagree; gold questions' answers with ``kind`` gold
and the known tag; or ``status`` shed / withdrawn, with no answers, for a task the
full queue shed or whose job ended); ``crowd.pool``
(PoolMember: each qualified worker's marks and latency records when they change,
and ``present`` false when they leave; every second, by ``journal``);
``items.rejected`` (malformed tasks).
State: the retainer pool (workers, their latency records, the priority queue of
tasks, the cost ledger with each worker's earnings), the quality loop (each
worker's confusion matrices, the gold questions each has seen) and, with the web
crowd, the workers' sessions and invite codes, in memory; the queue and the quality
model are rebuilt from the logs, the pool's qualified workers (away until they come
back) from ``crowd.pool``. Run one annotator per pipeline.
Pool logic (pure, in ``pool``, ``latency``, ``costs``): qualification, heartbeats,
background recruitment, straggler mitigation, pool maintenance with TermEst and
worker quality. Quality logic (pure, in pe.common.quality, which the jobs PE shares;
joined to the pool by ``assurance``): online Dawid-Skene, adaptive redundancy, gold
questions, routing. The
pool service (``lifeguard``) drives it on a clock (``clock``) for a crowd platform
(``crowd``: the adapter interface and the simulated crowd, whose workers come from
``population``; ``web``: people in browsers, through the crowd API under ``/api/v1``
and the worker page ``/work`` on the worker's HTTP port; ``plugin``: an adapter of
the user's own, named by the ``crowd`` setting as ``package.module:factory``).
Metrics: items in/out/rejected (pe="annotator"), answers, labels by outcome, answers
per label and label posteriors, gold answers by outcome, answer and task latency,
queue length, workers by state (away: restored, not back yet), pool events
(duplicates, gold questions, terminations, releases for slowness or low quality,
recruits, departures), crowd cost.
"""

from pe.params import AnnotatorParams
from pe.registry import PeSpec, register_pe

__all__ = ["SPEC"]

SPEC = register_pe(
    PeSpec(
        name="annotator",
        package=__name__,
        summary="the crowd's retainer pool answers tasks",
        inputs=("crowd.tasks", "crowd.labels", "jobs.results", "crowd.pool"),
        outputs=("crowd.labels", "crowd.pool", "items.rejected"),
        agents="pe.annotator.agent:register",
        params=AnnotatorParams,
        singleton=True,
        replayable=False,
    )
)
