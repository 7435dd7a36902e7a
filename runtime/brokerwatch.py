"""Noticing that the broker stopped answering, and that it answers again.

Clients wait out a broker that is away (their requests time out after tens of
seconds and are retried), so nothing is lost, but a worker that only waits looks
idle. A probe asks the broker for metadata every few seconds with a short timeout;
this tracks the answers and tells when an outage starts and ends, so the worker logs
each once and exposes whether the broker is up.

Pure logic: the caller passes the time and whether the probe was answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["BrokerWatch", "Change"]

Change = Literal["down", "up"] | None


@dataclass
class BrokerWatch:
    down_since: float | None = None  #: when the first unanswered probe was sent
    #: Topics of the pipeline the broker did not name at the last answered probe.
    missing_topics: list[str] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.down_since is None

    def probed(self, now: float, answered: bool) -> Change:
        """Record a probe sent at ``now``; "down" when an outage starts, "up" when it
        ends, None otherwise."""
        if answered:
            if self.down_since is None:
                return None
            self.down_since = None
            return "up"
        if self.down_since is not None:
            return None
        self.down_since = now
        return "down"

    def outage_s(self, now: float) -> float:
        """How long the broker has not answered (0 while it does)."""
        return 0.0 if self.down_since is None else now - self.down_since
