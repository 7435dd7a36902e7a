"""The annotator's memory of which tasks have an outcome stays bounded and forgets
only what no record read later can ask about."""

from __future__ import annotations

from pe.common.outcomes import Outcomes


def test_an_outcome_read_before_its_task_keeps_the_task_from_being_queued() -> None:
    done = Outcomes(keep=10)
    assert "t1" not in done
    done.read("t1")
    assert "t1" in done  # its task, read next, is not queued
    done.task_read("t1")
    assert "t1" in done


def test_a_task_read_before_its_outcome_has_none_until_then() -> None:
    done = Outcomes(keep=10)
    done.task_read("t1")
    assert "t1" not in done  # waiting: it is queued
    done.sent("t1")
    assert "t1" in done  # answered here, before the outcome is read back
    done.read("t1")
    assert "t1" in done


def test_settled_ids_beyond_keep_are_forgotten_oldest_first() -> None:
    done = Outcomes(keep=100)
    for i in range(10_000):
        done.task_read(f"t{i}")
        done.sent(f"t{i}")
        done.read(f"t{i}")
    assert len(done) == 100
    assert "t0" not in done and "t9899" not in done
    assert all(f"t{i}" in done for i in range(9_900, 10_000))


def test_an_id_a_record_may_still_ask_about_is_never_forgotten() -> None:
    done = Outcomes(keep=10)
    done.task_read("queued")  # waiting for an answer
    done.sent("unread")  # answered here, not read back yet: the quality loop must
    done.task_read("unread")  # not learn from it twice when it is
    done.read("early")  # its task not read yet: it must not be queued when it is
    for i in range(1_000):
        done.task_read(f"t{i}")
        done.read(f"t{i}")
    assert "unread" in done and "early" in done and "queued" not in done
    assert len(done) == 10 + 3


def test_a_gold_questions_outcome_settles_it_alone() -> None:
    # A gold question has no record in crowd.tasks: its outcome is its only one.
    done = Outcomes(keep=1)
    done.sent("gold:w1:3")
    done.read("gold:w1:3", gold=True)
    done.read("t1")  # an outcome whose task is still to be read
    done.task_read("t2")
    done.read("t2")  # settles, and pushes the gold question out
    assert "gold:w1:3" not in done and "t1" in done and "t2" in done
    assert len(done) == 2


def test_a_record_read_again_soon_after_is_still_known() -> None:
    # A follower hands a batch again after an error: its ids are among the newest.
    done = Outcomes(keep=3)
    for key in ("a", "b", "c"):
        done.task_read(key)
        done.read(key)
    done.task_read("a")  # "a" read again: it becomes the newest
    done.task_read("d")
    done.read("d")
    assert "a" in done and "b" not in done
