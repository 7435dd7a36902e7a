"""Feature extractor PE.

Input: ``items.raw`` (InputItem JSON from the collector or any Kafka producer), read
in batches by the data plane (runtime.dataflow).
Output: ``items.features`` (FeatureItem), ``items.rejected`` (records failing
validation); the same batch goes in memory to the classifier and task generator
when they run in this process (fused).
State: none; any number of instances can run.
Guarantee: at least once (input offsets are committed after the output, including
that of fused stages, is acknowledged).
Load shedding: when ``params.shedding`` is enabled and the input falls behind, drops
near-duplicates first, then a uniform sample (see channels.shedding).
Metrics: items in/out/rejected/shed (pe="features"; in = out + rejected + shed),
kept fraction, batch processing time.
"""

from pe.params import FeaturesParams
from pe.registry import PeSpec, register_pe

__all__ = ["SPEC"]

SPEC = register_pe(
    PeSpec(
        name="features",
        package=__name__,
        summary="hashed features of each raw item",
        inputs=("items.raw", "jobs.results"),
        outputs=("items.features", "items.rejected"),
        agents="pe.features.agent:register",
        params=FeaturesParams,
        singleton=False,
    )
)
