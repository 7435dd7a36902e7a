"""The retainer pool's workers on ``crowd.pool``: what to write, and what to restore.

The pool's workers (qualified, marked by maintenance, their latency records) live in
memory; a restarted annotator takes them back from the last record of each worker
on ``crowd.pool`` (:meth:`RetainerPool.restore`), so workers who return need not
qualify again and maintenance keeps what it knew of their speed. Their quality is
rebuilt from the answers in ``crowd.labels`` (the quality loop's replay).

Pure logic: the annotator reads the log into :meth:`PoolJournal.read` and writes
what :meth:`PoolJournal.changes` returns.
"""

from __future__ import annotations

from collections.abc import Mapping

from channels.records import PoolMember
from pe.annotator.latency import WorkerLatency
from pe.annotator.pool import PoolWorker

__all__ = ["PoolJournal"]

#: What makes a worker's record out of date: qualification, mark, latency records.
_Fingerprint = tuple[bool, str | None, int, int]


def _fingerprint(
    qualified: bool, marked: str | None, completed: int, terminated: int
) -> _Fingerprint:
    return (qualified, marked, completed, terminated)


class PoolJournal:
    def __init__(self) -> None:
        self._members: dict[str, PoolMember] = {}  #: present workers, as last written
        self._written: dict[str, _Fingerprint] = {}

    def read(self, member: PoolMember) -> None:
        """A record of the log (read from its start before the pool starts)."""
        if member.present:
            self._members[member.worker_id] = member
            self._written[member.worker_id] = _fingerprint(
                member.qualified, member.marked, len(member.completed), member.terminated
            )
        else:
            self._members.pop(member.worker_id, None)
            self._written.pop(member.worker_id, None)

    def restorable(self) -> list[PoolWorker]:
        """The workers the log says are in the pool, as the pool keeps them."""
        return [
            PoolWorker(
                m.worker_id,
                joined=0.0,
                last_seen=0.0,
                qualified=m.qualified,
                marked=m.marked,
                latency=WorkerLatency(list(m.completed), m.terminated, list(m.finishers)),
            )
            for m in self._members.values()
        ]

    def changes(self, workers: Mapping[str, PoolWorker], now: float) -> list[PoolMember]:
        """Records for the qualified workers whose state changed since it was last
        written, and for those who left the pool."""
        out = []
        for worker in workers.values():
            if not worker.qualified:
                continue  # a worker who has not qualified is asked again after a restart
            latency = worker.latency
            mark = _fingerprint(
                worker.qualified, worker.marked, len(latency.completed), latency.terminated
            )
            if self._written.get(worker.worker_id) == mark:
                continue
            self._written[worker.worker_id] = mark
            out.append(
                PoolMember(
                    worker_id=worker.worker_id,
                    qualified=worker.qualified,
                    marked=worker.marked,
                    completed=list(latency.completed),
                    terminated=latency.terminated,
                    finishers=list(latency.finishers),
                    ts=now,
                )
            )
        for worker_id in [w for w in self._written if w not in workers]:
            del self._written[worker_id]
            self._members.pop(worker_id, None)
            out.append(PoolMember(worker_id=worker_id, present=False, ts=now))
        return out
