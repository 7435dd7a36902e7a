"""``crowdstream status``: rates, percentiles and totals summed over workers' metrics."""

from __future__ import annotations

from pipelines.status import Scrape, render, summarize

WORKER_A = """
# TYPE crowdstream_items_out_total counter
crowdstream_items_out_total{pipeline="crisis",pe="classifier"} %(out)s
# TYPE crowdstream_end_to_end_latency_seconds histogram
crowdstream_end_to_end_latency_seconds_bucket{pipeline="crisis",le="0.05"} %(fast)s
crowdstream_end_to_end_latency_seconds_bucket{pipeline="crisis",le="0.1"} %(total)s
crowdstream_end_to_end_latency_seconds_bucket{pipeline="crisis",le="+Inf"} %(total)s
crowdstream_end_to_end_latency_seconds_count{pipeline="crisis"} %(total)s
crowdstream_end_to_end_latency_seconds_sum{pipeline="crisis"} 1.0
# TYPE crowdstream_model_version gauge
crowdstream_model_version{pipeline="crisis",classifier="aid_related"} %(version)s
# TYPE crowdstream_model_auc gauge
crowdstream_model_auc{pipeline="crisis",classifier="aid_related"} 0.81
# TYPE crowdstream_consumer_lag gauge
crowdstream_consumer_lag{pipeline="crisis",topic="crisis.items.raw"} 40
"""
WORKER_B = """
# TYPE crowdstream_items_out_total counter
crowdstream_items_out_total{pipeline="crisis",pe="classifier"} %(out)s
# TYPE crowdstream_pool_workers gauge
crowdstream_pool_workers{pipeline="crisis",state="working"} 3
# TYPE crowdstream_jobs gauge
crowdstream_jobs{pipeline="crisis",kind="count",status="running"} 2
# TYPE crowdstream_consumer_lag gauge
crowdstream_consumer_lag{pipeline="crisis",topic="crisis.items.raw"} 2
"""


def _scrape(at: float, out_a: int, out_b: int, fast: int, total: int, version: int) -> Scrape:
    scrape = Scrape(at=at)
    scrape.add(WORKER_A % {"out": out_a, "fast": fast, "total": total, "version": version})
    scrape.add(WORKER_B % {"out": out_b})
    return scrape


def test_rates_and_latency_come_from_the_difference_between_scrapes() -> None:
    before = _scrape(100.0, 1000, 500, fast=100, total=100, version=2)
    now = _scrape(102.0, 1300, 700, fast=110, total=200, version=3)
    summary = summarize(before, now)
    assert summary["out_per_s"] == {"classifier": 250.0}  # (300 + 200) / 2 s
    # Of the 100 items since the last scrape, 10 were under 50 ms: p50 is in 50-100 ms.
    assert 0.05 < summary["latency_s"]["p50"] < 0.1
    assert summary["lag"] == {"crisis.items.raw": 42.0}  # summed over workers
    assert summary["pool"] == {"working": 3.0}
    assert summary["models"] == {"aid_related": {"version": 3, "auc": 0.81}}
    assert summary["jobs"] == {"running": 2.0}
    text = render(summary, ["http://a", "http://b"])
    assert "classifier 250.0" in text and "aid_related v3 AUC 0.810" in text
    assert "DOWN" not in text


def test_a_worker_that_does_not_answer_is_shown() -> None:
    now = _scrape(1.0, 1, 1, 1, 1, 1)
    now.down.append("http://c")
    summary = summarize(None, now)
    assert summary["out_per_s"] == {} and "DOWN: http://c" in render(summary, ["http://c"])


def test_a_worker_that_cannot_reach_the_broker_is_shown() -> None:
    now = Scrape(at=1.0)
    now.add(
        '# TYPE crowdstream_broker_up gauge\ncrowdstream_broker_up{pipeline="crisis"} 1\n',
        "http://a",
    )
    now.add(
        '# TYPE crowdstream_broker_up gauge\ncrowdstream_broker_up{pipeline="crisis"} 0\n',
        "http://b",
    )
    summary = summarize(None, now)
    assert summary["broker_down"] == ["http://b"]
    assert "BROKER UNREACHABLE from: http://b" in render(summary, ["http://a", "http://b"])
