"""The operator console in headless Chromium, on a running pipeline with the
simulated crowd: an operator adds a classifier and sees its first model appear
with its AUC, watches it learn in plots, follows the classified stream filtered by
provenance, corrects a label, promotes an item to gold, submits a counting job and
watches its estimate, cancels a job, exports the labels, and sees a webhook's failed
deliveries; at phone width too.
Screenshots go to test-output/browser (docs/console.md shows them)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from playwright.sync_api import Browser, Page

from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from tests.integration.browser import MOBILE, run
from tests.integration.conftest import (
    WEBHOOK_SECRET,
    read_all,
    start_worker,
    values,
    wait_for,
    write_topology,
)

PIPELINE = "consoletest"


async def write(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


def test_an_operator_adds_a_classifier_corrects_a_label_and_exports_in_the_console(
    broker: EmbeddedBroker,
    browser: Browser,
    output: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_topology(
        tmp_path,
        PIPELINE,
        annotator={"speed": 60.0, "pool_size": 6},
        taskgen={"max_tasks_per_minute": 3000, "round_interval_s": 0.1},
        learner={"retrain_every": 10, "min_train": 10, "teacher": "none"},
        # A webhook nobody answers: its failed deliveries show in the console.
        notifier={"webhooks": [{"url": "http://127.0.0.1:9/hook"}], "attempts": 1},
    )
    # The pipeline starts with aid_related only; the operator adds `request`, which
    # the simulated crowd answers from the sample's truth.
    topology = yaml.safe_load(path.read_text())
    topology["classifiers"] = [c for c in topology["classifiers"] if c["name"] == "aid_related"]
    path.write_text(yaml.safe_dump(topology))
    monkeypatch.setenv("CROWDSTREAM_WEBHOOK_SECRET", WEBHOOK_SECRET.decode())
    worker = start_worker(broker, path, tmp_path)
    try:
        sample = load_sample(1500)
        lines = [orjson.dumps(row) for row in sample]
        run(push_lines([broker.bootstrap], PIPELINE, lines[:300]))
        page: Page = browser.new_page()
        page.goto(worker.http + "/console")
        page.wait_for_selector('tr[data-classifier="aid_related"]')
        page.fill("#add-name", "request")
        page.fill("#add-question", "Is the author asking for something?")
        page.fill("#add-tags", "yes, no")
        example = {"text": "please send water to Carrefour", "tag": "yes"}
        page.fill("#add-examples", orjson.dumps(example).decode())
        page.click("#add-form button[type=submit]")
        page.wait_for_selector("#notice:has-text('classifier added')")
        row = 'tr[data-classifier="request"]'
        page.wait_for_selector(row)
        # The stream goes on: the new classifier's tasks come from what arrives now.
        run(push_lines([broker.bootstrap], PIPELINE, lines[300:]))
        # The table refreshes itself: the first model's AUC shows up there.
        wait_for(
            lambda: page.inner_text(f"{row} td.auc") not in ("", "-"),
            180,
            "the new classifier's first model",
        )
        # A first model's AUC, from a few held-out labels, comes with a wide interval.
        auc = page.inner_text(f"{row} td.auc")
        assert re.fullmatch(r"[01]\.\d{3} \([01]\.\d\d-[01]\.\d\d\)", auc), auc
        assert page.inner_text(f"{row} td:nth-child(4)").startswith("v")
        page.screenshot(path=str(output / "console-classifiers.png"), full_page=True)

        # Watch it learn: the crowd's work and each model's held-out metrics, plotted.
        page.click("nav button[data-tab=learning]")
        page.select_option("#learning-classifier", "request")
        page.click("#learning-form button[type=submit]")
        page.wait_for_selector(
            "#learning-plots[data-classifier=request] figure[data-plot=auc] polyline"
        )
        summary = page.inner_text("#learning-summary")
        assert re.match(r"\d+ labels bought, \d+ answers, cost \d+\.\d\d; model v\d+", summary)
        for plot, series in (("labels", "labels"), ("latency", "p95"), ("tags", "yes recall")):
            points = page.get_attribute(
                f"figure[data-plot={plot}] polyline[data-series='{series}']", "data-points"
            )
            assert int(points or 0) >= 1, (plot, series)
        page.screenshot(path=str(output / "console-learning.png"), full_page=True)

        # The live classified stream, filtered: the model's aid_related tags only.
        page.click("nav button[data-tab=stream]")
        page.select_option("#stream-classifier", "aid_related")
        page.select_option("#stream-source", "model")
        page.click("#stream-form button[type=submit]")
        page.wait_for_selector("#stream-status:has-text('following')")
        fresh = [orjson.dumps({**row, "id": f"live-{row['id']}"}) for row in sample[:50]]
        run(push_lines([broker.bootstrap], PIPELINE, fresh))
        page.wait_for_selector("#stream-items li[data-item^='live-']")
        shown = page.locator("#stream-items li").all_inner_texts()
        assert shown and all(re.search(r"aid_related: \w+ [01]\.\d\d, model v\d", t) for t in shown)
        page.screenshot(path=str(output / "console-stream.png"))  # the top: the list is long
        page.click("#stream-stop")

        # A message with a long link, its label corrected by the operator: the labels
        # tab wraps it rather than widen the page (checked at phone width below).
        labels = values(run(read_all(broker.bootstrap, f"{PIPELINE}.crowd.labels")))
        model = next(x for x in labels if x["classifier"] == "aid_related" and x["answers"])
        link = {
            **model,
            "item_id": "link",
            "task_id": "link",
            "kind": "passive",
            "text": "see https://example.org/" + "x" * 150,
            "corrected_by": "operator",
            "ts": time.time(),
        }
        run(write(broker.bootstrap, f"{PIPELINE}.crowd.labels", orjson.dumps(link)))
        wait_for(
            lambda: (
                b'"link"' in worker.get("/api/v1/labels?classifier=aid_related&corrected=true")[1]
            ),
            60,
            "the labels API to list the label with a long link",
        )

        # Review its labels and correct one.
        page.click("nav button[data-tab=labels]")
        page.select_option("#labels-classifier", "request")
        page.click("#labels-form button[type=submit]")
        page.wait_for_selector("#label-list li[data-classifier=request] .fix button")
        first = page.locator("#label-list li[data-item]").first
        # Each answer with the quality loop's estimate of its worker.
        assert re.search(r"\S+ (yes|no|N/A) \(est\. accuracy [01]\.\d\d\)", first.inner_text())
        item_id = first.get_attribute("data-item")
        page.screenshot(path=str(output / "console-labels.png"))
        first.locator(".fix button").first.click()
        page.wait_for_selector("#notice:has-text('label corrected')")
        status, raw = worker.get("/api/v1/labels?classifier=request&corrected=true")
        [corrected] = orjson.loads(raw)["labels"]
        assert corrected["item_id"] == item_id and corrected["corrected_by"] == "operator"

        # Promote a labeled item to gold: workers are measured on it from now on.
        promote = page.locator("button", has_text="Make gold")
        promoted = page.locator("#label-list li[data-item]", has=promote).first
        gold_id = promoted.get_attribute("data-item")
        promoted.locator("button", has_text="Make gold").click()
        page.wait_for_selector("#notice:has-text('gold question added')")
        status, raw = worker.get("/api/v1/classifiers/request")
        spec = orjson.loads(raw)["spec"]
        assert gold_id in [q["id"] for q in spec["gold"]] and spec["examples"] == [example]

        # Export the labels as CSV: the correction is among them.
        page.click("nav button[data-tab=export]")
        page.select_option("#export-what", "labels")
        page.select_option("#export-format", "csv")
        with page.expect_download() as download:
            page.click("#export-form button[type=submit]")
        text = Path(download.value.path()).read_text()
        assert text.startswith("item_id,classifier,tag,")
        assert f"{item_id},request," in text and ",operator," in text
        page.screenshot(path=str(output / "console-export.png"), full_page=True)

        # A counting job submitted in the console: its estimate appears with its
        # interval; a second job is cancelled.
        page.click("nav button[data-tab=jobs]")
        items = [{"id": r["id"], "text": r["text"], "meta": r["meta"]} for r in sample[:200]]
        counting = {
            "kind": "counting",
            "job_id": "share-of-aid",
            "classifier": "aid_related",
            "tag": "yes",
            "ci_width": 0.5,
            "budget": 30,
            "items": items,
        }
        page.fill("#job-spec", orjson.dumps(counting).decode())
        page.click("#job-form button[type=submit]")
        page.wait_for_selector("#notice:has-text('job share-of-aid queued')")
        estimate = 'tr[data-job="share-of-aid"] td.estimate'
        # From the prior (0-1) the interval narrows as the crowd's answers come in.
        wait_for(
            lambda: (
                "(" in page.inner_text(estimate) and "0.000-1.000" not in page.inner_text(estimate)
            ),
            120,
            "the job's estimate to narrow",
        )
        page.screenshot(path=str(output / "console-jobs.png"), full_page=True)
        labeling: dict[str, Any] = {"kind": "labeling", "job_id": "to-cancel"}
        labeling |= {"classifier": "aid_related", "budget": 100, "items": items}
        page.fill("#job-spec", orjson.dumps(labeling).decode())
        page.click("#job-form button[type=submit]")
        page.click('tr[data-job="to-cancel"] td.actions button')
        cancelled = 'tr[data-job="to-cancel"] td.status'
        wait_for(lambda: page.inner_text(cancelled).startswith("cancelled"), 60, "the cancel")

        # The webhook's failed deliveries are there to see.
        page.click("nav button[data-tab=webhooks]")
        page.wait_for_selector("#delivery-rows tr.outcome-failed")
        assert "classifier.added" in page.inner_text("#delivery-rows")
        page.screenshot(path=str(output / "console-webhooks.png"))  # the top: the list is long
        page.close()

        # At phone width the page fits, and works the same.
        phone = browser.new_page(viewport=MOBILE, is_mobile=True, has_touch=True)
        phone.goto(worker.http + "/console")
        phone.wait_for_selector(row)
        for name in ("classifiers", "learning", "labels", "stream", "crowd", "jobs", "export"):
            phone.click(f"nav button[data-tab={name}]")
            if name == "labels":  # the corrected ones: the long link
                phone.select_option("#labels-classifier", "aid_related")
                phone.check("#labels-corrected")
                phone.click("#labels-form button[type=submit]")
                phone.wait_for_selector("#label-list li[data-item=link]")
            phone.wait_for_timeout(300)  # the tab's content loads
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= MOBILE["width"], f"the {name} tab is {width}px wide on a phone"
        phone.click("nav button[data-tab=classifiers]")
        phone.screenshot(path=str(output / "console-mobile.png"), full_page=True)
        phone.close()
    finally:
        worker.stop()
