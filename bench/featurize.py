"""Feature extraction speed: items per second of each feature set.

A benchmark, not a test. The feature extractor's own code (``FeatureSpace``) turns
the bundled sample's messages into rows, in batches as the data plane hands them
over; the first batch warms up (models load, caches fill) and is not timed.
Reported per feature set: items/s and stored features per item. JSON on stdout.
Pin it to one core for numbers comparable across machines:
``taskset -c 0 python bench/featurize.py``.
Usage: python bench/featurize.py [--data FILE] [--batch 500] [--sets word,word+char,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learning_curve import FEATURES

from pe.common.space import FeatureSpace
from pe.params import FeaturesParams
from pipelines.sample import SAMPLE_PATH, load_tagged


def _measure(params: FeaturesParams, texts: list[str], batch: int) -> dict[str, float]:
    space = FeatureSpace(params)
    space.matrix(texts[:batch])
    stored = 0
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        stored += space.matrix(texts[start : start + batch]).nnz
    seconds = time.perf_counter() - started
    return {
        "items_per_s": round(len(texts) / seconds),
        "features_per_item": round(stored / len(texts)),
        "seconds": round(seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SAMPLE_PATH)
    parser.add_argument("--classifier", default="aid_related")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--sets", default=",".join(FEATURES))
    args = parser.parse_args()
    names = args.sets.split(",")
    unknown = [name for name in names if name not in FEATURES]
    if unknown:
        raise SystemExit(f"unknown feature sets {unknown}; known: {list(FEATURES)}")
    texts = [text for text, _ in load_tagged(args.data, args.classifier)]
    result = {
        "items": len(texts),
        "batch": args.batch,
        "sets": {name: _measure(FEATURES[name], texts, args.batch) for name in names},
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
