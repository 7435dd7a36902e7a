"""What the crowd is paid: waiting pay per minute in the pool, work pay per record.

CLAMShell's live runs paid $0.05 a minute to wait for work and $0.02 a record of
work, including the work of assignments terminated because another worker finished
first. Waiting pay belongs to the pool; work pay to the job whose task it was.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

__all__ = ["CostLedger"]


@dataclass
class CostLedger:
    per_minute: float = 0.05
    per_record: float = 0.02
    waiting_s: float = 0.0
    #: Records paid per job, and of those, records of terminated assignments.
    records: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    terminated_records: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def wait(self, seconds: float) -> None:
        self.waiting_s += max(seconds, 0.0)

    def work(self, job: str, records: int, *, terminated: bool = False) -> None:
        self.records[job] += records
        if terminated:
            self.terminated_records[job] += records

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
