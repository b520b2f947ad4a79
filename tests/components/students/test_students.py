import json
from collections import Counter

import pytest
import torch

from synthtune.components.students import (EncoderClassifier, curve_split, matched_random_subset, predict_labels,
                                           train_student)
from synthtune.errors import SynthtuneError
from synthtune.tasks import load_task
from tiny_models import build_tiny_bert

WORDS = {0: ["awful", "dull", "bad", "boring"], 1: ["great", "lovely", "good", "fun"]}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


def rows(n: int, flip: bool = False) -> list[dict]:
    out = []
    for i in range(n):
        label = i % 2
        out.append({"text": f"a {WORDS[label][i % 4]} film number {i}", "label": 1 - label if flip else label})
    return out


def test_curve_split_from_lmbff_is_seeded_stratified_and_nested():
    task = load_task("sst2")
    train4, dev4, source = curve_split(task, 4, 13)
    train8, dev8, _ = curve_split(task, 8, 13)
    assert source == "LM-BFF 16-13"
    assert Counter(r["label"] for r in train4) == {0: 4, 1: 4} and Counter(r["label"] for r in dev8) == {0: 8, 1: 8}
    assert all(r in train8 for r in train4) and all(r in dev8 for r in dev4)  # each k a subset of the next
    assert curve_split(task, 4, 13) == (train4, dev4, source)
    assert curve_split(task, 4, 21)[0] != train4


def test_curve_split_beyond_16_samples_disjoint_train_and_dev_from_the_train_file(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"label_names": ["neg", "pos"], "fields": ["text", "label"]}))
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(200)))
    task = load_task(str(folder))
    train, dev, source = curve_split(task, 32, 7)
    assert source == "train.jsonl"
    assert Counter(r["label"] for r in train) == {0: 32, 1: 32} == Counter(r["label"] for r in dev)
    assert not {r["text"] for r in train} & {r["text"] for r in dev}
    assert curve_split(task, 32, 7)[0] == train and curve_split(task, 32, 8)[0] != train


def test_matched_random_subset_has_the_same_per_label_counts_and_is_seeded():
    pool, like = rows(50), rows(9)  # 5 of label 0, 4 of label 1
    subset = matched_random_subset(pool, like, seed=3)
    assert Counter(r["label"] for r in subset) == Counter(r["label"] for r in like) == {0: 5, 1: 4}
    assert subset == matched_random_subset(pool, like, seed=3) != matched_random_subset(pool, like, seed=4)
    with pytest.raises(ValueError, match="label 0: 30 rows asked for, 25 available"):
        matched_random_subset(pool, rows(60), seed=0)


def test_classifier_pools_real_tokens_only(tiny_bert):
    model = EncoderClassifier(2, encoder=tiny_bert, seed=0).eval()
    short, long = {"text": "good"}, {"text": "a much longer sentence that pads the short one"}
    with torch.no_grad():
        alone = model([short])
        padded = model([short, long])[0:1]
    torch.testing.assert_close(alone, padded, rtol=1e-5, atol=1e-6)


def test_paired_training_conflicts_with_flipped_synthetic_labels_and_never_with_a_copy(tiny_bert):
    real = [r for r in rows(16) if r["label"] == 0]  # one label: the flipped copy asks for the opposite logits
    flipped = [{**r, "label": 1} for r in real]

    def conflicts(syn):
        model = EncoderClassifier(2, encoder=tiny_bert, seed=0)
        return train_student(model, real, syn, strategy="paired", steps=6, batch_size=8, syn_batch_size=8,
                             lr=1e-3, seed=0).conflict_rate

    assert conflicts(real) == 0.0  # the same rows: the two gradients are equal, never opposed
    assert conflicts(flipped) >= 0.5  # opposite labels: the gradients point apart


def test_training_learns_the_rows_and_keeps_the_best_dev_weights(tiny_bert):
    real, dev = rows(16), rows(8)
    model = EncoderClassifier(2, encoder=tiny_bert, seed=1)
    run = train_student(model, real, rows(40), strategy="real+syn", steps=30, batch_size=8, syn_batch_size=8,
                        lr=3e-3, head_lr=3e-3, dev=dev, eval_every=5, seed=0)
    assert [step for step, _ in run.dev_curve] == [5, 10, 15, 20, 25, 30]
    best_acc = max(acc for _, acc in run.dev_curve)
    assert run.best_step == max(step for step, acc in run.dev_curve if acc == best_acc)
    assert run.syn_passes == pytest.approx(30 * 8 / 40)
    model.load_state_dict(run.best)
    predicted = predict_labels(model, dev)
    assert sum(p == r["label"] for p, r in zip(predicted, dev)) / len(dev) == pytest.approx(best_acc)
    model.load_state_dict(run.last)
    assert sum(p == r["label"] for p, r in zip(predict_labels(model, real), real)) >= 14  # it learnt the words


def test_real_only_ignores_synthetic_rows_and_mistakes_are_one_line(tiny_bert):
    model = EncoderClassifier(2, encoder=tiny_bert, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    a = train_student(model, rows(8), [], strategy="real", steps=3, seed=0).last
    model.load_state_dict(state)
    b = train_student(model, rows(8), rows(8, flip=True), strategy="real", steps=3, seed=0).last
    assert all(torch.equal(a[k], b[k]) for k in a) and len(a) > 0
    with pytest.raises(SynthtuneError, match="needs synthetic rows"):
        train_student(model, rows(8), [], strategy="paired")
    with pytest.raises(SynthtuneError, match="unknown strategy"):
        train_student(model, rows(8), rows(8), strategy="mixed")
