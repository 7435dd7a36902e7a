"""The jobs' estimators: Chao92 and its corrections, Thresh with gold, the
proportion intervals corrected for worker error (coverage by repeated simulation)."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from pe.jobs.proportion import WorkerRates, corrected_difference, corrected_share
from pe.jobs.species import chao92, estimate, expected_new, f1_corrected
from pe.jobs.thresh import CountAnswer, gold_count, thresh


def test_chao92_matches_a_hand_computed_example() -> None:
    # f1=20, f2=10, f3=5, f4=5: n=75, c=40, C=1-20/75=0.7333, c/C=54.545,
    # sum j(j-1)f_j = 20+30+60=110, g2 = 54.545*110/(75*74) - 1 = 0.0811,
    # N = 54.545 + 20/0.7333*0.0811 = 56.76
    result = chao92([1] * 20 + [2] * 10 + [3] * 5 + [4] * 5)
    assert (result.n, result.distinct, result.f1) == (75, 40, 20)
    assert result.coverage == pytest.approx(0.73333, abs=1e-4)
    assert result.cv2 == pytest.approx(0.08108, abs=1e-4)
    assert result.total == pytest.approx(56.757, abs=1e-3)
    assert result.completeness == pytest.approx(40 / 56.757, abs=1e-4)


def test_chao92_is_unbounded_while_every_answer_is_new() -> None:
    assert chao92([1, 1, 1]).total is None
    assert chao92([]).total is None


def test_chao92_converges_on_a_uniform_population() -> None:
    rng = random.Random(3)
    draws = Counter(rng.randrange(50) for _ in range(400))
    assert chao92(draws.values()).total == pytest.approx(50, abs=3)


def test_the_f1_heuristic_trims_a_streakers_singletons_only() -> None:
    # 11 steady workers keep finding the same 5 values; one streaker adds 30 new ones.
    answers = [(f"w{w}", f"v{v}") for w in range(11) for v in range(5)]
    answers += [("streaker", f"new{i}") for i in range(30)] + [("streaker", "v0")] * 10
    raw = chao92(Counter(v for _, v in answers).values())
    corrected = chao92(f1_corrected(answers, k=10, beta=0.5).values())
    assert raw.total is not None and corrected.total is not None
    assert corrected.total < raw.total  # the streaker's flood no longer inflates N
    kept = f1_corrected(answers, k=10, beta=0.5)
    assert all(kept[f"v{v}"] == 11 + (10 if v == 0 else 0) for v in range(5))
    # beta caps what is removed: at most half of the streaker's 40 answers
    assert sum(1 for v in kept if v.startswith("new")) == 30 - 20
    # without streakers nothing is removed
    steady = [(f"w{w}", f"v{(w + i) % 9}") for w in range(12) for i in range(3)]
    assert f1_corrected(steady) == Counter(v for _, v in steady)


def test_the_one_worker_who_found_a_rare_answer_is_no_streaker() -> None:
    # Eight workers keep naming five places; one of them names a sixth once. The bar
    # is 1/8 singleton: one answer above it is not a streak, and the sixth place was
    # seen, so the corrected total cannot fall below six.
    answers = [(f"w{w}", f"p{(w + i) % 5}") for w in range(8) for i in range(3)]
    answers.append(("w3", "p5"))
    assert f1_corrected(answers)["p5"] == 1
    result = estimate(answers)
    assert result.raw.distinct == result.corrected.distinct == 6
    assert result.corrected.total is not None and result.corrected.total >= 6
    assert result.corrected.completeness <= 1.0


def test_the_corrected_total_never_falls_below_the_answers_seen() -> None:
    # One worker of ten adds three singletons: the bar is 0.3, so the paper removes
    # 3 - 0.3 of them, two whole answers. Chao92 of the rest would count fewer
    # places than were named.
    answers = [(f"w{w}", f"p{(w + i) % 3}") for w in range(10) for i in range(3)]
    answers += [("w0", f"rare{i}") for i in range(3)]
    kept = f1_corrected(answers)
    assert sum(1 for v in kept if v.startswith("rare")) == 1
    result = estimate(answers)
    trimmed = chao92(kept.values())
    assert trimmed.total is not None and trimmed.total < 6
    assert result.corrected.total == 6  # the six seen, no unseen one in sight
    assert result.corrected.completeness == 1.0


def test_expected_new_answers_follow_shens_formula() -> None:
    result = chao92([1] * 20 + [2] * 10 + [3] * 5 + [4] * 5)
    f0 = result.total - result.distinct  # type: ignore[operator]
    for m in (10, 50):
        want = f0 * (1 - (1 - (20 / 75) / f0) ** m)
        assert expected_new(result, m) == pytest.approx(want)
    assert expected_new(result, 10) < 10 * 20 / 75  # saturating, not linear
    assert estimate([("w", "a"), ("v", "a")]).predicted[10] == 0.0  # nothing new in sight


def _count_answers(
    rng: random.Random, truth: float, workers: int, batches: int, size: int = 50
) -> list[CountAnswer]:
    answers = []
    for w in range(workers):
        for _ in range(batches):
            count = sum(rng.random() < truth for _ in range(size))
            answers.append(CountAnswer(f"good{w}", count, size))
    return answers


def test_thresh_ignores_spammers_who_do_most_of_the_work() -> None:
    rng = random.Random(5)
    answers = _count_answers(rng, 0.1, workers=10, batches=3)
    # two spammers do far more batches, answering at random
    for s in range(2):
        answers += [CountAnswer(f"spam{s}", rng.randint(0, 50), 50) for _ in range(60)]
    naive = sum(a.fraction for a in answers) / len(answers)
    result = thresh(answers)
    assert abs(naive - 0.1) > 0.2  # the plain average is dragged to ~0.4
    assert result.estimate.value == pytest.approx(0.1, abs=0.03)
    assert set(result.spammers) == {"spam0", "spam1"}
    assert result.estimate.low <= 0.1 <= result.estimate.high


def test_random_gold_defeats_a_coordinated_attack() -> None:
    rng = random.Random(9)
    size, truth = 50, 0.5
    honest = []
    for w in range(10):
        for _ in range(3):
            gold = gold_count(size, 15, rng)
            real = sum(rng.random() < truth for _ in range(size - gold))
            gold_pos = sum(rng.random() < 0.5 for _ in range(gold))
            honest.append(CountAnswer(f"good{w}", real + gold_pos, size, gold, gold_pos))

    def attack(with_gold: bool) -> list[CountAnswer]:
        out = []
        for a in range(25):  # colluders outnumber honest workers, all answer 5
            for _ in range(3):
                gold = gold_count(size, 15, rng) if with_gold else 0
                gold_pos = sum(rng.random() < 0.5 for _ in range(gold))
                out.append(CountAnswer(f"sybil{a}", 5, size, gold, gold_pos))
        return out

    fooled = thresh(honest + attack(with_gold=False))
    assert fooled.estimate.value < 0.2  # without gold the coalition wins
    defended = thresh(honest + attack(with_gold=True))
    assert defended.estimate.value == pytest.approx(truth, abs=0.06)
    assert all(s.startswith("sybil") for s in defended.spammers)


def test_gold_counts_stay_inside_the_batch() -> None:
    rng = random.Random(1)
    draws = [gold_count(20, 4, rng) for _ in range(2000)]
    assert min(draws) >= 1 and max(draws) <= 7  # 4 +- min(0.2*20, 4-1, 20-4-1)
    assert len(set(draws)) > 3  # it varies: colluders cannot agree after correction
    assert gold_count(20, 0, rng) == 0


def test_with_workers_right_for_certain_the_interval_is_wilsons() -> None:
    # 3 of 10: Wilson's 95% interval is [0.1078, 0.6032] (centre (0.3 + 1.92/10) / 1.384,
    # half-width 1.96 sqrt(0.021 + 0.0096) / 1.384).
    result = corrected_share([("a", 1)] * 3 + [("b", 0)] * 7, {})
    assert result.value == pytest.approx(0.3)
    assert (result.low, result.high) == pytest.approx((0.10779, 0.60322), abs=1e-4)


@pytest.mark.parametrize("truth", [0.05, 0.3, 0.5])
def test_intervals_cover_the_truth_at_their_level(truth: float) -> None:
    rng = random.Random(int(truth * 100))
    trials, n, hits = 2000, 60, 0
    for _ in range(trials):
        answers = [("w", int(rng.random() < truth)) for _ in range(n)]
        interval = corrected_share(answers, {}, 0.95)
        hits += interval.low <= truth <= interval.high
    assert 0.92 <= hits / trials <= 0.985


def _crowd(rng: random.Random, spammers: int, good: int) -> dict[str, tuple[float, float]]:
    """Workers' true (hit, false alarm): spammers say the tag at random, good workers
    are right 75 to 95% of the time."""
    crowd = {f"spam{i}": (0.5, 0.5) for i in range(spammers)}
    for i in range(good):
        accuracy = rng.uniform(0.75, 0.95)
        crowd[f"good{i}"] = (accuracy, 1 - accuracy)
    return crowd


def _gold_rates(
    rng: random.Random, crowd: dict[str, tuple[float, float]], per_worker: int
) -> dict[str, WorkerRates]:
    """The rates a uniform prior and a worker's gold answers (half of them with the
    tag) give: Beta posteriors, as the quality loop's counts do."""
    rates = {}
    half = per_worker // 2
    for worker, (hit, false_alarm) in crowd.items():
        hits = sum(rng.random() < hit for _ in range(half))
        alarms = sum(rng.random() < false_alarm for _ in range(half))
        rates[worker] = WorkerRates.from_counts(
            1 + hits, 1 + half - hits, 1 + alarms, 1 + half - alarms
        )
    return rates


