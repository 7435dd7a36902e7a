"""Which features learn most from a thousand crowd answers, and at what speed.

A benchmark, not a test: the quick offline screen that chose what to try in the
running pipeline (``bench/live_learning.py``). Each seed shuffles the messages whose
``--text`` field is non-empty and holds out the last 5,000. ``--answers`` messages
are labelled by one answer each from the simulated ``live`` crowd with 10% spammers
(a pool of 15 workers drawn from ``pe.annotator.population``): the design
``passive/nodedup/single`` of ``bench/learning_curve.py``, without its clock and
pool. With ``--accuracy A``, each of them instead gets a label right a share A of the
time, at random: the quality loop's settled labels (in the pipeline, 350-450 labels
right about 95% of the time from 1,000 answers). Each feature option trains the
learner's logistic regression (``--c`` for the hashed n-grams, ``--dense-c`` for an
embedding alone) and is scored on the held-out messages: AUC, and the tag's best F1
(its threshold chosen on the held-out set, so an upper bound of what a decision rule
can reach).

``distil`` rows: the embedding's model (the teacher, trained on the answers) scores
``--unlabelled`` more messages of the stream; the default word n-gram model (the
student) learns from those soft labels (weighted by ``--teacher-weight``, the
learner's ``teacher_weight``) and the crowd's answers, then classifies at the word
features' speed.

``--text original`` reads each message in its original language (Haitian Creole or
French, mostly); ``--require original`` keeps the English texts of the same messages,
the fair comparison.

Speed: each option featurises 2,000 messages on one thread (items/s). ``--cache DIR``
keeps each embedding of the messages there for the next run.
Usage: python bench/feature_options.py --data disaster_messages.jsonl.gz
       [--answers 1000] [--accuracy A] [--seeds 3] [--text text|original]
       [--require text|original] [--cache DIR]
       [--options word,word+char,wordllama,use,minilm,use+minilm] [--unlabelled 17000]
       [--stemmer english|none|...]

An embedding option may join encoders with ``+`` (``use+minilm``, the learner's default
teacher): their embeddings side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pe.annotator.population import PRESETS
from pe.common.embedding import load_embedder
from pe.common.space import FeatureSpace
from pe.learner.teacher import learn_from_teacher, logistic
from pe.params import FeaturesParams, LearnerParams

CLASSIFIERS = ("aid_related", "request")
HOLDOUT = 5000
POOL = 15
SPEED_SAMPLE = 2000
#: Hashed n-gram options (the features stage's own space); any other option names
#: embeddings (pe.common.embedding.load_embedder).
SPARSE = {"word": FeaturesParams(), "word+char": FeaturesParams(char_ngrams=True)}
#: The features stage's default stemmer (``--stemmer``).
STEMMER = FeaturesParams().stemmer

Matrix = Any  # a sparse matrix (n-grams) or a dense array (an embedding)


def _load(
    path: Path, field: str, require: str
) -> tuple[list[str], dict[str, npt.NDArray[np.bool_]]]:
    texts: list[str] = []
    truth: dict[str, list[bool]] = {name: [] for name in CLASSIFIERS}
    with gzip.open(path, "rb") as handle:
        for line in handle:
            record = orjson.loads(line)
            text = str(record.get(field) or "").strip()
            if not text or not str(record.get(require) or "").strip():
                continue
            texts.append(text)
            for name in CLASSIFIERS:
                truth[name].append(int(record["labels"][name]) == 1)
    return texts, {name: np.array(values) for name, values in truth.items()}


def _cached(
    option: str, texts: list[str], cache: Path | None, stemmer: str
) -> tuple[Matrix, float]:
    """:func:`_featurise`, kept in ``cache`` for an embedding (MiniLM takes 10 minutes
    to embed the shared data on one thread): by option and texts."""
    if cache is None or option in SPARSE:
        return _featurise(option, texts, stemmer)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache / f"{option}-{digest}.npz"
    if path.exists():
        with np.load(path) as stored:
            return stored["x"], float(stored["speed"])
    x, speed = _featurise(option, texts, stemmer)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, speed=speed)
    return x, speed


def _featurise(option: str, texts: list[str], stemmer: str) -> tuple[Matrix, float]:
    """The option's features of every text (n-grams of words stemmed by ``stemmer``),
    and its speed on one thread (items/s)."""
    if option in SPARSE:
        space = FeatureSpace(SPARSE[option].model_copy(update={"stemmer": stemmer}))

        def run(batch: list[str]) -> Matrix:
            return space.matrix(batch)
    else:
        embed = load_embedder(option)

        def run(batch: list[str]) -> Matrix:
            return embed(batch)

    started = time.perf_counter()
    run(texts[:SPEED_SAMPLE])
    speed = min(SPEED_SAMPLE, len(texts)) / (time.perf_counter() - started)
    parts = [run(texts[i : i + 2048]) for i in range(0, len(texts), 2048)]
    matrix = sp.vstack(parts).tocsr() if option in SPARSE else np.concatenate(parts)
    return matrix, speed


def _labels(
    truth: npt.NDArray[np.bool_], seed: int, accuracy: float | None
) -> npt.NDArray[np.bool_]:
    """Crowd answers (:func:`_crowd_answers`), or with ``accuracy`` labels right that
    share of the time, at random: what the quality loop's settled labels look like."""
    if accuracy is None:
        return _crowd_answers(truth, seed)
    right = np.random.default_rng(seed + 100).random(len(truth)) < accuracy
    return np.where(right, truth, ~truth)


