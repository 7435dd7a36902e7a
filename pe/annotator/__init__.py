"""Crowd annotator PE.

Input: ``crowd.tasks`` (Task).
Output: ``crowd.labels`` (Label: the majority-vote tag of ``redundancy`` answers, or
null when they disagree, with every answer); ``items.rejected`` (malformed tasks).
State: the retainer pool (workers, and tasks being answered), in memory; tasks are
read only while fewer than ``max_queue`` wait, so a slow crowd backs up in Kafka.
Crowd: an adapter (pe.annotator.crowd); the simulated crowd answers from Task.truth.
Metrics: items in/out/rejected (pe="annotator"), answers, labels by outcome, answer
latency, queue length, workers by state.
"""

from pe.annotator.agent import register

__all__ = ["register"]