def _said(rng: random.Random, crowd: dict[str, tuple[float, float]], has: bool) -> tuple[str, int]:
    """A random worker's answer on an item that has the tag or not."""
    worker = rng.choice(sorted(crowd))
    hit, false_alarm = crowd[worker]
    return worker, int(rng.random() < (hit if has else false_alarm))


@pytest.mark.parametrize("truth", [0.0275, 0.32])
def test_the_correction_for_worker_error_covers_the_truth(truth: float) -> None:
    # A crowd with 30% spammers: the plain share of the answers is biased toward 50%;
    # corrected with the rates 30 gold answers per worker give, the 95% interval
    # holds the truth in about 95% of jobs.
    rng = random.Random(round(truth * 1000))
    jobs, hits, plain = 300, 0, []
    for _ in range(jobs):
        crowd = _crowd(rng, spammers=3, good=7)
        rates = _gold_rates(rng, crowd, per_worker=30)
        answers = [_said(rng, crowd, rng.random() < truth) for _ in range(200)]
        result = corrected_share(answers, rates)
        hits += result.low <= truth <= result.high
        plain.append(sum(said for _, said in answers) / len(answers))
    assert 0.91 <= hits / jobs <= 0.99
    assert statistics.fmean(plain) - truth > 0.05  # what counting jobs reported before


