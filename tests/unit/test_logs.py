"""Log output: JSON lines with the pipeline, PE and ids a record is about."""

from __future__ import annotations

import io
import logging
import logging.config
import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest

from pe.registry import pe_specs
from pipelines.logs import logging_config


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def capture() -> io.StringIO:
    pe_specs()  # a worker's topology registers the PEs whose names records carry
    stream = io.StringIO()
    config = logging_config("json", "debug", "crisis")
    config["handlers"]["main"]["stream"] = stream
    logging.config.dictConfig(config)
    return stream


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_records_carry_the_pipeline_pe_and_ids(capture: io.StringIO) -> None:
    logging.getLogger("pe.annotator.agent").info(
        "label %s", "labeled", extra={"item_id": "dm-1", "task_id": "t-9"}
    )
    logging.getLogger("runtime.follower").warning("caught up")
    logging.getLogger("runtime.context").debug("rejected", extra={"pe": "collector"})
    labeled, follower, rejected = _records(capture)
    assert labeled["msg"] == "label labeled" and labeled["level"] == "info"
    assert labeled["pipeline"] == "crisis" and labeled["pe"] == "annotator"
    assert labeled["item_id"] == "dm-1" and labeled["task_id"] == "t-9"
    assert "pe" not in follower and follower["level"] == "warning"
    assert rejected["pe"] == "collector"  # given by the caller, not guessed from the module
    assert str(labeled["time"]).endswith("+00:00")


def test_exceptions_and_odd_messages_stay_one_json_line(capture: io.StringIO) -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("pe.learner.agent").exception('a "quoted" \u2603 %s', b"\xff")
    (record,) = _records(capture)
    assert "RuntimeError: boom" in str(record["exc"])
    assert record["pe"] == "learner" and "\u2603" in str(record["msg"])


def test_text_format_is_for_people() -> None:
    stream = io.StringIO()
    config = logging_config("text", "info")
    config["handlers"]["main"]["stream"] = stream
    logging.config.dictConfig(config)
    logging.getLogger("pe.learner.agent").info("published")
    logging.getLogger("pe.learner.agent").debug("hidden")
    assert stream.getvalue().rstrip().endswith("INFO pe.learner.agent: published")
    assert "hidden" not in stream.getvalue()


def test_logging_never_imports_the_pes() -> None:
    # A command that logs without a topology (crowdstream broker) must not import
    # every PE module from inside a logging call, whichever thread logs.
    probe = (
        "import logging, sys\n"
        "from pipelines.logs import configure\n"
        "configure('json', 'info')\n"
        "logging.getLogger('pipelines.broker').info('hello')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pe.learner', 'sklearn'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
