"""The crowd labels a classifier tags items with: by item id, and by near-duplicate.

The classifier follows ``crowd.labels`` into a :class:`CrowdLabels` index. A label is
*usable* when the crowd settled a label task on a tag of the classifier: status
``labeled``, form ``label``, a tag (not a disagreement), not a gold question (whose
tag is the known answer, asked to measure workers). The index holds the newest
usable label of each (classifier, item), at most ``capacity`` labels in all: past
that the oldest is forgotten. A label with a signature (``Label.sig``, the item's
SimHash) is also found for the item's near-duplicates: items within ``max_bits``
differing bits, the task generator's ``near_dup_bits``. A signature of 0 (a text
without word features) is no item's near-duplicate.

Pure logic: labels in (pydantic ``Label`` records), crowd tags out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from channels.records import Label
from pe.common.simhash import SignatureSet

__all__ = ["CrowdLabels", "CrowdTag"]


@dataclass(frozen=True)
class CrowdTag:
    """What the index keeps of a usable label."""

    item_id: str
    classifier: str
    tag: str
    #: The label's posterior, else the share of its answers that agreed.
    confidence: float
    ts: float
    slot: int | None  #: its signature's slot, if it has one


class CrowdLabels:
    """The newest usable crowd label of each (classifier, item), at most ``capacity``."""

    def __init__(self, tags: Mapping[str, Sequence[str]], capacity: int, max_bits: int) -> None:
        """``tags``: each classifier's tags (a label of another tag is not usable)."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.max_bits = max_bits
        self._tags: dict[str, frozenset[str]] = {}
        self._group: dict[str, int] = {}
        #: Every label, oldest first (what to forget first).
        self._order: OrderedDict[tuple[str, str], CrowdTag] = OrderedDict()
        #: Per classifier, item id -> its label (the same objects as ``_order``).
        self._by_id: dict[str, dict[str, CrowdTag]] = {}
        self._sigs = SignatureSet(capacity, groups=0)
        self._slots: list[CrowdTag | None] = [None] * capacity
        for name, names in tags.items():
            self.add_classifier(name, names)

    def add_classifier(self, name: str, tags: Sequence[str]) -> None:
        """Index the labels of classifier ``name`` too (one added on a running
        pipeline); nothing changes if it is indexed already."""
        if name in self._group:
            return
        self._tags[name] = frozenset(tags)
        self._group[name] = self._sigs.groups
        self._by_id[name] = {}
        self._sigs.groups += 1

    def __len__(self) -> int:
        return len(self._order)

    def usable(self, label: Label) -> bool:
        return (
            label.status == "labeled"
            and label.form == "label"
            and label.kind != "gold"
            and label.tag is not None
            and label.tag in self._tags.get(label.classifier, ())
        )

    def take(self, label: Label) -> bool:
        """Index ``label`` if usable and not older than the item's label already
        held; True if it is held now (taking a label twice changes nothing)."""
        if not self.usable(label) or label.tag is None:
            return False
        held = self._by_id[label.classifier].get(label.item_id)
        if held is not None:
            if held.ts >= label.ts:
                return held.ts == label.ts
            self._forget(held)
        # The ring of signatures reuses a slot ``capacity`` adds later. Usually its label
        # has been forgotten by then; when newer labels of the same items replaced
        # each other meanwhile, it may still be held, and is then found by id only.
        slot = self._sigs.add(label.sig, self._group[label.classifier]) if label.sig else None
        confidence = label.posterior if label.posterior is not None else label.agreement
        crowd = CrowdTag(label.item_id, label.classifier, label.tag, confidence, label.ts, slot)
        if slot is not None:
            self._slots[slot] = crowd
        self._order[label.classifier, label.item_id] = crowd
        self._by_id[label.classifier][label.item_id] = crowd
        while len(self._order) > self.capacity:
            self._forget(next(iter(self._order.values())))
        return True

    def _forget(self, crowd: CrowdTag) -> None:
        del self._order[crowd.classifier, crowd.item_id]
        del self._by_id[crowd.classifier][crowd.item_id]
        if crowd.slot is not None and self._slots[crowd.slot] is crowd:
            self._sigs.drop(crowd.slot)
            self._slots[crowd.slot] = None

    def own(self, classifier: str, item_id: str) -> CrowdTag | None:
        """The item's own label for ``classifier``, if the index holds one."""
        return self._by_id.get(classifier, {}).get(item_id)

    def tags(
        self, ids: Sequence[str], sigs: Sequence[int]
    ) -> Iterator[tuple[str, int, CrowdTag, bool]]:
        """The crowd tags of a batch of items (``ids`` and their signatures):
        ``(classifier, index in the batch, label, own)``, ``own`` when the label is
        the item's, else the label of its nearest labeled near-duplicate. Items
        with neither are not given."""
        if not self._order:
            return
        wanted = np.asarray(sigs, dtype=np.uint64)
        # Which (item, classifier) may take a near-duplicate's label: not an item
        # with its own label, nor one without a signature.
        open_ = np.ones((len(ids), len(self._group)), dtype=np.bool_)
        open_[wanted == 0] = False
        for name, group in self._group.items():
            by_id = self._by_id[name]
            if not by_id:
                continue
            for i, crowd in enumerate(map(by_id.get, ids)):
                if crowd is not None:
                    open_[i, group] = False
                    yield name, i, crowd, True
        if not len(self._sigs):
            return
        nearest = self._sigs.nearest(wanted, self.max_bits)
        rows, groups = np.nonzero((nearest >= 0) & open_)
        names = list(self._group)
        slots = nearest[rows, groups].tolist()
        for i, group, slot in zip(rows.tolist(), groups.tolist(), slots, strict=True):
            crowd = self._slots[slot]
            if crowd is not None:
                yield names[group], i, crowd, False

    def snapshot(self) -> dict[str, list[tuple[str, str]]]:
        """Each classifier's labeled items and tags, sorted (the contract compares it
        across a restart)."""
        return {
            name: sorted((item_id, crowd.tag) for item_id, crowd in by_id.items())
            for name, by_id in self._by_id.items()
        }
