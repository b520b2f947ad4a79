"""The label-consistency filter's pure parts: the keep rule's exact counts, the generator score against a direct
computation on a tiny model, the classifier scorer and the judge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthtune.components.backbone import embed_tokens
from synthtune.curation.label_filter import (Judge, check_keep_rule, classifier_scores, generator_logprobs, label_margin,
                                             generator_scores, keep_per_label, kept_count, label_ratio)
from synthtune.datamodules.labeled import LabeledDataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.dawgen import DawGenModule

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun", "warm", "bright"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring", "cold", "grim", "weak"]


def test_fraction_keeps_round_half_up_per_label_best_first():
    # 10 rows of label 0 and 7 of label 1, interleaved; fraction 0.5 keeps 5 and 4 (3.5 rounds up).
    labels = np.array([0, 1] * 7 + [0, 0, 0])
    scores = np.arange(len(labels), dtype=float)[::-1].copy()  # earlier rows score higher
    kept = keep_per_label(scores, labels, keep_fraction=0.5)
    assert [int((labels[kept] == lab).sum()) for lab in (0, 1)] == [5, 4]
    assert kept == sorted(kept)
    assert kept == [0, 1, 2, 3, 4, 5, 6, 7, 8]  # label 0: rows 0,2,4,6,8; label 1: rows 1,3,5,7
    assert [kept_count(n, 0.5) for n in (1, 2, 3, 7, 10)] == [1, 1, 2, 4, 5]
    assert [kept_count(n, 0.25) for n in (1, 2, 6, 10)] == [0, 1, 2, 3]  # 0.25, 0.5 and 1.5 and 2.5 round up
    assert len(keep_per_label(scores, labels, keep_fraction=1.0)) == len(labels)


def test_fraction_picks_the_top_scores_and_breaks_ties_by_row_order():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.9, 0.5, 0.9, -1.0, float("nan"), -2.0])
    # label 0 keeps 2 of 4: the two 0.9s (rows 1 and 3); label 1 keeps 2 of 3 (1.5 -> 2): -1.0 then -2.0, NaN last
    assert keep_per_label(scores, labels, keep_fraction=0.5) == [1, 3, 4, 6]
    tied = keep_per_label(np.zeros(6), np.zeros(6, dtype=int), keep_fraction=0.5)
    assert tied == [0, 1, 2]


def test_threshold_keeps_every_row_at_or_above_it():
    labels = np.array([0, 1, 0, 1, 0])
    scores = np.array([-0.5, -0.1, -0.1, -2.0, 0.0])
    assert keep_per_label(scores, labels, threshold=-0.1) == [1, 2, 4]
    assert keep_per_label(scores, labels, threshold=1.0) == []


@pytest.mark.parametrize("fraction, threshold, words", [(None, None, "neither"), (0.5, -1.0, "both"),
                                                        (0.0, None, "(0, 1]"), (1.5, None, "(0, 1]"),
                                                        (None, float("nan"), "finite")])
def test_a_bad_keep_rule_is_one_line(fraction, threshold, words):
    with pytest.raises(SynthtuneError) as err:
        check_keep_rule(fraction, threshold)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_label_ratio_is_the_log_posterior_of_the_row_label():
    logp = np.array([[-10.0, -12.0, -11.0], [-3.0, -3.0, -3.0]])
    ratio = label_ratio(logp, [0, 2])
    expected0 = -10.0 - np.log(np.exp(-10.0) + np.exp(-12.0) + np.exp(-11.0))
    assert ratio[0] == pytest.approx(expected0, abs=1e-12)
    assert ratio[1] == pytest.approx(-np.log(3.0), abs=1e-12)
    assert np.exp(label_ratio(logp, [0, 0])[0]) + np.exp(label_ratio(logp, [1, 1])[0]) \
        + np.exp(label_ratio(logp, [2, 2])[0]) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------- the generator score
def _direct_logprob(module: DawGenModule, label: int, target: list[int], context: list[int]) -> float:
    """log p(x | Q_l) by hand: the backbone reads [Q_l ; E(c) ; E(x)], sum of log-probs of x's tokens."""
    model = module.backbone
    ids = torch.tensor(context + target)
    inputs = torch.cat([module.label_prompts.prompts[label], embed_tokens(model, ids)]).unsqueeze(0)
    logits = model(inputs_embeds=inputs).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    first = module.hparams.prompt_length + len(context) - 1  # the last position before x_0 predicts it
    return float(sum(logp[first + j, tok] for j, tok in enumerate(target)))


