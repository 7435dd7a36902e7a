"""A bounded, windowed table of recent classified items, and the filters users query it by.

Items are kept in arrival order, one per id: the latest revision of the item (a crowd
label revises an item's classification: ``revision`` above the first's 0). A newer
revision replaces the item and counts as arriving now; a repeat after a crash (same
id and revision) or an older revision is ignored. Items are evicted when the window
holds ``max_items`` or an item is older than ``max_age_s`` (by ``ts_out``, the time
it was classified). Subscribers (event streams) get each new matching item through
a bounded queue; a subscriber that falls behind loses items, counted, never the
table. Pure logic: items are the JSON objects of ``items.classified``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Query", "RecentResults", "Subscription", "event_id", "revision"]

Item = Mapping[str, Any]


def revision(item: Item) -> int:
    """An item's revision (0, its first classification, if it has none)."""
    value = item.get("revision")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def event_id(item: Item) -> str:
    """What names an item's record in an event stream: its id, and ``#revision`` for
    a revision."""
    number = revision(item)
    return f"{item.get('id')}#{number}" if number else str(item.get("id"))


def _source(label: Mapping[str, Any]) -> object:
    # Records written before tags had a source: a tag then was the model's.
    return label.get("source", "model" if label.get("tag") is not None else None)


@dataclass(frozen=True)
class Query:
    """Which items a caller wants. ``tag``, ``min_confidence`` and ``source`` (where the
    tag came from: model, crowd, propagated) are of ``classifier``'s prediction;
    ``since``/``until`` bound ``ts_out`` (epoch seconds, inclusive)."""

    classifier: str | None = None
    tag: str | None = None
    min_confidence: float | None = None
    since: float | None = None
    until: float | None = None
    source: str | None = None

    def matches(self, item: Item) -> bool:
        ts = item.get("ts_out", 0.0)
        if (self.since is not None and ts < self.since) or (
            self.until is not None and ts > self.until
        ):
            return False
        if self.classifier is None:
            return True
        label = item.get("labels", {}).get(self.classifier)
        if label is None:
            return False
        if self.tag is not None and label.get("tag") != self.tag:
            return False
        if self.source is not None and _source(label) != self.source:
            return False
        if self.min_confidence is not None:
            confidence = label.get("confidence")
            return confidence is not None and confidence >= self.min_confidence
        return True


@dataclass
class Subscription:
    query: Query
    queue: asyncio.Queue[Item | None]
    dropped: int = 0  #: items lost because the subscriber fell behind, not yet reported

    def offer(self, item: Item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1


@dataclass
class RecentResults:
    max_items: int
    max_age_s: float
    max_subscribers: int = 100
    subscriber_backlog: int = 1000
    clock: Callable[[], float] = time.time
    _items: OrderedDict[str, Item] = field(default_factory=OrderedDict)
    subscribers: list[Subscription] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[Item]) -> int:
        """Take new items and newer revisions of items in the window (repeats and older
        revisions are ignored); returns how many were taken. Each is offered to the
        subscribers it matches."""
        added = 0
        for item in items:
            item_id = str(item.get("id"))
            held = self._items.get(item_id)
            if held is not None:
                if revision(item) <= revision(held):
                    continue
                del self._items[item_id]  # the revision arrives now: at the end
            self._items[item_id] = item
            added += 1
            for subscription in self.subscribers:
                if subscription.query.matches(item):
                    subscription.offer(item)
        self.evict()
        return added

    def evict(self) -> None:
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        horizon = self.clock() - self.max_age_s
        while self._items:
            oldest = next(iter(self._items.values()))
            if oldest.get("ts_out", 0.0) >= horizon:
                break
            self._items.popitem(last=False)

    def newest_first(self, query: Query) -> Iterator[Item]:
        self.evict()
        return (item for item in reversed(self._items.values()) if query.matches(item))

    def query(self, query: Query, limit: int) -> list[Item]:
        found: list[Item] = []
        for item in self.newest_first(query):
            if len(found) == limit:
                break
            found.append(item)
        return found

    def window(self) -> dict[str, Any]:
        """What the table holds now."""
        self.evict()
        stamps = [item.get("ts_out", 0.0) for item in self._items.values()]
        return {
            "items": len(self._items),
            "max_items": self.max_items,
            "max_age_s": self.max_age_s,
            "oldest": min(stamps, default=None),
            "newest": max(stamps, default=None),
        }

    def subscribe(self, query: Query) -> Subscription | None:
        """A new subscription, or ``None`` when there are ``max_subscribers`` already."""
        if len(self.subscribers) >= self.max_subscribers:
            return None
        subscription = Subscription(query, asyncio.Queue(self.subscriber_backlog))
        self.subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self.subscribers:
            self.subscribers.remove(subscription)

    def close(self) -> None:
        """End every subscription (the server is stopping)."""
        for subscription in self.subscribers:
            try:
                subscription.queue.put_nowait(None)
            except asyncio.QueueFull:
                subscription.queue.get_nowait()
                subscription.queue.put_nowait(None)
