"""``crowdstream status``: a live terminal view of a deployment, from its workers' metrics.

Each refresh scrapes ``/metrics`` of every worker URL given, sums the samples over
workers, and shows rates (from the difference with the previous scrape), latency
percentiles (from the histogram buckets that filled in between), consumer lag, the
crowd pool, models and jobs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "render", "run_status", "scrape", "summarize"]

Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    """Samples of every worker, summed by name and labels (the ``pipeline`` kept)."""

    at: float
    samples: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))
    down: list[str] = field(default_factory=list)
    #: Workers that answer but whose broker does not (``crowdstream_broker_up`` 0).
    broker_down: list[str] = field(default_factory=list)

    def add(self, text: str, source: str = "") -> None:
        """One worker's exposition (``source``: its URL)."""
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.startswith("crowdstream_"):
                    continue
                if sample.name == "crowdstream_broker_up" and sample.value == 0:
                    self.broker_down.append(source)
                key = tuple(sorted(sample.labels.items()))
                series = self.samples[sample.name]
                series[key] = series.get(key, 0.0) + sample.value

    def by(self, name: str, label: str) -> dict[str, float]:
        """``name`` summed by one label."""
        out: dict[str, float] = defaultdict(float)
        for labels, value in self.samples.get(name, {}).items():
            out[dict(labels).get(label, "")] += value
        return dict(out)

    def latest(self, name: str, label: str) -> dict[str, float]:
        """``name`` by one label, the largest value where workers disagree (gauges such
        as a model version are the same on every worker that has them)."""
        out: dict[str, float] = {}
        for labels, value in self.samples.get(name, {}).items():
            key = dict(labels).get(label, "")
            out[key] = max(out.get(key, -math.inf), value)
        return out


async def scrape(urls: Sequence[str], timeout_s: float = 5.0) -> Scrape:
    result = Scrape(at=time.time())
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(url: str) -> None:
            try:
                async with http.get(url.rstrip("/") + "/metrics") as answer:
                    answer.raise_for_status()
                    result.add(await answer.text(), url)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                result.down.append(url)

        await asyncio.gather(*(one(url) for url in urls))
    return result


def _quantile(buckets: dict[str, float], q: float) -> float | None:
    """The ``q`` quantile of cumulative bucket counts (upper bound -> count)."""
    bounds = sorted((float(le), count) for le, count in buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in bounds:
        if count >= rank:
            if math.isinf(upper):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (upper - lower) * share
        lower, below = upper, count
    return None


def summarize(before: Scrape | None, now: Scrape) -> dict[str, Any]:
    """What the view shows, as data (also the ``--json`` output)."""
    dt = now.at - before.at if before else 0.0

    def rate(name: str, label: str) -> dict[str, float]:
        current = now.by(name, label)
        if before is None or dt <= 0:
            return {}
        previous = before.by(name, label)
        return {k: max(v - previous.get(k, 0.0), 0.0) / dt for k, v in sorted(current.items())}

    buckets = now.by("crowdstream_end_to_end_latency_seconds_bucket", "le")
    if before is not None:  # the latency of what arrived since the last refresh
        old = before.by("crowdstream_end_to_end_latency_seconds_bucket", "le")
        buckets = {le: count - old.get(le, 0.0) for le, count in buckets.items()}
    auc = now.latest("crowdstream_model_auc", "classifier")
    return {
        "workers_down": now.down,
        "broker_down": now.broker_down,
        "out_per_s": rate("crowdstream_items_out_total", "pe"),
        "in_per_s": rate("crowdstream_items_in_total", "pe"),
        "latency_s": {f"p{int(q * 100)}": _quantile(buckets, q) for q in (0.5, 0.95, 0.99)},
        "rejected": now.by("crowdstream_items_rejected_total", "pe"),
        "shed": now.by("crowdstream_items_shed_total", "pe"),
        "lag": now.by("crowdstream_consumer_lag", "topic"),
        "pool": now.by("crowdstream_pool_workers", "state"),
        "crowd_queue": sum(now.by("crowdstream_crowd_queue", "").values()),
        "labels": now.by("crowdstream_crowd_labels_total", "outcome"),
        "models": {
            name: {"version": int(version), "auc": auc.get(name)}
            for name, version in sorted(
                now.latest("crowdstream_model_version", "classifier").items()
            )
        },
        "models_refused": now.by("crowdstream_models_refused_total", "reason"),
        "jobs": now.by("crowdstream_jobs", "status"),
    }


def _pairs(values: dict[str, float], fmt: str = "{:.0f}") -> str:
    return "  ".join(f"{k} {fmt.format(v)}" for k, v in values.items() if k) or "-"


def render(summary: dict[str, Any], urls: Sequence[str]) -> str:
    latency = summary["latency_s"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    models = "  ".join(
        f"{name} v{m['version']} AUC {m['auc']:.3f}"
        if m["auc"] is not None
        else f"{name} v{m['version']}"
        for name, m in summary["models"].items()
    )
    lines = [
        f"crowdstream status  {time.strftime('%H:%M:%S')}  workers {len(urls)}"
        + (f"  DOWN: {', '.join(summary['workers_down'])}" if summary["workers_down"] else "")
        + (
            f"  BROKER UNREACHABLE from: {', '.join(summary['broker_down'])}"
            if summary["broker_down"]
            else ""
        ),
        "",
        f"out/s      {_pairs(summary['out_per_s'], '{:.1f}')}",
        f"in/s       {_pairs(summary['in_per_s'], '{:.1f}')}",
        f"latency    p50 {ms(latency['p50'])}  p95 {ms(latency['p95'])}  p99 {ms(latency['p99'])}",
        f"lag        {_pairs(summary['lag'])}",
        f"rejected   {_pairs(summary['rejected'])}",
        f"shed       {_pairs(summary['shed'])}",
        f"pool       {_pairs(summary['pool'])}  queue {summary['crowd_queue']:.0f}",
        f"labels     {_pairs(summary['labels'])}",
        f"models     {models or '-'}",
        f"refused    {_pairs(summary['models_refused'])}",
        f"jobs       {_pairs(summary['jobs'])}",
    ]
    return "\n".join(lines)


async def run_status(urls: Sequence[str], *, interval_s: float, once: bool, as_json: bool) -> int:
    """Show the view every ``interval_s`` (``once``: one view, after one interval)."""
    before = await scrape(urls)
    if len(before.down) == len(urls):
        print(f"no worker answered at {', '.join(urls)}")
        return 1
    while True:
        await asyncio.sleep(interval_s)
        now = await scrape(urls)
        summary = summarize(before, now)
        if as_json:
            print(orjson.dumps(summary).decode(), flush=True)
        else:
            clear = "" if once else "\x1b[H\x1b[2J"
            print(clear + render(summary, urls), flush=True)
        if once:
            return 0
        before = now
