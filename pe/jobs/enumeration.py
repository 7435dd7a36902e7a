"""Enumeration jobs: list the distinct things the items mention, and know when
most of them are found.

Each task shows one item drawn at random (with replacement) and asks the job's
question; every value a worker lists (lower-cased, spaces collapsed) is one
observation. The job reports the distinct values so far, Chao92's estimate of
the total with the streaker correction, its completeness, and the distinct
values expected from the next tasks (:mod:`pe.jobs.species`). It stops once the
completeness reaches ``target_coverage`` after ``min_answers`` observations, or
before the budget would be passed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from channels.jobs import EnumerationJob
from channels.records import Task
from pe.jobs.run import JobRun, Plan, truth_of
from pe.jobs.species import Enumeration, estimate

__all__ = ["canonical", "EnumerationRun"]

_SPACES = re.compile(r"\s+")


def canonical(value: str) -> str:
    """Qurk's LowercaseSingleSpace: spelling variants of case and spacing merge."""
    return _SPACES.sub(" ", value.strip().lower())


@dataclass
class EnumerationRun(JobRun):
    spec: EnumerationJob

    def observations(self) -> list[tuple[str, str]]:
        out = []
        for _, label in self.answered():
            for answer in label.answers:
                for value in answer.values or []:
                    name = canonical(value)
                    if name:
                        out.append((answer.worker_id, name))
        return out

    def _species(self) -> Enumeration:
        return estimate(
            self.observations(),
            self.spec.horizons,
            k=self.spec.streaker_k,
            beta=self.spec.streaker_beta,
        )

    def next_task(self, plan: Plan) -> Task | None:
        if not self.items:
            return None
        item = self.rng.choice(list(self.items.values()))
        values = truth_of(item, self.spec.truth_key)
        return self.new_task(
            plan,
            item_id=item.id,
            question=self.spec.question,
            text=item.text,
            form="enumerate",
            redundancy=1,
            truth_values=[str(v) for v in values] if isinstance(values, list) else None,
        )

    def done_reason(self, plan: Plan) -> str | None:
        result = self._species()
        if (
            result.raw.n >= self.spec.min_answers
            and result.corrected.completeness >= self.spec.target_coverage
        ):
            return "the distinct answers found reached the target coverage"
        return None

    def exhausted_reason(self) -> str | None:
        return "the window had no items"

    def progress(self) -> dict[str, int | float]:
        return {**self.counts(), "observations": len(self.observations())}

    def estimate(self) -> dict[str, Any] | None:
        if self.window is not None and not self.window.closed:
            return None
        result = self._species()
        raw, corrected = result.raw, result.corrected
        frequencies = Counter(value for _, value in self.observations())
        return {
            "distinct": raw.distinct,
            "observations": raw.n,
            "singletons": raw.f1,
            "sample_coverage": round(raw.coverage, 4),
            "total_chao92": None if raw.total is None else round(raw.total, 2),
            "total_corrected": None if corrected.total is None else round(corrected.total, 2),
            "coverage": round(corrected.completeness, 4),
            "expected_new": {str(m): round(v, 2) for m, v in result.predicted.items()},
            #: Every distinct answer, most often given first.
            "values": [value for value, _ in frequencies.most_common(1000)],
            "crowd_tasks": len(self.answered()),
            "cost": round(self.cost, 6),
        }
