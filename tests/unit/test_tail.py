"""What ``crowdstream tail`` shows of classified records, and how."""

from __future__ import annotations

from typing import Any

import pytest

from channels.records import ClassifiedItem
from pe.classifier.recent import Query
from pipelines.cli import main
from pipelines.client import format_item, tail_shows


def record(source: str | None, tag: str | None = "yes", revision: int = 0) -> dict[str, Any]:
    prediction: dict[str, Any] = {
        "tag": tag,
        "confidence": 0.9,
        "model_version": 2,
        "source": source,
    }
    if source == "propagated":
        prediction["from_item"] = "x1"
    return {
        "id": "i1",
        "text": "we need water",
        "ts_in": 1.0,
        "ts_out": 2.0,
        "labels": {"aid_related": prediction},
        "revision": revision,
    }


def test_tail_filters_on_the_classifiers_tag_and_its_source() -> None:
    crowd = Query("aid_related", source="crowd")
    assert tail_shows(record("crowd"), crowd)
    assert not tail_shows(record("model"), crowd)
    assert not tail_shows(record("propagated"), Query("aid_related", "no", source="propagated"))
    assert tail_shows(record("propagated"), Query("aid_related", "yes", source="propagated"))
    assert not tail_shows(record(None, tag=None), Query("aid_related"))  # no tag yet
    assert tail_shows(record(None, tag=None), Query())


def test_tail_says_where_a_tag_came_from_and_marks_revisions() -> None:
    def line(**fields: Any) -> str:
        return format_item(ClassifiedItem.model_validate(record(**fields)))

    assert line(source="model") == "i1  aid_related=yes(0.90,v2)  we need water"
    assert line(source="crowd", revision=5) == (
        "i1 (revised)  aid_related=yes(0.90,v2,crowd)  we need water"
    )
    assert "aid_related=yes(0.90,v2,from x1)" in line(source="propagated")
    assert "aid_related=-" in line(source=None, tag=None)


@pytest.fixture(autouse=True)
def _no_log_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    # The command would configure the process's logging, which the test runner owns.
    monkeypatch.setattr("pipelines.cli.configure_logs", lambda *args: None)


@pytest.mark.parametrize("flag", ["--tag", "--source"])
def test_tail_refuses_a_tag_or_source_without_a_classifier(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    value = "crowd" if flag == "--source" else "yes"
    assert main(["tail", flag, value]) == 2
    assert f"{flag} needs --classifier" in capsys.readouterr().err


def test_tail_refuses_an_unknown_source() -> None:
    with pytest.raises(SystemExit) as refused:
        main(["tail", "--classifier", "aid_related", "--source", "people"])
    assert refused.value.code == 2
