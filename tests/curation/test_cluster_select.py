"""Cluster-balanced selection (App. A.2): round-robin rule, curate() counts, shrinking k and SVD."""

import logging
from collections import Counter

import numpy as np
import pytest

from synthtune.curation.cluster_select import cluster_labels, curate, round_robin_select, tfidf_svd_features
from synthtune.errors import SynthtuneError


def _rounds(labels: np.ndarray, chosen: list[int]) -> list[list[int]]:
    """Split the chosen sequence into rounds: round r visits every cluster with at least r members."""
    sizes = Counter(labels.tolist())
    rounds, pos, r = [], 0, 1
    while pos < len(chosen):
        width = sum(1 for s in sizes.values() if s >= r)
        rounds.append(chosen[pos : pos + width])
        pos += width
        r += 1
    return rounds


@pytest.mark.parametrize("target", [1, 4, 9, 15, 19])
def test_round_robin_one_per_cluster_per_round(target):
    labels = np.array([0] * 1 + [1] * 5 + [2] * 10 + [3] * 3)
    chosen = round_robin_select(labels, target, seed=3)
    assert len(chosen) == target
    assert len(set(chosen)) == target  # without replacement
    sizes = Counter(labels.tolist())
    for r, members in enumerate(_rounds(labels, chosen), start=1):
        clusters = [int(labels[i]) for i in members]
        assert len(clusters) == len(set(clusters)), f"round {r} took two from one cluster"
        eligible = {c for c, s in sizes.items() if s >= r}
        assert set(clusters) <= eligible
    counts = Counter(int(labels[i]) for i in chosen)
    # Balanced: no cluster is ahead of another non-exhausted one by more than one pick.
    for a in counts:
        for b in sizes:
            if counts.get(b, 0) < sizes[b]:
                assert counts[a] <= counts.get(b, 0) + 1


def test_round_robin_caps_at_pool_and_is_seeded():
    labels = np.repeat(np.arange(20), 3)
    assert sorted(round_robin_select(labels, 1000, seed=0)) == list(range(60))
    a, b = round_robin_select(labels, 40, seed=1), round_robin_select(labels, 40, seed=1)
    assert a == b
    assert a != round_robin_select(labels, 40, seed=2)
    # Each round visits the clusters in a fresh random order.
    order1 = [int(labels[i]) for i in a[:20]]
    order2 = [int(labels[i]) for i in a[20:40]]
    assert sorted(order1) == sorted(order2) == list(range(20))
    assert order1 != order2


TOPICS = {
    "cats": "cat kitten purr whiskers meow feline litter paw fur nap",
    "rockets": "rocket orbit launch fuel thrust booster astronaut capsule gravity engine",
    "cooking": "oven bake flour sugar recipe dough butter knead whisk salt",
}


def _topic_texts(rng: np.random.Generator, topic: str, n: int) -> list[str]:
    words = TOPICS[topic].split()
    return [" ".join(rng.choice(words, size=8)) + f" {topic}{i}" for i in range(n)]


def test_curate_balances_imbalanced_topics():
    rng = np.random.default_rng(0)
    texts = _topic_texts(rng, "cats", 60) + _topic_texts(rng, "rockets", 10) + _topic_texts(rng, "cooking", 10)
    kept, report = curate(texts, num_samples=15, n_clusters=3, svd_components=5, seed=0)
    topics = Counter(next(t for t in TOPICS if t in text.split()[-1]) for text in kept)
    assert report["selected"] == report["output"] == 15 == len(kept)
    assert report["clusters"] == 3 and report["clusters_used"] == 3
    # Random sampling would take ~11 cats; one per cluster per round takes 5 of each.
    assert topics == {"cats": 5, "rockets": 5, "cooking": 5}
    assert kept == sorted(kept, key=texts.index)  # input order


def test_curate_dedup_counts_and_dict_rows():
    rows = [{"text": t, "id": i} for i, t in enumerate(
        ["Alpha beta gamma", "alpha  BETA gamma", "delta epsilon", "Delta epsilon ", "zeta eta theta", "iota"]
    )]
    kept, report = curate(rows, num_samples=100, n_clusters=2)
    assert report["input"] == 6 and report["after_dedup"] == 4 and report["duplicates_removed"] == 2
    assert [r["id"] for r in kept] == [0, 2, 4, 5]
    assert report["output"] == 4


def test_curate_more_samples_than_pool_warns(caplog):
    with caplog.at_level(logging.WARNING):
        kept, report = curate(["a b", "c d", "a  B"], num_samples=10)
    assert len(kept) == 2
    assert "asked for 10 samples but only 2 remain" in caplog.text
    assert len(report["warnings"]) == 1


def test_curate_shrinks_clusters_and_svd(caplog):
    texts = [f"word{i} common shared text" for i in range(20)]
    with caplog.at_level(logging.WARNING):
        kept, report = curate(texts, num_samples=10, n_clusters=700, svd_components=100)
    assert report["clusters"] == 20
    assert report["svd_components"] == 19  # below the 20 rows (the vocabulary has 23 words)
    assert len(kept) == 10
    assert "only 20 rows for 700 clusters" in caplog.text


def test_tfidf_svd_shrinks_to_vocabulary():
    features, used = tfidf_svd_features(["aa bb", "bb cc", "cc aa", "aa aa", "bb bb", "cc cc"], 100)
    assert used == 2 and features.shape == (6, 2) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


def test_curate_decontaminates_before_selection():
    ref = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    texts = ["zero " + ref, "One, two: three 4 four five six seven eight nine ten eleven twelve thirteen!",
             "alpha beta gamma", "delta epsilon zeta"]
    kept, report = curate(texts, num_samples=50, references=[ref])
    assert kept == ["alpha beta gamma", "delta epsilon zeta"]
    assert report["decontaminated_dropped"] == 2 and report["contamination_rate"] == pytest.approx(0.5)


def test_curate_bad_input():
    with pytest.raises(SynthtuneError, match="no rows"):
        curate([], num_samples=5)
    with pytest.raises(SynthtuneError, match="lacks field"):
        curate([{"question": "q"}], num_samples=5, field="text")
    with pytest.raises(SynthtuneError, match="num_samples"):
        curate(["a"], num_samples=0)
    with pytest.raises(SynthtuneError, match="no words"):
        curate(["!!", "??", "..."], num_samples=2)


def test_cluster_labels_rejects_too_many_clusters():
    with pytest.raises(SynthtuneError, match="cannot make 5 clusters from 3 rows"):
        cluster_labels(np.zeros((3, 2), dtype=np.float32), 5)
