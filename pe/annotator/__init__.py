"""Crowd annotator PE: a CLAMShell retainer pool labels tasks at interactive speed.

Input: ``crowd.tasks`` (Task).
Output: ``crowd.labels`` (Label: the majority-vote tag of ``redundancy`` answers, or
null when they disagree, with every answer); ``items.rejected`` (malformed tasks).
State: the retainer pool (workers, their latency records, tasks being answered, the
cost ledger with each worker's earnings) and, with the web crowd, the workers'
sessions and invite codes, in memory; tasks are read only while fewer than ``max_queue`` wait, so
a slow crowd backs up in Kafka.
Pool logic (pure, in ``pool``, ``latency``, ``costs``): qualification, heartbeats,
background recruitment, straggler mitigation, pool maintenance with TermEst. The
pool service (``lifeguard``) drives it on a clock (``clock``) for a crowd platform
(``crowd``: the adapter interface and the simulated crowd, whose workers come from
``population``; ``web``: people in browsers, through the crowd API under ``/api/v1``
and the worker page ``/work`` on the worker's HTTP port).
Metrics: items in/out/rejected (pe="annotator"), answers, labels by outcome, answer
and task latency, queue length, workers by state, pool events (duplicates,
terminations, releases, recruits, departures), crowd cost.
"""

from pe.annotator.agent import register

__all__ = ["register"]
