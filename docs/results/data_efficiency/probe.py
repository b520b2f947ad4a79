"""Reference points for reading the curve, without training a student: the label filter's own classifier, and a
linear probe on frozen MiniLM embeddings of each cell's real rows.

    python docs/results/data_efficiency/probe.py --task sst2 --out docs/results/data_efficiency/probe-sst2.jsonl

* ``filter``: the classifier the classifier filter used (``synthtune filter --scorer classifier``): logistic
  regression on MiniLM embeddings of the generator's training rows (the LM-BFF 16-shot train split of seed 42),
  scored on the whole test split. If the student trained on the kept rows only matched this, the filter would be
  passing its classifier's knowledge on, not the synthetic rows'.
* ``probe``: the same classifier fitted on each curve cell's k real train rows per label (``curve_split``, the
  rows the student gets), per k and seed: what the real rows give with the encoder frozen.

Each line holds the test accuracy and the per-row predictions (so report.py can bootstrap over test rows).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from synthtune.components.students import curve_split
from synthtune.components.encoders import featurize
from synthtune.paths import atomic_write_jsonl
from synthtune.tasks import load_task, read_labeled


def predict(real: list[dict], test_features: np.ndarray) -> np.ndarray:
    """The filter's classifier (``classifier_scores``' settings) fitted on ``real``: its label for every test row."""
    from sklearn.linear_model import LogisticRegression

    features = featurize([r["text"] for r in real], "minilm")
    clf = LogisticRegression(max_iter=2000, random_state=0).fit(features, [r["label"] for r in real])
    return clf.predict(test_features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ks", default="4,8,16,32,64")
    parser.add_argument("--seeds", default="13,21,42,87,100")
    parser.add_argument("--filter_seed", type=int, default=42, help="the seed of the generator's training split")
    args = parser.parse_args()
    task = load_task(args.task)
    test = read_labeled(task.folder / "test.jsonl", task)
    gold = np.array([r["label"] for r in test])
    test_features = featurize([r["text"] for r in test], "minilm")  # once: every classifier scores these rows
    lines = []

    def record(kind: str, k: int, seed: int, pred: np.ndarray) -> None:
        acc = float((pred == gold).mean())
        lines.append({"task": args.task, "kind": kind, "k": k, "seed": seed, "test_acc": acc, "n_test": len(test),
                      "pred": "".join(map(str, pred.tolist()))})
        print(f"{kind} k={k} seed={seed}: {acc:.4f}", flush=True)

    record("filter", 16, args.filter_seed, predict(read_labeled(task.kshot_path(args.filter_seed, "train", 16), task),
                                                   test_features))
    for k in (int(x) for x in args.ks.split(",")):
        for seed in (int(x) for x in args.seeds.split(",")):
            train, _, _ = curve_split(task, k, seed)
            record("probe", k, seed, predict(train, test_features))
    atomic_write_jsonl(args.out, lines)
    probes = {}
    for line in lines[1:]:
        probes.setdefault(line["k"], []).append(line["test_acc"])
    for k, accs in probes.items():
        mean, sd = float(np.mean(accs)), float(np.std(accs, ddof=1)) if len(accs) > 1 else math.nan
        print(f"probe k={k}: mean {mean:.4f} sd {sd:.4f} over {len(accs)} seeds")


if __name__ == "__main__":
    main()
