"""Language PE: the writing system and, where it can tell, the language of each item.

An example of a PE added from outside crowdstream (docs/extending.md walks through
it): it declares itself to the registry, runs as a Faust agent fed by the runtime,
and passes the PE contract (pipelines.contract).

Input: ``items.features`` (FeatureItem), in batches: straight from the features PE
when it runs in this process (fused), else read from Kafka.
Output: ``items.languages`` (LanguageTag: ``id``, ``script``, ``language``), a
channel this PE adds to the pipeline, keyed by item id.
State: none; any number of instances can run.
Guarantee: at least once (the batch's offsets are committed after its tags are
acknowledged). Malformed records are skipped: the classifier rejects and counts them.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import orjson
from aiokafka import ConsumerRecord
from pydantic import BaseModel, ConfigDict, Field

from channels.topics import Channel
from pe.common.featurebatch import FeatureBatch, decode_feature_batch
from pe.params import FeaturesParams
from pe.registry import PeSpec, register_pe
from runtime.context import PipelineContext
from runtime.dataflow import Pending

__all__ = ["SPEC", "LanguageParams", "LanguageTag", "language_of", "register"]

PE = "language"
#: English words common in any message, whatever it is about.
ENGLISH = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "is",
        "are",
        "was",
        "were",
        "be",
        "we",
        "i",
        "you",
        "they",
        "it",
        "this",
        "that",
        "there",
        "have",
        "has",
        "need",
        "needs",
        "please",
        "help",
        "not",
        "no",
        "at",
        "from",
        "by",
        "our",
        "my",
    ]
)
WORD = re.compile(r"[^\W\d_]+")


class LanguageParams(BaseModel):
    """``params.language`` in a topology."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Latin-script text is English when at least this share of its words are
    #: common English words; otherwise its language is "und" (undetermined).
    english_share: float = Field(0.2, gt=0, le=1)


class LanguageTag(BaseModel):
    """A record of ``items.languages``."""

    id: str
    script: str  #: the script of most letters (Unicode name's first word: LATIN, ARABIC...)
    language: str  #: "en", or "und" when this PE cannot tell


def language_of(text: str, english_share: float) -> LanguageTag:
    """The script and language of ``text`` (the id is filled in by the caller)."""
    scripts = Counter(
        unicodedata.name(char, "UNKNOWN").split()[0] for char in text if char.isalpha()
    )
    script = scripts.most_common(1)[0][0] if scripts else "NONE"
    words = [word.lower() for word in WORD.findall(text)]
    common = sum(word in ENGLISH for word in words)
    english = script == "LATIN" and bool(words) and common / len(words) >= english_share
    return LanguageTag(id="", script=script, language="en" if english else "und")


def register(ctx: PipelineContext) -> None:
    params = ctx.params_of(LanguageParams)
    n_features = ctx.params_of(FeaturesParams).dimensions

    async def decode(records: Sequence[ConsumerRecord]) -> tuple[FeatureBatch, Pending]:
        batch, _ = decode_feature_batch(records, n_features)  # bad ones: the classifier's
        return batch, []

    async def tag(batch: FeatureBatch) -> Pending:
        tags = [
            language_of(item.text, params.english_share).model_copy(update={"id": item.id})
            for item in batch.items
        ]
        return await ctx.publish(
            "items.languages",
            [(t.id.encode(), orjson.dumps(t.model_dump())) for t in tags],
        )

    ctx.consume("items.features", PE, decode, tag)


SPEC = register_pe(
    PeSpec(
        name=PE,
        package=__name__,
        summary="the script and language of each item",
        inputs=("items.features",),
        outputs=("items.languages",),
        agents=f"{__name__}:register",
        params=LanguageParams,
        channels={"items.languages": Channel()},
    )
)