def test_the_interval_widens_with_what_is_not_known_of_the_workers() -> None:
    rng = random.Random(4)
    crowd = _crowd(rng, spammers=0, good=8)
    answers = [_said(rng, crowd, rng.random() < 0.3) for _ in range(300)]
    known = {w: WorkerRates(h, f) for w, (h, f) in crowd.items()}
    unsure = {w: WorkerRates(h, f, 0.01, 0.01) for w, (h, f) in crowd.items()}
    certain, doubtful = corrected_share(answers, known), corrected_share(answers, unsure)
    assert certain.value == pytest.approx(doubtful.value, abs=0.02)
    assert doubtful.width > 1.3 * certain.width


def test_a_spammers_answers_count_for_nothing() -> None:
    rng = random.Random(6)
    crowd = _crowd(rng, spammers=0, good=5)
    answers = [_said(rng, crowd, rng.random() < 0.1) for _ in range(300)]
    rates = {w: WorkerRates(h, f, 0.001, 0.001) for w, (h, f) in crowd.items()}
    alone = corrected_share(answers, rates).value
    flood = answers + [("spam", int(rng.random() < 0.5)) for _ in range(600)]
    rates["spam"] = WorkerRates(0.5, 0.5, 0.001, 0.001)
    assert corrected_share(flood, rates).value == pytest.approx(alone, abs=0.01)


def test_the_difference_estimator_corrects_a_biased_model_and_noisy_workers() -> None:
    rng = random.Random(2)
    population = 5000
    labels = [rng.random() < 0.3 for _ in range(population)]
    # a model that over-predicts the tag: p = 0.25 + 0.5 * label, noisy
    predicted = [min(max(0.25 + 0.5 * y + rng.gauss(0, 0.1), 0), 1) for y in labels]
    truth = sum(labels) / population
    biased = sum(predicted) / population
    assert abs(biased - truth) > 0.1  # classify-and-count alone is off
    crowd = _crowd(rng, spammers=2, good=8)
    hits, widths, alone, trials = 0, [], [], 400
    for _ in range(trials):
        rates = _gold_rates(rng, crowd, per_worker=40)
        sample = [
            (*_said(rng, crowd, labels[i]), predicted[i])
            for i in rng.sample(range(population), 200)
        ]
        result = corrected_difference(biased, sample, rates, 0.95)
        hits += result.low <= truth <= result.high
        widths.append(result.width)
        alone.append(corrected_share([(w, y) for w, y, _ in sample], rates).width)
    assert 0.92 <= hits / trials <= 0.99
    # narrower than the same labels alone: the model explains part of the variance
    assert statistics.fmean(widths) < statistics.fmean(alone)
