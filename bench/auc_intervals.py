"""Coverage of 95% AUC intervals on small held-out sets with few positives.

Each trial draws ``positives`` and ``negatives`` binormal scores whose true AUC is
known (positives N(d, 1), negatives N(0, 1): AUC = Phi(d / sqrt 2)), measures the
AUC, and checks whether each interval holds the true one:

- ``wald_hanley_mcneil``, ``wald_delong``: AUC +- z standard errors;
- ``logit_delong``: the same on the logit scale (none at an AUC of 0 or 1, a miss);
- ``newcombe``: the interval the learner reports (``pe.common.intervals``).

Prints a table and writes reports/bench-auc-intervals-<timestamp>.json.

Usage: python bench/auc_intervals.py [--trials 4000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pe.common.intervals import auc_interval, z_for

#: (positives, negatives): held-out sets of 38 with 2 to 8 positives, and a larger one.
SIZES = ((2, 36), (4, 34), (8, 30), (20, 80))
TRUE_AUCS = (0.6, 0.75, 0.9, 0.97)


def _delong(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """The AUC and DeLong's variance."""
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = float(pairs.mean())
    variance = pairs.mean(axis=1).var(ddof=1) / len(pos) + pairs.mean(axis=0).var(ddof=1) / len(neg)
    return auc, float(variance)


def _hanley_mcneil(auc: float, m: int, n: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    return (auc * (1 - auc) + (m - 1) * (q1 - auc * auc) + (n - 1) * (q2 - auc * auc)) / (m * n)


def _intervals(pos: np.ndarray, neg: np.ndarray, z: float) -> dict[str, tuple[float, float]]:
    auc, variance = _delong(pos, neg)
    m, n = len(pos), len(neg)
    hm = z * math.sqrt(_hanley_mcneil(auc, m, n))
    dl = z * math.sqrt(variance)
    logit = (math.nan, math.nan)
    if 0 < auc < 1:
        centre, half = math.log(auc / (1 - auc)), dl / (auc * (1 - auc))
        logit = (1 / (1 + math.exp(half - centre)), 1 / (1 + math.exp(-centre - half)))
    return {
        "wald_hanley_mcneil": (auc - hm, auc + hm),
        "wald_delong": (auc - dl, auc + dl),
        "logit_delong": logit,
        "newcombe": auc_interval(auc, m, n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    z = z_for(0.95)
    rows: list[dict[str, Any]] = []
    for m, n in SIZES:
        for true in TRUE_AUCS:
            shift = math.sqrt(2) * float(norm.ppf(true))
            hits: dict[str, int] = {}
            for _ in range(args.trials):
                found = _intervals(rng.normal(shift, 1, m), rng.normal(0, 1, n), z)
                for method, (low, high) in found.items():
                    hits[method] = hits.get(method, 0) + int(low <= true <= high)
            coverage = {k: round(v / args.trials, 3) for k, v in hits.items()}
            rows.append({"positives": m, "negatives": n, "true_auc": true, "coverage": coverage})
            print(
                f"{m:3d} pos {n:3d} neg  AUC {true:.2f}  "
                + "  ".join(f"{k} {v:.3f}" for k, v in coverage.items())
            )
    out = Path("reports") / f"bench-auc-intervals-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"trials": args.trials, "seed": args.seed, "rows": rows}, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
