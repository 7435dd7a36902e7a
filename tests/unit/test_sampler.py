"""The task generator's sampler and rate cap."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from pe.taskgen.budget import AnswerBudget
from pe.taskgen.sampler import Candidate, ClassifierSampler, LoadGovernor, TokenBucket


def _candidate(i: int, sig: int | None = None) -> Candidate:
    # Signatures far apart (one distinct byte each) unless given.
    return Candidate(
        f"i{i}", f"text {i}", [i], [1.0], sig if sig is not None else i << 8 * (i % 8), {}
    )


def _sampler(**kwargs: object) -> ClassifierSampler:
    params: dict[str, object] = {
        "buffer_size": 100,
        "active_fraction": 0.5,
        "uncertainty_sample": 100,
        "label_budget": 1000,
        "near_dup_bits": 0,
        "near_dup_memory": 1000,
        "rng": random.Random(1),
    }
    params.update(kwargs)
    return ClassifierSampler(**params)  # type: ignore[arg-type]


def test_without_a_model_every_pick_is_random_and_never_repeated() -> None:
    sampler = _sampler()
    for i in range(10):
        sampler.offer(_candidate(i))
    first = sampler.select(4, scorer=None)
    assert [kind for _, kind in first] == ["passive"] * 4
    second = sampler.select(10, scorer=None)
    ids = [c.item_id for c, _ in first + second]
    assert len(ids) == len(set(ids)) == 10
    assert sampler.select(5, scorer=None) == []


def test_active_picks_are_the_least_confident() -> None:
    sampler = _sampler(active_fraction=0.5)
    for i in range(20):
        sampler.offer(_candidate(i))

    def confidence(candidates: Sequence[Candidate]) -> list[float]:
        # Item 7 and item 3 are the most uncertain.
        return [0.5 if c.item_id in {"i7", "i3"} else 0.99 for c in candidates]

    picked = sampler.select(4, confidence)
    active = {c.item_id for c, kind in picked if kind == "active"}
    assert active == {"i7", "i3"}
    assert sum(kind == "passive" for _, kind in picked) == 2


def test_budget_caps_what_is_ever_issued() -> None:
    sampler = _sampler(label_budget=3)
    for i in range(10):
        sampler.offer(_candidate(i))
    assert len(sampler.select(5, None)) == 3
    assert sampler.budget_left == 0
    assert sampler.select(5, None) == []


def test_near_duplicates_of_issued_items_are_skipped() -> None:
    sampler = _sampler(near_dup_bits=2)
    sampler.offer(_candidate(1, sig=0b1010_0000))
    assert len(sampler.select(1, None)) == 1
    sampler.offer(_candidate(2, sig=0b1010_0011))  # 2 bits away: a near-duplicate
    sampler.offer(_candidate(3, sig=0b0101_1111_0000))  # far away
    picked = sampler.select(5, None)
    assert [c.item_id for c, _ in picked] == ["i3"]
    assert sampler.near_duplicates == 1


def test_near_duplicates_within_one_round_are_picked_once() -> None:
    sampler = _sampler(near_dup_bits=1)
    sampler.offer(_candidate(1, sig=0xFF))
    sampler.offer(_candidate(2, sig=0xFF))
    assert len(sampler.select(5, None)) == 1


def test_a_near_duplicate_is_counted_once_and_leaves_the_buffer() -> None:
    sampler = _sampler(near_dup_bits=2, active_fraction=1.0)
    sampler.offer(_candidate(1, sig=0b1010_0000))
    assert len(sampler.select(1, None)) == 1
    sampler.offer(_candidate(2, sig=0b1010_0011))  # a near-duplicate of i1
    # The active pass ranks it first and the passive pass meets it again.
    assert sampler.select(2, lambda cands: [0.5] * len(cands)) == []
    assert sampler.near_duplicates == 1
    assert [c.item_id for c in sampler.buffer] == []


def test_candidates_not_examined_stay_in_the_buffer() -> None:
    sampler = _sampler()
    for i in range(10):
        sampler.offer(_candidate(i))
    picked = {c.item_id for c, _ in sampler.select(3, None)}
    assert {c.item_id for c in sampler.buffer} == {f"i{i}" for i in range(10)} - picked


def test_items_issued_elsewhere_are_not_offered_again() -> None:
    sampler = _sampler()
    sampler.mark_issued("i1", 123)
    sampler.mark_issued("i1", 123)  # idempotent (a restarted follower replays)
    assert sampler.budget_left == 999
    sampler.offer(_candidate(1))
    assert sampler.select(5, None) == []


def test_buffer_keeps_only_the_latest_items() -> None:
    sampler = _sampler(buffer_size=3)
    for i in range(10):
        sampler.offer(_candidate(i))
    assert sorted(c.item_id for c, _ in sampler.select(10, None)) == ["i7", "i8", "i9"]


def test_token_bucket_caps_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, capacity=4.0, now=0.0)
    assert bucket.available(0.0) == 4
    bucket.take(4)
    assert bucket.available(0.5) == 1
    assert bucket.available(100.0) == 4  # never more than the burst


def _uncertain_first(candidates: Sequence[Candidate]) -> list[float]:
    # Lower item numbers are less confident.
    return [0.5 + int(c.item_id[1:]) / 100 for c in candidates]


def test_hybrid_picks_k_by_uncertainty_and_the_rest_at_random() -> None:
    sampler = _sampler(active_fraction=0.25, strategy="hybrid")
    for i in range(40):
        sampler.offer(_candidate(i))
    picked = sampler.select(8, _uncertain_first)  # a round for a pool of 8
    active = [c.item_id for c, kind in picked if kind == "active"]
    assert active == ["i0", "i1"]  # k = 0.25 * 8, the least confident
    assert sum(kind == "passive" for _, kind in picked) == 6


def test_active_only_picks_only_k_and_passive_only_none_by_uncertainty() -> None:
    active = _sampler(active_fraction=0.25, strategy="active")
    passive = _sampler(active_fraction=0.25, strategy="passive")
    for i in range(40):
        active.offer(_candidate(i))
        passive.offer(_candidate(i))
    assert [(c.item_id, k) for c, k in active.select(8, _uncertain_first)] == [
        ("i0", "active"),
        ("i1", "active"),
    ]
    assert [k for _, k in passive.select(8, _uncertain_first)] == ["passive"] * 8
    # before the first model, active learning takes a random seed set
    seed = _sampler(strategy="active")
    for i in range(10):
        seed.offer(_candidate(i))
    assert [k for _, k in seed.select(4, None)] == ["passive"] * 4


def test_under_backlog_fewer_items_go_to_the_crowd() -> None:
    governor = LoadGovernor(low=50, high=250, floor=0.6)
    assert governor.confidence_cap(10) == 1.0 and governor.passive_share(50) == 1.0
    assert governor.confidence_cap(150) == pytest.approx(0.8)
    assert governor.passive_share(150) == pytest.approx(0.5)
    assert governor.confidence_cap(900) == pytest.approx(0.6)
    assert governor.passive_share(900) == 0.0

    def scorer(candidates: Sequence[Candidate]) -> list[float]:
        return [0.5 + (int(c.item_id[1:]) % 50) / 100 for c in candidates]  # 0.5 .. 0.99

    def picks(backlog: int) -> Sequence[tuple[Candidate, str]]:
        sampler = _sampler(uncertainty_sample=100)
        for i in range(100):
            sampler.offer(_candidate(i))
        return sampler.select(
            20,
            scorer,
            max_confidence=governor.confidence_cap(backlog),
            passive_share=governor.passive_share(backlog),
        )

    calm, busy, swamped = picks(0), picks(150), picks(300)
    assert len(calm) == 20 and len(swamped) < len(busy) < len(calm)
    assert sum(kind == "passive" for _, kind in busy) == 5  # half of the random picks
    assert all(kind == "active" for _, kind in swamped)  # random picks thinned to none
    assert all(scorer([c])[0] < 0.6 for c, _ in swamped)  # only what the model is unsure of


def _fresh(i: int) -> Candidate:
    # Distinct, far-apart signatures for any number of items (near_dup_bits is 0).
    return Candidate(f"i{i}", f"text {i}", [i], [1.0], i, {})


def _unsure(candidates: Sequence[Candidate]) -> list[float]:
    return [0.5] * len(candidates)


@pytest.mark.parametrize(("round_size", "fraction"), [(1, 0.5), (2, 0.3), (3, 0.25), (1, 0.9)])
def test_small_rounds_keep_the_active_share(round_size: int, fraction: float) -> None:
    sampler = _sampler(active_fraction=fraction, label_budget=100_000)
    picks: list[str] = []
    for r in range(1000):
        for j in range(round_size + 1):
            sampler.offer(_fresh(r * 10 + j))
        picks += [kind for _, kind in sampler.select(round_size, _unsure)]
    assert len(picks) == 1000 * round_size
    assert picks.count("active") / len(picks) == pytest.approx(fraction, abs=0.005)


def test_small_rounds_keep_the_random_share_under_load() -> None:
    sampler = _sampler(label_budget=100_000)
    picked = 0
    for r in range(1000):
        sampler.offer(_fresh(r))
        picked += len(sampler.select(1, None, passive_share=0.3))
    assert picked == pytest.approx(300, abs=1)


def test_a_shed_task_returns_its_budget_and_unblocks_its_near_duplicates() -> None:
    sampler = _sampler(label_budget=2, near_dup_bits=2)
    sampler.offer(_candidate(1, sig=0b1010_0000))
    sampler.offer(_candidate(2, sig=0b0101_0000_0000))
    picks = sampler.select(5, None)
    for candidate, _ in picks:
        sampler.mark_issued(candidate.item_id, candidate.sig, f"t-{candidate.item_id}")
    assert sampler.budget_left == 0
    sampler.offer(_candidate(3, sig=0b1010_0011))  # a near-duplicate of i1
    assert sampler.select(5, None) == []

    sampler.mark_shed("i1", "t-i1")
    sampler.mark_shed("i1", "t-i1")  # idempotent (a restarted follower replays)
    assert sampler.budget_left == 1
    sampler.offer(_candidate(4, sig=0b1010_0001))  # another near-duplicate of i1
    assert [c.item_id for c, _ in sampler.select(5, None)] == ["i4"]
    sampler.mark_issued("i4", 0b1010_0001, "t-i4")
    sampler.mark_shed("i4", "t-i4")
    sampler.offer(_candidate(1, sig=0b1010_0000))  # the shed item itself, again
    assert [c.item_id for c, _ in sampler.select(5, None)] == ["i1"]


def test_sheds_are_counted_whichever_log_is_read_first() -> None:
    # After a restart the tasks and their outcomes are read from two logs.
    sampler = _sampler(label_budget=10)
    sampler.mark_shed("i1", "t1")  # read before its task
    sampler.mark_issued("i1", 123, "t1")
    assert sampler.budget_left == 10
    # i2 was shed, then picked again: the old shed does not free the new task.
    sampler.mark_issued("i2", 456, "t2")
    sampler.mark_shed("i2", "t2")
    sampler.mark_issued("i2", 456, "t3")
    sampler.mark_shed("i2", "t2")
    assert sampler.budget_left == 9
    sampler.offer(_candidate(2))
    assert sampler.select(5, None) == []


def test_an_item_with_another_open_task_stays_issued_when_one_is_shed() -> None:
    sampler = _sampler(label_budget=10)
    sampler.mark_issued("i1", 123, "t1")
    sampler.mark_issued("i1", 123, "t2")  # two instances picked it at once
    sampler.mark_shed("i1", "t1")
    assert sampler.budget_left == 9
    sampler.mark_shed("i1", "t2")
    assert sampler.budget_left == 10


def test_the_answer_budget_counts_open_tasks_at_their_most_answers() -> None:
    budget = AnswerBudget(10, most_answers=3)
    sampler = _sampler(answers=budget)
    for i in range(10):
        sampler.offer(_candidate(i))
    picks = sampler.select(10, None)
    assert len(picks) == 3  # 3 open tasks may take 9 of the 10 answers
    for candidate, _ in picks:
        sampler.mark_issued(candidate.item_id, candidate.sig, f"t-{candidate.item_id}")
    assert sampler.select(10, None) == []
    first = f"t-{picks[0][0].item_id}"
    budget.closed(first, 1)  # the loop was sure after one answer
    budget.closed(first, 1)  # counted once (a replayed log)
    assert budget.spent == 1 and sampler.budget_left == 1  # (10 - 1 - 2 * 3) // 3
    budget.closed("gold-1", 2)  # a gold question's answers count too
    assert sampler.budget_left == 0
    sampler.mark_shed(picks[1][0].item_id, f"t-{picks[1][0].item_id}")  # no answers
    assert budget.spent == 3 and sampler.budget_left == 1  # (10 - 3 - 3) // 3


def test_the_answer_budget_is_rebuilt_whichever_log_is_read_first() -> None:
    budget = AnswerBudget(12, most_answers=3)
    sampler = _sampler(answers=budget)
    budget.closed("t1", 2)  # its outcome read before its task
    sampler.mark_issued("i1", 1, "t1")
    sampler.mark_issued("i2", 2, "t2")
    assert budget.spent == 2 and sampler.budget_left == 2  # (12 - 2 - 3) // 3
    assert budget.snapshot() == {"spent": 2, "open": ["t2"]}


def test_without_an_answer_budget_the_label_budget_alone_limits() -> None:
    sampler = _sampler(label_budget=4)
    for i in range(10):
        sampler.offer(_candidate(i))
    assert len(sampler.select(10, None)) == 4


def test_a_long_overload_of_sheds_is_remembered_only_as_long_as_needed() -> None:
    # Days of a crowd queue too full: items picked and shed, again and again.
    budget = AnswerBudget(None, most_answers=3, keep=10)
    sampler = _sampler(answers=budget, keep=10, buffer_size=1000)
    for i in range(500):
        sampler.offer(_candidate(i, sig=i))
        [(pick, _)] = sampler.select(1, None)
        task_id = f"t-{pick.item_id}-{sampler.attempt(pick.item_id)}"
        sampler.mark_issued(pick.item_id, pick.sig, task_id)
        read_back_late = i % 2 == 0
        if not read_back_late:
            sampler.mark_issued(pick.item_id, pick.sig, task_id)
        budget.closed(task_id, 0)
        sampler.mark_shed(pick.item_id, task_id)
        if read_back_late:
            sampler.mark_issued(pick.item_id, pick.sig, task_id)
    state = sampler.snapshot()
    assert len(state["shed"]) == 10  # type: ignore[arg-type]
    assert state["issued"] == {} and state["answers"] == {"spent": 0, "open": []}
    assert budget.remembered == 10  # outcomes counted, remembered no longer
    # A recently shed item picked again gets a task of its own; one shed long ago
    # is numbered as new, as the annotator and the budget have forgotten its task too.
    assert sampler.attempt("i499") == 1 and sampler.attempt("i0") == 0


def test_a_shed_is_remembered_until_its_task_is_read_however_many_come_first() -> None:
    # After a restart crowd.labels may be read far ahead of crowd.tasks.
    budget = AnswerBudget(100, most_answers=1, keep=5)
    sampler = _sampler(answers=budget, keep=5)
    for i in range(50):
        budget.closed(f"t{i}", 0)
        sampler.mark_shed(f"i{i}", f"t{i}")
    for i in range(50):
        sampler.mark_issued(f"i{i}", i, f"t{i}")
    assert sampler.snapshot()["issued"] == {} and sampler.budget_left == 100
    assert len(sampler.snapshot()["shed"]) == 5  # type: ignore[arg-type]


def test_gold_outcomes_are_counted_once_and_not_kept() -> None:
    budget = AnswerBudget(100, most_answers=1, keep=5)
    for i in range(50):
        budget.closed(f"gold-{i}", 2, gold=True)
        budget.closed(f"gold-{i}", 2, gold=True)  # read again soon after
    assert budget.spent == 100 and budget.tasks_left == 0
    assert budget.remembered == 5
