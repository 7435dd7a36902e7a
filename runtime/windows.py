"""The open stream windows of a pipeline's jobs, as the stages that shed load see them.

A job's window must see its items: a protected window's items are never shed, and
an unprotected window counts the items it lost, so its count can be corrected
(docs/jobs.md). Every process that sheds keeps one registry, fed by the jobs'
status records (``jobs.results``: a running job's status carries its window).

Pure logic: records are the JSON objects the shedder opened.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channels.jobs import TERMINAL, ItemFilter, JobStatus

__all__ = ["WindowRegistry"]


@dataclass(frozen=True)
class _Open:
    filter: ItemFilter
    pattern: re.Pattern[str] | None
    protect: bool

    def matches(self, record: Mapping[str, Any]) -> bool:
        text, source = record.get("text"), record.get("source")
        return isinstance(text, str) and self.filter.matches(
            text, source if isinstance(source, str) else None, self.pattern
        )


class WindowRegistry:
    def __init__(self) -> None:
        self._open: dict[str, _Open] = {}
        self._shed: Counter[str] = Counter()

    def update(self, status: JobStatus) -> None:
        """Follow a job's status: its window opens, stays open, or closes."""
        window = status.window
        if window is None or not window.get("open") or status.status in TERMINAL:
            self._open.pop(status.job_id, None)
            return
        spec = ItemFilter.model_validate(window.get("filter") or {})
        self._open[status.job_id] = _Open(spec, spec.compiled(), bool(window.get("protect")))

    def protects(self, record: Mapping[str, Any]) -> bool:
        """Must ``record`` be kept (an open protected window wants it)?"""
        return any(w.protect and w.matches(record) for w in self._open.values())

    def witness(self, record: Mapping[str, Any]) -> None:
        """``record`` was shed: count it for the unprotected windows it was in."""
        for job_id, window in self._open.items():
            if not window.protect and window.matches(record):
                self._shed[job_id] += 1

    def drain(self) -> dict[str, int]:
        """Shed counts per job since the last call."""
        counts, self._shed = dict(self._shed), Counter()
        return counts

    @property
    def any_open(self) -> bool:
        return bool(self._open)
