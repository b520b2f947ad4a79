import json
import random

import numpy as np
import pytest

from synthtune.commands import run_command
from synthtune.curation import novelty as nov
from synthtune.curation.normalize import ngram_tokens
from synthtune.errors import SynthtuneError

WORDS = "tom ann bo has pens apples buys sells each day how many more than half of the".split()


def brute_overlap(text: str, references: list[str], n: int):
    """Share of text's n-word windows that occur as a contiguous run of words in some reference, by scanning."""
    tokens = ngram_tokens(text)
    windows = [tokens[i:i + n] for i in range(len(tokens) - n + 1)]
    if not windows:
        return None
    refs = [ngram_tokens(r) for r in references]
    hits = sum(any(ref[j:j + n] == w for ref in refs for j in range(len(ref) - n + 1)) for w in windows)
    return hits / len(windows)


def sentence(rng: random.Random, length: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(length))


def mutate(rng: random.Random, text: str, changes: int) -> str:
    words = text.split()
    for _ in range(changes):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return " ".join(words)


@pytest.mark.parametrize("n", [3, 5])
def test_overlaps_and_copy_shares_match_brute_force_counts(n):
    """Per-sample overlaps with the context and the train split, and the copy counts at a threshold, equal
    what scanning every window against every reference gives, on samples made to share parts of both."""
    rng = random.Random(n)
    train = [sentence(rng, rng.randint(4, 20)) for _ in range(30)]
    samples, contexts = [], []
    for i in range(60):
        context = train[i % len(train)]
        kind = i % 4
        text = (context if kind == 0 else mutate(rng, context, rng.randint(1, 4)) if kind == 1
                else sentence(rng, rng.randint(1, 15)) if kind == 2 else context + " " + sentence(rng, 6))
        samples.append(text.upper() + "!")  # case and punctuation do not matter (App. A.3 normalisation)
        contexts.append(context)
    overlaps, exact = nov.train_overlaps(samples, train, n)
    assert overlaps == pytest.approx([brute_overlap(s, train, n) for s in samples])
    assert exact == [" ".join(ngram_tokens(s)) in {" ".join(ngram_tokens(t)) for t in train} for s in samples]
    c_overlaps, c_exact = nov.context_overlaps(samples, contexts, n)
    assert c_overlaps == pytest.approx([brute_overlap(s, [c], n) for s, c in zip(samples, contexts)])
    threshold = 0.5
    report = nov.novelty_report(samples, train, contexts, n=n, threshold=threshold)
    brute_ctx = sum((brute_overlap(s, [c], n) or 0) > threshold if brute_overlap(s, [c], n) is not None
                    else ngram_tokens(s) == ngram_tokens(c) for s, c in zip(samples, contexts))
    assert report["context"]["copies"] == brute_ctx and report["context"]["share"] == brute_ctx / len(samples)
    brute_train = sum(brute_overlap(s, train, n) > threshold if brute_overlap(s, train, n) is not None
                      else any(ngram_tokens(s) == ngram_tokens(t) for t in train) for s in samples)
    assert report["train"]["copies"] == brute_train
    # the verbatim copies (every 4th sample) are copies of their context; the made-up ones mostly not
    copied = [c_exact[i] for i in range(0, 60, 4)]
    assert len(copied) == 15 and all(copied) and 15 <= brute_ctx < 60
    assert report["distinct_rows"] == len({" ".join(s.lower().split()) for s in samples})


def test_short_samples_count_only_as_exact_copies():
    """A sample shorter than n words has no n-gram: a copy only when equal to the reference."""
    overlaps, exact = nov.context_overlaps(["Tom has pens.", "Tom has apples.", "a b c d"], ["tom HAS pens", "tom has pens",
                                                                                            None], n=13)
    assert overlaps == [None, None, None] and exact == [True, False, False]
    assert nov.copies(overlaps, exact, 0.5) == [True, False, False]


def test_nearest_cosine_matches_a_full_similarity_matrix():
    rng = np.random.default_rng(0)
    p, q = rng.normal(size=(37, 8)), rng.normal(size=(11, 8)) * 3
    full = (p / np.linalg.norm(p, axis=1, keepdims=True)) @ (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    np.testing.assert_allclose(nov.nearest_cosine(p, q, chunk=5), full.max(axis=1))
    assert nov.nearest_cosine(q, q) == pytest.approx(np.ones(11))
    with pytest.raises(SynthtuneError, match="needs"):
        nov.nearest_cosine(p, q[:, :4])


def test_report_checks_its_inputs():
    with pytest.raises(SynthtuneError, match="no samples"):
        nov.novelty_report([], ["a"])
    with pytest.raises(SynthtuneError, match="2 contexts for 1 samples"):
        nov.novelty_report(["a"], ["a"], ["a", "b"])
    with pytest.raises(SynthtuneError, match="threshold"):
        nov.novelty_report(["a"], ["a"], threshold=1.0)


def test_score_novelty_command(tmp_path):
    """The command joins each row to its context by context_index and writes the report."""
    train = [f"tom has {w} pens and ann buys {w} apples each day how many more than half of the day" for w in WORDS]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"question": t}) + "\n" for t in train))
    (tmp_path / "ctx.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in train[:3]))
    rows = [{"id": 0, "text": train[0], "context_index": 0},          # copies its context and the train split
            {"id": 1, "text": train[2], "context_index": 1},          # copies the train split, not its context
            {"id": 2, "text": "bo sells apples", "context_index": None},
            {"id": 3, "text": train[0], "context_index": 2}]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = run_command("score", ["novelty", "--synthetic", str(tmp_path / "s.jsonl"), "--train",
                                   str(tmp_path / "train.jsonl"), "--train_field", "question", "--contexts",
                                   str(tmp_path / "ctx.jsonl"), "--contexts_field", "text", "--featurizer", "null"])
    assert report["context"]["copies"] == 1 and report["train"]["copies"] == 3 and report["distinct_rows"] == 3
    assert report["nearest_train_cosine"] is None
    assert json.loads((tmp_path / "s.novelty.json").read_text())["train"]["share"] == 0.75
    rows[0]["context_index"] = 9
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SynthtuneError, match="context_index 9, outside the 3 rows of --contexts"):
        run_command("score", ["novelty", "--synthetic", str(tmp_path / "s.jsonl"), "--train",
                              str(tmp_path / "train.jsonl"), "--train_field", "question", "--contexts",
                              str(tmp_path / "ctx.jsonl"), "--contexts_field", "text", "--featurizer", "null"])