def _crowd_answers(truth: npt.NDArray[np.bool_], seed: int) -> npt.NDArray[np.bool_]:
    """One answer per item from a worker of a pool drawn from the live population."""
    rng = random.Random(seed)
    population = dataclasses.replace(PRESETS["live"], spammer_share=0.1)
    pool = [population.draw(f"w{i}", rng) for i in range(POOL)]
    tags = ["yes", "no"]
    return np.array(
        [rng.choice(pool).answer(tags[not value], tags, rng) == "yes" for value in truth.tolist()]
    )


def _fit(x: Matrix, y: npt.NDArray[np.bool_], c: float) -> LogisticRegression:
    return logistic(c).fit(x, y)  # the learner's own settings


def _score(truth: npt.NDArray[np.bool_], score: npt.NDArray[np.float64]) -> dict[str, float]:
    precision, recall, _ = precision_recall_curve(truth, score)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return {"auc": float(roc_auc_score(truth, score)), "best_f1": float(f1.max())}


def _summary(values: list[dict[str, float]]) -> dict[str, Any]:
    return {
        key: {
            "mean": round(statistics.fmean(v[key] for v in values), 4),
            "worst": round(min(v[key] for v in values), 4),
        }
        for key in values[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--answers", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--text", choices=["text", "original"], default="text")
    parser.add_argument(
        "--require",
        choices=["text", "original"],
        default="text",
        help="only messages with this field non-empty (compare languages on one set)",
    )
    parser.add_argument("--options", default="word,word+char,wordllama,use")
    parser.add_argument(
        "--accuracy",
        type=float,
        default=None,
        help="labels right this share of the time instead of single crowd answers "
        "(the quality loop's settled labels: about 0.95, 350-450 of them a 1,000 answers)",
    )
    parser.add_argument("--unlabelled", type=int, default=17000)
    parser.add_argument("--cache", type=Path, default=None, help="keep embeddings here")
    parser.add_argument("--stemmer", default=STEMMER, help="the word n-grams' (features.stemmer)")
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--dense-c", type=float, default=0.1)
    parser.add_argument(
        "--teacher-weight",
        type=float,
        default=LearnerParams().teacher_weight,
        help="weight of each unlabelled message's soft labels (learner.teacher_weight)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()

    texts, truth = _load(args.data, args.text, args.require)
    options = args.options.split(",")
    features: dict[str, Matrix] = {}
    speed: dict[str, float] = {}
    for option in dict.fromkeys(["word", *options]):
        parts = option.split("+")
        if option not in SPARSE and len(parts) > 1 and all(part in features for part in parts):
            # Joined encoders listed after their parts: embedded once, side by side.
            features[option] = np.hstack([features[part] for part in parts])
            speed[option] = 1 / sum(1 / speed[part] for part in parts)
        else:
            features[option], speed[option] = _cached(option, texts, args.cache, args.stemmer)
        print(f"{option}: {speed[option]:,.0f} items/s", flush=True)

    scores: dict[tuple[str, str], list[dict[str, float]]] = {}
    unlabelled_n = min(args.unlabelled, len(texts) - HOLDOUT - args.answers)
    for seed in range(1, args.seeds + 1):
        order = np.random.default_rng(seed).permutation(len(texts))
        test, labelled = order[-HOLDOUT:], order[: args.answers]
        unlabelled = order[args.answers : args.answers + unlabelled_n]
        for name in CLASSIFIERS:
            answers = _labels(truth[name][labelled], seed, args.accuracy)
            held = truth[name][test]

            for option in options:
                x = features[option]
                c = args.c if option in SPARSE else args.dense_c
                model = _fit(x[labelled], answers, c)
                trained = [(option, model, x)]
                if option not in SPARSE:
                    words = features["word"]
                    student = learn_from_teacher(
                        words[labelled],
                        answers.tolist(),
                        [1.0] * len(labelled),
                        words[unlabelled],
                        model.predict_proba(x[unlabelled]) * args.teacher_weight,
                        model.classes_.tolist(),
                        args.c,
                    )
                    trained.append((f"distil {option} -> word", student, words))
                for row, fitted, x_row in trained:
                    probability = fitted.predict_proba(x_row[test])[:, 1]
                    scores.setdefault((name, row), []).append(_score(held, probability))

    rows = [
        {
            "classifier": name,
            "features": row,
            # A distilled model classifies at the word features' speed.
            "items_per_s": round(speed[row.split()[-1]]),
            **_summary(values),
        }
        for (name, row), values in scores.items()
    ]
    print(f"\n{'classifier':12} {'features':24} {'items/s':>8}  AUC mean (worst)  best F1 mean")
    for row in rows:
        auc, f1 = row["auc"], row["best_f1"]
        print(
            f"{row['classifier']:12} {row['features']:24} {row['items_per_s']:>8,}  "
            f"{auc['mean']:.3f} ({auc['worst']:.3f})     {f1['mean']:.3f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"bench-feature-options-{stamp}.json"
    report = {
        "benchmark": "feature_options",
        "command": " ".join(sys.argv),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "messages": len(texts),
        "rows": rows,
    }
    path.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
