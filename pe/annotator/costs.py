"""What the crowd is paid: waiting pay per minute in the pool, work pay per record.

CLAMShell's live runs paid $0.05 a minute to wait for work and $0.02 a record of
work, including the work of assignments terminated because another worker finished
first. Waiting pay belongs to the pool; work pay to the job whose task it was.
Both are also kept per worker, for what each person has earned.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

__all__ = ["CostLedger", "Earnings"]


@dataclass
class Earnings:
    """One worker's pay so far."""

    waiting_s: float = 0.0
    records: int = 0
    terminated_records: int = 0  #: of ``records``, work another worker finished first
    answers: int = 0  #: assignments answered (each counts as a vote)
    terminated: int = 0  #: assignments another worker finished first (paid, no vote)


@dataclass
class CostLedger:
    per_minute: float = 0.05
    per_record: float = 0.02
    waiting_s: float = 0.0
    #: Records paid per job, and of those, records of terminated assignments.
    records: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    terminated_records: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    workers: dict[str, Earnings] = field(default_factory=lambda: defaultdict(Earnings))

    def wait(self, seconds: float, worker_id: str) -> None:
        seconds = max(seconds, 0.0)
        self.waiting_s += seconds
        self.workers[worker_id].waiting_s += seconds

    def work(self, job: str, records: int, worker_id: str, *, terminated: bool = False) -> None:
        self.records[job] += records
        earned = self.workers[worker_id]
        earned.records += records
        if terminated:
            self.terminated_records[job] += records
            earned.terminated_records += records
            earned.terminated += 1
        else:
            earned.answers += 1

    def earnings(self, worker_id: str, waiting_s: float = 0.0) -> dict[str, float | int]:
        """What ``worker_id`` has earned, plus ``waiting_s`` of waiting not yet settled."""
        earned = self.workers.get(worker_id, Earnings())
        waited = earned.waiting_s + max(waiting_s, 0.0)
        waiting_pay = waited / 60.0 * self.per_minute
        work_pay = earned.records * self.per_record
        return {
            "waiting_minutes": round(waited / 60.0, 3),
            "waiting": round(waiting_pay, 4),
            "records": earned.records,
            "terminated_records": earned.terminated_records,
            "work": round(work_pay, 4),
            "total": round(waiting_pay + work_pay, 4),
        }

    @property
    def waiting_cost(self) -> float:
        return self.waiting_s / 60.0 * self.per_minute

    def job_cost(self, job: str) -> float:
        return self.records.get(job, 0) * self.per_record

    @property
    def work_cost(self) -> float:
        return sum(self.records.values()) * self.per_record

    @property
    def total(self) -> float:
        return self.waiting_cost + self.work_cost

    def report(self) -> dict[str, object]:
        """Costs by pool and job, in currency units, rounded to cents' hundredths."""
        return {
            "waiting_minutes": round(self.waiting_s / 60.0, 3),
            "waiting": round(self.waiting_cost, 4),
            "work": round(self.work_cost, 4),
            "total": round(self.total, 4),
            "jobs": {
                job: {
                    "records": n,
                    "terminated_records": self.terminated_records.get(job, 0),
                    "cost": round(self.job_cost(job), 4),
                }
                for job, n in sorted(self.records.items())
            },
        }
