"""The label-latency objective: an event when a classifier's labels come too slowly.

A label's latency is the time from its task's creation to the label (``ts -
task_created``), the crowd's part of how stale a classifier's training is. Per
classifier, the labels of the last ``window_s`` seconds (by label time) are kept;
when at least ``min_labels`` of them have a 95th percentile above the objective,
``label.latency_missed`` is sent, once, until the percentile is back under the
objective. The window is not durable: after a restart it fills again from the
labels read from then on.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from channels.records import Label
from pe.notifier.delivery import Event

__all__ = ["LatencyObjective"]

EVENT = "label.latency_missed"


class LatencyObjective:
    def __init__(self, p95_s: float, window_s: float, min_labels: int) -> None:
        self.p95_s = p95_s
        self.window_s = window_s
        self.min_labels = min_labels
        self._window: dict[str, list[tuple[float, float]]] = {}  #: (label ts, latency)
        self._missed: set[str] = set()  #: classifiers over the objective now

    def take(self, labels: Iterable[Label]) -> list[Event]:
        """The events a batch of labels brings (at most one per classifier)."""
        touched: set[str] = set()
        for label in labels:
            if (
                label.status != "labeled"
                or label.kind == "gold"
                or label.corrected_by is not None
                or label.task_created is None
            ):
                continue
            latency = max(0.0, label.ts - label.task_created)
            self._window.setdefault(label.classifier, []).append((label.ts, latency))
            touched.add(label.classifier)
        return [event for name in sorted(touched) if (event := self._check(name)) is not None]

    def _check(self, classifier: str) -> Event | None:
        window = self._window[classifier]
        newest = max(ts for ts, _ in window)
        window[:] = [(ts, lat) for ts, lat in window if ts > newest - self.window_s]
        if len(window) < self.min_labels:
            return None
        p95 = float(np.percentile([lat for _, lat in window], 95))
        if p95 <= self.p95_s:
            self._missed.discard(classifier)
            return None
        if classifier in self._missed:
            return None
        self._missed.add(classifier)
        return Event(
            EVENT,
            f"{classifier}/{newest:.3f}",
            {
                "classifier": classifier,
                "p95_s": round(p95, 3),
                "objective_s": self.p95_s,
                "window_s": self.window_s,
                "labels": len(window),
                "at": newest,
            },
        )
