"""Our aggregation against crowd-kit's on the same simulated answers.

Real crisis messages (the bundled slice of the shared data) with their known
``aid_related`` tags; 40 workers from the ``live`` population, 20% of them spammers;
three answers per message. The quality loop's online Dawid-Skene model must be at
least as accurate as crowd-kit's MajorityVote and within one accuracy point of its
(batch, 100-iteration) DawidSkene.
"""

from __future__ import annotations

import dataclasses
import random

import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene, MajorityVote

from pe.annotator.population import PRESETS, simulate_answers
from pe.common.quality import WorkerQuality
from pipelines.sample import load_sample

TAGS = ["yes", "no"]
# crowd-kit 1.4 calls pandas options that pandas 3 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _answers(seed: int) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    rows = [r for r in load_sample() if r["meta"]["truth"].get("aid_related") in TAGS]
    truth = {str(r["id"]): r["meta"]["truth"]["aid_related"] for r in rows}
    population = dataclasses.replace(PRESETS["live"], spammer_share=0.2)
    rng = random.Random(seed)
    return truth, simulate_answers(truth, TAGS, population, workers=40, per_item=3, rng=rng)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_online_dawid_skene_matches_crowdkit(seed: int) -> None:
    truth, answers = _answers(seed)
    frame = pd.DataFrame(answers, columns=["task", "worker", "label"])
    majority = MajorityVote().fit_predict(frame)
    batch = DawidSkene(n_iter=100).fit_predict(frame)

    model = WorkerQuality()
    model.register("aid_related", TAGS)
    # Online: as the pipeline settles them; final: the same model, done learning.
    online, final = model.aggregate("aid_related", answers)

    def accuracy(labels: dict[str, str | None] | pd.Series) -> float:
        return float(sum(labels[item] == tag for item, tag in truth.items()) / len(truth))

    assert accuracy(majority) < accuracy(batch)  # the spammers hurt a plain vote
    assert accuracy(online) >= accuracy(majority)
    assert accuracy(final) >= accuracy(majority)
    assert accuracy(final) >= accuracy(batch) - 0.01
