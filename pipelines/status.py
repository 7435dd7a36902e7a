"""``crowdstream status``: a live terminal view of a deployment, from its workers' metrics.

Each refresh scrapes ``/metrics`` of every worker URL given and keeps each worker's
samples apart, then merges them figure by figure: what each worker does on its own
share is summed (counters such as records in and out, latency buckets, and the lag
of each worker's partitions); what is one state of the pipeline that every worker
holding it reports alike is not (a model's version and AUC, the crowd pool and
queue, jobs, refused model messages): those show the largest value, and a model
version some workers have not applied yet is shown with those workers. Rates and
latency percentiles come from each worker's difference with the previous scrape.
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

from channels.records import format_auc

__all__ = ["Scrape", "increase", "render", "run_status", "scrape", "summarize"]

Labels = tuple[tuple[str, str], ...]
Series = dict[Labels, float]


@dataclass
class Scrape:
    """The samples of every worker that answered, by worker URL, name and labels."""

    at: float
    workers: dict[str, dict[str, Series]] = field(default_factory=dict)
    down: list[str] = field(default_factory=list)
    #: Workers that answer but whose broker does not (``crowdstream_broker_up`` 0).
    broker_down: list[str] = field(default_factory=list)

    def add(self, text: str, source: str) -> None:
        """One worker's exposition (``source``: its URL)."""
        samples: dict[str, Series] = defaultdict(dict)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.startswith("crowdstream_"):
                    continue
                if sample.name == "crowdstream_broker_up" and sample.value == 0:
                    self.broker_down.append(source)
                samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
        self.workers[source] = samples

    def each(self, name: str, label: str) -> dict[str, dict[str, float]]:
        """``name`` by one label (summed over the others), for each worker that has it."""
        out: dict[str, dict[str, float]] = {}
        for source, samples in self.workers.items():
            if name in samples:
                out[source] = _group(samples[name], label)
        return out

    def total(self, name: str, label: str) -> dict[str, float]:
        """``name`` by one label, summed over workers: what each does on its own share."""
        out: dict[str, float] = defaultdict(float)
        for values in self.each(name, label).values():
            for key, value in values.items():
                out[key] += value
        return dict(out)

    def highest(self, name: str, label: str) -> dict[str, float]:
        """``name`` by one label, the largest value over workers: for a state of the
        whole pipeline, which every worker that holds it reports alike (adding it up
        would count it once per worker)."""
        out: dict[str, float] = {}
        for values in self.each(name, label).values():
            for key, value in values.items():
                out[key] = max(out.get(key, -math.inf), value)
        return out


def _group(series: Series, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for labels, value in series.items():
        out[dict(labels).get(label, "")] += value
    return dict(out)


def increase(before: Scrape, now: Scrape, name: str, label: str) -> dict[str, float]:
    """How much counter ``name`` grew between two scrapes, by one label, summed over the
    workers that answered both. Each worker is compared with itself: one that was down
    at one of the scrapes adds nothing, and one whose counter went down restarted, so
    all it counted since is new (as Prometheus's ``increase``)."""
    out: dict[str, float] = defaultdict(float)
    for source, samples in now.workers.items():
        previous = before.workers.get(source)
        if previous is None:
            continue
        old = previous.get(name, {})
        for labels, value in samples.get(name, {}).items():
            grown = value - old.get(labels, 0.0)
            out[dict(labels).get(label, "")] += grown if grown >= 0 else value
    return dict(out)


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
        if before is None or dt <= 0:
            return {}
        return {k: v / dt for k, v in sorted(increase(before, now, name, label).items())}

    bucket = "crowdstream_end_to_end_latency_seconds_bucket"
    # The latency of what arrived since the last refresh.
    buckets = now.total(bucket, "le") if before is None else increase(before, now, bucket, "le")
    return {
        "workers_down": now.down,
        "broker_down": now.broker_down,
        "out_per_s": rate("crowdstream_items_out_total", "pe"),
        "in_per_s": rate("crowdstream_items_in_total", "pe"),
        "latency_s": {f"p{int(q * 100)}": _quantile(buckets, q) for q in (0.5, 0.95, 0.99)},
        "rejected": now.total("crowdstream_items_rejected_total", "pe"),
        "shed": now.total("crowdstream_items_shed_total", "pe"),
        # Each worker reports the lag of the partitions assigned to it.
        "lag": now.total("crowdstream_consumer_lag", "topic"),
        # The annotator and the jobs PE rebuild the pipeline's one pool, queue and set
        # of jobs from the logs they follow whole; labels are counted where written.
        "pool": now.highest("crowdstream_pool_workers", "state"),
        "crowd_queue": now.highest("crowdstream_crowd_queue", "").get("", 0.0),
        "labels": now.total("crowdstream_crowd_labels_total", "outcome"),
        "models": _models(now),
        # Every worker reads every model message: one forged message is refused by
        # each of them, and is still one.
        "models_refused": now.highest("crowdstream_models_refused_total", "reason"),
        "jobs": now.highest("crowdstream_jobs", "status"),
    }


def _models(now: Scrape) -> dict[str, dict[str, Any]]:
    """Each classifier's newest model over workers: its version, held-out AUC and the
    AUC's 95% interval, and the workers still on an older version (``behind``: URL ->
    version)."""
    versions = now.each("crowdstream_model_version", "classifier")
    figures = {
        key: now.each(f"crowdstream_model_{key}", "classifier")
        for key in ("auc", "auc_low", "auc_high")  # with its 95% interval
    }
    models: dict[str, dict[str, Any]] = {}
    for name in sorted({name for active in versions.values() for name in active}):
        at = {source: int(active[name]) for source, active in versions.items() if name in active}
        newest = max(at.values())
        source = next(source for source, version in at.items() if version == newest)
        models[name] = {
            "version": newest,
            **{key: values.get(source, {}).get(name) for key, values in figures.items()},
            "behind": {source: version for source, version in at.items() if version < newest},
        }
    return models


def _pairs(values: dict[str, float], fmt: str = "{:.0f}") -> str:
    return "  ".join(f"{k} {fmt.format(v)}" for k, v in values.items() if k) or "-"


def _model(name: str, model: dict[str, Any]) -> str:
    text = f"{name} v{model['version']}"
    if model["auc"] is not None:
        text += f" AUC {format_auc(model['auc'], model['auc_low'], model['auc_high'])}"
    behind = ", ".join(f"{source} v{version}" for source, version in model["behind"].items())
    return text + (f" (behind: {behind})" if behind else "")


def render(summary: dict[str, Any], urls: Sequence[str]) -> str:
    latency = summary["latency_s"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    models = "  ".join(_model(name, m) for name, m in summary["models"].items())
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
