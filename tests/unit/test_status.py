"""``crowdstream status``: rates, percentiles and totals summed over workers' metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pipelines.status import Scrape, render, run_status, scrape, summarize

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
    page_a = WORKER_A % {"out": out_a, "fast": fast, "total": total, "version": version}
    scrape.add(page_a, "http://a")
    scrape.add(WORKER_B % {"out": out_b}, "http://b")
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
    assert summary["models"] == {
        "aid_related": {
            "version": 3,
            "auc": 0.81,
            "auc_low": None,  # a model published before intervals
            "auc_high": None,
            "behind": {},
        }
    }
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


def _stream_worker(out: int, version: int = 10, auc: float = 0.728) -> str:
    """The page of a worker running the classifier: its own items, the shared model."""
    return f"""
# TYPE crowdstream_items_out_total counter
crowdstream_items_out_total{{pipeline="crisis",pe="classifier"}} {out}
# TYPE crowdstream_consumer_lag gauge
crowdstream_consumer_lag{{pipeline="crisis",topic="crisis.items.raw"}} 5
# TYPE crowdstream_model_version gauge
crowdstream_model_version{{pipeline="crisis",classifier="aid_related"}} {version}
# TYPE crowdstream_model_auc gauge
crowdstream_model_auc{{pipeline="crisis",classifier="aid_related"}} {auc}
# TYPE crowdstream_model_auc_low gauge
crowdstream_model_auc_low{{pipeline="crisis",classifier="aid_related"}} {auc - 0.118}
# TYPE crowdstream_model_auc_high gauge
crowdstream_model_auc_high{{pipeline="crisis",classifier="aid_related"}} {auc + 0.102}
# TYPE crowdstream_models_refused_total counter
crowdstream_models_refused_total{{pipeline="crisis",reason="tampered"}} 1
"""


@pytest.fixture
async def workers() -> AsyncIterator[tuple[dict[str, str], list[str]]]:
    """Three workers' /metrics on a real local HTTP server; a page set to "" answers 503."""
    pages = {name: _stream_worker(out=100) for name in "abc"}

    async def metrics(request: web.Request) -> web.Response:
        page = pages[request.match_info["name"]]
        return web.Response(text=page) if page else web.Response(status=503)

    app = web.Application()
    app.router.add_get("/{name}/metrics", metrics)
    async with TestServer(app, host="127.0.0.1") as server:
        yield pages, [str(server.make_url(f"/{name}")) for name in "abc"]


async def test_a_model_every_worker_has_is_shown_once_in_text_and_json(
    workers: tuple[dict[str, str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, urls = workers
    assert await run_status(urls, interval_s=0, once=True, as_json=True) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["models"] == {
        "aid_related": {
            "version": 10,
            "auc": 0.728,
            "auc_low": pytest.approx(0.61),
            "auc_high": pytest.approx(0.83),
            "behind": {},
        }
    }
    assert summary["models_refused"] == {"tampered": 1.0}  # one message, refused by all
    assert summary["lag"] == {"crisis.items.raw": 15.0}  # each worker's own partitions
    assert await run_status(urls, interval_s=0, once=True, as_json=False) == 0
    text = capsys.readouterr().out
    assert "models     aid_related v10 AUC 0.728 (95% CI 0.610-0.830)\n" in text
    assert "refused    tampered 1\n" in text


async def test_workers_on_an_older_model_are_named(
    workers: tuple[dict[str, str], list[str]],
) -> None:
    pages, urls = workers
    pages["b"] = _stream_worker(out=100, version=9, auc=0.70)
    summary = summarize(None, await scrape(urls))
    assert summary["models"]["aid_related"]["version"] == 10
    assert summary["models"]["aid_related"]["auc"] == 0.728
    assert summary["models"]["aid_related"]["behind"] == {urls[1]: 9}
    assert f"v10 AUC 0.728 (95% CI 0.610-0.830) (behind: {urls[1]} v9)" in render(summary, urls)


async def test_rates_compare_each_worker_with_itself(
    workers: tuple[dict[str, str], list[str]],
) -> None:
    pages, urls = workers
    pages["a"], pages["b"], pages["c"] = (_stream_worker(out=n) for n in (100, 500, 0))
    pages["c"] = ""  # down at the first scrape
    before = await scrape(urls)
    assert before.down == [urls[2]]
    # a classified 50 more; b restarted and classified 20 since; c is back with a
    # counter of 1,000 that says nothing about the last interval.
    pages["a"], pages["b"], pages["c"] = (_stream_worker(out=n) for n in (150, 20, 1000))
    now = await scrape(urls)
    now.at = before.at + 2.0
    assert summarize(before, now)["out_per_s"] == {"classifier": 35.0}  # (50 + 20) / 2 s


def test_the_pool_queue_and_jobs_are_not_counted_once_per_worker() -> None:
    # Two workers that both run the annotator and jobs PE (say, one started while
    # the other still stops) each rebuild the same pool and jobs from the logs.
    crowd = """
# TYPE crowdstream_pool_workers gauge
crowdstream_pool_workers{pipeline="crisis",state="working"} 3
# TYPE crowdstream_crowd_queue gauge
crowdstream_crowd_queue{pipeline="crisis"} 7
# TYPE crowdstream_jobs gauge
crowdstream_jobs{pipeline="crisis",kind="count",status="running"} 2
"""
    now = Scrape(at=1.0)
    now.add(crowd, "http://a")
    now.add(crowd, "http://b")
    summary = summarize(None, now)
    assert summary["pool"] == {"working": 3.0}
    assert summary["crowd_queue"] == 7.0
    assert summary["jobs"] == {"running": 2.0}