@pytest.mark.parametrize("task, rows", [
    ("sst2", [{"text": "a gorgeous , witty film"}, {"text": "dull"}, {"text": "the plot is thin and the acting flat ."},
              {"text": "it works"}, {"text": ""}]),
    ("rte", [{"text_a": "The cat sat on the mat.", "text_b": "A cat sat."},
             {"text_a": "Paris is in France.", "text_b": "Paris is a city in Germany and it is very large."},
             {"text_a": "He left.", "text_b": "He stayed at home all day long."}]),
])
def test_generator_score_equals_the_likelihood_ratio_computed_directly(tiny_llama, task, rows):
    torch.manual_seed(0)
    module = DawGenModule(backbone=tiny_llama, prompt_length=3, weight_mlp_size=8, num_labels=2).eval()
    with torch.no_grad():
        module.label_prompts.prompts.add_(torch.randn_like(module.label_prompts.prompts))  # labels clearly differ
    dm = LabeledDataModule(task, backbone=tiny_llama, max_length=8, max_context_length=6)
    labels = [i % 2 for i in range(len(rows))]
    logp = generator_logprobs(module, dm, rows, batch_size=2)  # batched and padded: rows of different lengths
    scores = generator_scores(module, dm, rows, labels, batch_size=2)
    pair = task == "rte"
    with torch.no_grad():
        for i, row in enumerate(rows):
            tokens = dm.tokenizer(row["text_b"] if pair else row["text"], add_special_tokens=False)["input_ids"]
            target = tokens[:7] + [dm.tokenizer.eos_token_id]  # max_length 8, EOS included as in training
            context = dm.encode_context(row["text_a"]) if pair else []
            direct = torch.tensor([_direct_logprob(module, lab, target, context) for lab in (0, 1)], dtype=torch.float64)
            assert logp[i] == pytest.approx(direct.numpy(), abs=2e-4)
            expected = float(direct[labels[i]] - torch.logsumexp(direct, 0))
            assert scores[i] == pytest.approx(expected, abs=2e-4)
    assert float(scores.max()) < 0 and len(set(np.round(scores, 6))) == len(rows)
    flipped = generator_scores(module, dm, rows, [1 - y for y in labels], batch_size=5)
    np.testing.assert_allclose(np.exp(scores) + np.exp(flipped), 1.0, atol=1e-6)  # a posterior over the two labels


# ----------------------------------------------------------------------------- classifier scorer and judge
class WordCounts:
    """A fake sentence embedder: counts of positive and of negative words (the classifier's features)."""

    name = "word-counts-test"

    def encode(self, texts):
        return np.array([[sum(w in POSITIVE for w in t.split()), sum(w in NEGATIVE for w in t.split())]
                         for t in texts], dtype=np.float32)


def test_classifier_score_is_low_for_a_row_whose_text_contradicts_its_label():
    real = [f"{a} {b}" for a, b in zip(POSITIVE, POSITIVE[1:])] + [f"{a} {b}" for a, b in zip(NEGATIVE, NEGATIVE[1:])]
    real_labels = [1] * 7 + [0] * 7
    texts = ["great fun", "awful grim", "great fun", "awful grim"]
    scores = classifier_scores(real, real_labels, texts, [1, 0, 0, 1], featurizer=WordCounts())
    assert scores[0] > -0.3 and scores[1] > -0.3  # on-label: p(y|x) near 1
    assert scores[2] < -1.0 and scores[3] < -1.0  # off-label
    assert len(scores) == 4 and scores[0] == pytest.approx(scores[1], abs=0.2) and float(scores.max()) <= 0
    with pytest.raises(SynthtuneError, match="every label"):
        classifier_scores(real[:7], real_labels[:7] + [], texts, [1, 0, 0, 1], featurizer=WordCounts())


def test_judge_on_label_rate_and_accuracy():
    train = [f"{p} movie" for p in POSITIVE] + [f"{n} movie" for n in NEGATIVE]
    judge = Judge.fit(train, [1] * 8 + [0] * 8)
    assert judge.train_rows == 16
    texts = ["a good film", "a bad film", "lovely", "boring plot"]
    assert judge.on_label_rate(texts, [1, 0, 1, 0]) == 1.0
    assert judge.on_label_rate(texts, [1, 0, 0, 0]) == 0.75
    assert judge.on_label_rate([], []) is None
    assert judge.measure(texts, [0, 1, 0, 1]).test_accuracy == 0.0


def test_saturated_ratios_stay_apart_and_rank_by_the_margin():
    """A generator's own samples are often tens of nats likelier under their label's prompt: the direct
    difference log p(x|Q_y) − logsumexp rounds to 0 for all of them (the first SST-2 run kept rows by file
    order), while the margin orders them, and the stable ratio stays below 0 in the same order."""
    logprobs = np.array([[-100.0, -150.0], [-100.0, -140.0], [-90.0, -160.0], [-120.0, -118.0]])
    labels = np.array([0, 0, 0, 0])
    naive = logprobs[:, 0] - np.logaddexp(logprobs[:, 0], logprobs[:, 1])
    assert (naive[:3] == 0.0).all()  # what the first implementation scored
    margins = label_margin(logprobs, labels)
    np.testing.assert_allclose(margins, [50.0, 40.0, 70.0, -2.0])
    ratios = label_ratio(logprobs, labels)
    assert (ratios < 0).all() and list(np.argsort(-ratios)) == [2, 0, 1, 3]
    np.testing.assert_allclose(ratios[3], -np.log1p(np.exp(2.0)))
    assert keep_per_label(ratios, labels, keep_fraction=0.5, rank_by=margins) == [0, 2]
    assert keep_per_label(np.zeros(4), labels, keep_fraction=0.5, rank_by=margins) == [0, 2]
    three = np.array([[-10.0, -12.0, -12.0]])
    np.testing.assert_allclose(label_margin(three, [0]), 2.0 - np.log(2.0))
