"""Two people in headless Chromium label a stream through the real broker.

The worker runs ``crowdstream up --crowd web``; Playwright drives Debian's chromium
(installed by ``make test``). Screenshots go to ``test-output/browser/`` (or
``$CROWDSTREAM_TEST_OUTPUT/browser``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from playwright.sync_api import Browser, Page, Route

from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from pipelines.topology import load_topology
from tests.integration.browser import MOBILE, run
from tests.integration.conftest import (
    Worker,
    read_all,
    start_worker,
    values,
    wait_for,
    write_topology,
)

pytestmark = pytest.mark.integration

PIPELINE = "webtest"
BUDGET = 4  #: tasks per classifier
OPERATOR = "operator-secret-for-tests"
XSS = 'Water needed <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


EXAMPLE = {"text": "The bridge on the road to Leogane is down", "tag": "yes"}


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_topology(
        tmp_path_factory.mktemp("topology"),
        PIPELINE,
        annotator={
            "pool_size": 2,
            "redundancy": 1,
            "mitigation": True,
            "qualification": 2,
            "heartbeat_timeout_s": 30.0,
            # One answer per task, no gold questions, no routing by skill: the test
            # scripts who answers what.
            "quality": {"enabled": False},
        },
        taskgen={"max_tasks_per_minute": 6000, "round_interval_s": 0.2, "label_budget": BUDGET},
        learner={"retrain_every": 4, "min_train": 4},
    )
    # aid_related's workers see a worked example beside the question.
    data = yaml.safe_load(path.read_text())
    data["classifiers"][0]["examples"] = [EXAMPLE]
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def worker(
    broker: EmbeddedBroker, topology: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    os.environ["CROWDSTREAM_OPERATOR_TOKEN"] = OPERATOR
    try:
        running = start_worker(
            broker, topology, tmp_path_factory.mktemp("worker"), "--crowd", "web"
        )
    finally:
        del os.environ["CROWDSTREAM_OPERATOR_TOKEN"]
    yield running
    running.stop()


def gold_answers(topology: Path) -> dict[tuple[str, str], str]:
    """The known tag of each qualification item, by (question, text)."""
    specs = load_topology(str(topology)).classifiers
    known = {}
    for record in load_sample():
        truth = record.get("meta", {}).get("truth", {})
        for spec in specs:
            if truth.get(spec.truth_field) in spec.tags:
                known[(spec.question, record["text"])] = str(truth[spec.truth_field])
    return known


def join(page: Page, base: str, name: str, gold: dict[tuple[str, str], str]) -> None:
    page.goto(base + "/work")
    page.fill("#name", name)
    page.click("#join-button")
    page.wait_for_selector("body[data-view=qualify]")
    for _ in range(2):
        question = page.inner_text("#quiz-question")
        text = page.text_content("#quiz-text") or ""
        progress = page.inner_text("#quiz-progress")
        page.click(f"#quiz-tags button[data-tag='{gold[(question, text)]}']")
        page.wait_for_function(
            "p => document.body.dataset.view !== 'qualify' "
            "|| document.getElementById('quiz-progress').textContent !== p",
            arg=progress,
        )
    page.wait_for_selector("body[data-view=waiting], body[data-view=task]")


def view(page: Page) -> str:
    return str(page.evaluate("document.body.dataset.view"))


def answer(page: Page, key: str | None = None) -> str:
    """Answer the page's task (a key, or a click on skip); returns the task's text."""
    text = page.text_content("#task-text") or ""
    assignment = page.evaluate("document.body.dataset.assignment")
    if key is None:
        page.click("#skip")
    else:
        page.keyboard.press(key)
    page.wait_for_function("a => document.body.dataset.assignment !== a", arg=assignment)
    return text


def label_count(broker: EmbeddedBroker) -> list[dict[str, Any]]:
    records = run(read_all(broker.bootstrap, f"{PIPELINE}.crowd.labels"))
    return values(records)


def test_two_browser_workers_label_a_stream(
    broker: EmbeddedBroker, worker: Worker, browser: Browser, topology: Path, output: Path
) -> None:
    gold = gold_answers(topology)
    requests: list[str] = []
    fast_context = browser.new_context()
    slow_context = browser.new_context(viewport=MOBILE, is_mobile=True, has_touch=True)
    fast, slow = fast_context.new_page(), slow_context.new_page()
    for page in (fast, slow):
        page.on("request", lambda request: requests.append(request.url))

    # Both join and qualify; they wait, paid. The slow worker's join is refused for
    # the rate first (as when many join from one address): the page waits as the
    # server asks and joins without another click.
    refused: list[str] = []

    def refuse_first(route: Route) -> None:
        if refused:
            route.continue_()
            return
        refused.append(route.request.method)
        route.fulfill(status=429, headers={"Retry-After": "1"}, json={"error": "too many requests"})

    join(fast, worker.http, "Fast Fran", gold)
    slow.route("**/api/v1/workers", refuse_first)
    join(slow, worker.http, "Slow Sam", gold)
    slow.unroute("**/api/v1/workers")
    assert refused == ["POST"] and slow.is_hidden("#error")
    assert "you are paid while you wait" in fast.inner_text("#waiting")
    fast.screenshot(path=str(output / "waiting.png"), full_page=True)
    assert worker.metric("crowdstream_pool_workers", state="available") == 2

    # A message with markup comes first, then a stream of real messages.
    xss = orjson.dumps({"id": "xss-1", "text": XSS})
    run(push_lines([broker.bootstrap], PIPELINE, [xss]))
    wait_for(lambda: "task" in (view(fast), view(slow)), 60, "a first task")
    run(push_lines([broker.bootstrap], PIPELINE, [orjson.dumps(r) for r in load_sample(400)]))

    # The slow worker holds their task; the fast one answers everything, by keyboard,
    # until straggler mitigation gives them a duplicate of the slow one's task and
    # their answer terminates it.
    saw_markup = saw_example = False
    wait_for(lambda: view(slow) == "task", 60, "the slow worker's task")
    slow.screenshot(path=str(output / "task-mobile.png"), full_page=True)
    slow_text = slow.text_content("#task-text")
    notice = ""
    deadline = time.monotonic() + 120
    while not notice and time.monotonic() < deadline:
        if view(fast) == "task":
            text = fast.text_content("#task-text") or ""
            if fast.inner_text("#task-classifier") == "aid_related":
                assert fast.is_visible("#task-examples summary")
                assert EXAMPLE["text"] in (fast.text_content("#task-example-list") or "")
                saw_example = True
            else:
                assert fast.is_hidden("#task-examples")
            if "<script>" in text and not saw_markup:
                saw_markup = True
                fast.screenshot(path=str(output / "task.png"), full_page=True)
            if text == slow_text:
                fast.screenshot(path=str(output / "duplicate.png"), full_page=True)
            answer(fast, "1")
            if slow.is_visible("#notice"):  # shown for a few seconds
                notice = slow.inner_text("#notice")
                slow.screenshot(path=str(output / "terminated.png"), full_page=True)
        time.sleep(0.05)
    assert "finished this task first" in notice, "the slow worker's task was never terminated"
    assert saw_example, "no task of aid_related showed its example"
    assert worker.metric("crowdstream_pool_events_total", event="termination") >= 1
    assert worker.metric("crowdstream_pool_events_total", event="duplicate") >= 1

    # Then both label until every task is done (one skip on the way). The slow
    # worker's first answer is lost on its way (a dropped connection): the page sends
    # it again.
    sent: list[str] = []

    def drop_first(route: Route) -> None:
        sent.append(orjson.loads(route.request.post_data or "{}")["assignment_id"])
        if len(sent) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    slow.route("**/api/v1/workers/me/answers", drop_first)
    skipped = False
    deadline = time.monotonic() + 120
    while len(label_count(broker)) < 2 * BUDGET and time.monotonic() < deadline:
        for page in (fast, slow):
            if view(page) == "task":
                saw_markup |= "<script>" in answer(page, "2" if skipped else None)
                skipped = True
    labels = label_count(broker)
    assert len(sent) >= 2 and sent[1] == sent[0], sent  # the lost answer, sent again
    slow.unroute("**/api/v1/workers/me/answers")
    assert len(labels) == 2 * BUDGET
    assert len({(x["item_id"], x["classifier"]) for x in labels}) == 2 * BUDGET
    workers = {a["worker_id"] for x in labels for a in x["answers"]}
    assert len(workers) == 2  # both people's answers reached crowd.labels
    assert any(a["tag"] == "N/A" for x in labels for a in x["answers"])

    # Text from the stream is shown as text, never run.
    assert saw_markup, "the message with markup never reached a worker"
    assert fast.evaluate("window.__pwned") is None and slow.evaluate("window.__pwned") is None

    # The labels reach the learner.
    wait_for(
        lambda: worker.metric("crowdstream_items_in_total", pe="learner") >= 2 * BUDGET,
        60,
        "the learner to read the labels",
    )

    # Earnings include the terminated work; the mobile layout does not scroll sideways.
    assert "finished first by others" in slow.inner_text("#earnings-detail")
    assert slow.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    # In the console's crowd tab the operator sees both workers, makes an invite code
    # and releases the slow worker: their page thanks them and ends.
    console = browser.new_page()
    console.on("dialog", lambda dialog: dialog.accept())
    console.goto(worker.http + "/console")
    console.fill("#token", OPERATOR)
    console.click("#token-form button[type=submit]")
    console.wait_for_selector("#notice:has-text('signed in')")
    console.click("nav button[data-tab=crowd]")
    console.wait_for_selector("#worker-rows tr[data-worker]")
    rows = console.locator("#worker-rows tr[data-worker]")
    names = [row.split("(")[0].strip() for row in rows.locator("td:first-child").all_inner_texts()]
    assert sorted(names) == ["Fast Fran", "Slow Sam"]
    assert console.inner_text("#pool-summary").startswith("Pool of 2")
    console.fill("#invite-name", "Riley")
    console.click("#invite-form button[type=submit]")
    console.wait_for_selector("#invite-rows tr[data-invite]")
    assert "Riley" in console.inner_text("#invite-rows")
    slow_row = rows.filter(has_text="Slow Sam")
    slow_row.locator("td.actions button").click()
    console.wait_for_selector("#notice:has-text('Slow Sam released')")
    # The table refreshes itself every 3 s.
    wait_for(lambda: slow_row.locator("td.state").inner_text() == "ended", 15, "the release")
    assert slow_row.locator("td.why").inner_text() == "released, operator"
    console.screenshot(path=str(output / "console-crowd.png"), full_page=True)
    console.close()
    slow.wait_for_selector("body[data-view=ended]")
    assert "Thank you" in slow.inner_text("#ended-title")
    assert slow.is_hidden("#rejoin")  # released people are not invited back
    slow.screenshot(path=str(output / "released.png"), full_page=True)

    # Every asset came from the worker itself: no CDN, no other host.
    assert requests and all(url.startswith(worker.http) for url in requests), {
        url for url in requests if not url.startswith(worker.http)
    }
    fast_context.close()
    slow_context.close()
