"""Feature extractor PE.

Input: ``items.raw`` (InputItem JSON from the collector or any Kafka producer).
Output: ``items.features`` (FeatureItem), ``items.rejected`` (records failing validation).
State: none; any number of instances can run.
Guarantee: at least once (a batch is acknowledged after its output is delivered).
Metrics: items in/out/rejected, batch processing time (pe="features").
"""

from pe.features.agent import register

__all__ = ["register"]
