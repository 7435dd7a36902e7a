"""The demo's stream, and its command line refusing what it cannot run."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest

from pipelines.cli import main
from pipelines.client import laps


def test_laps_replay_the_items_under_ids_of_their_own() -> None:
    items = [{"id": "a", "text": "water"}, {"id": "b", "text": "food"}]
    lines = [orjson.loads(line) for line in itertools.islice(laps(items), 5)]
    assert [line["id"] for line in lines] == ["a", "b", "a~1", "b~1", "a~2"]
    assert [line["text"] for line in lines] == ["water", "food"] * 2 + ["water"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--answers", "0"], "--answers must be positive"),
        (["--rate", "-5"], "--rate must be positive"),
        (["--prefill", "-1"], "--prefill must not be negative"),
        (["--holdout", "16000"], "--holdout must be between 1 and 15999"),
    ],
)
def test_the_demo_refuses_bad_arguments_before_it_starts_anything(
    args: list[str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--reports", str(tmp_path), *args])
    assert message in str(exit_info.value)
