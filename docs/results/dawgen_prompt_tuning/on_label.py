"""On-label accuracy of DawGen samples under the zero-shot classifier (the task's decoder template, frozen LM).

    python docs/results/dawgen_prompt_tuning/on_label.py <task> <samples.jsonl> <out.json>

Each sample carries the label its generator prompt was conditioned on; the zero-shot classifier
(``PromptTuningModule`` in ``zero_shot`` mode, configs/prompt_tuning/<task>.yaml) predicts a label from the text
alone. The share that agree says how recognisably on-label the samples are. For scale, the same classifier is
scored on the real 16-shot dev rows of seed 42. Because the zero-shot classifier leans to one label, it is also
scored calibrated: the threshold on the two labels' score difference is the median over the scored set, so both
labels are predicted equally often (every scored set here is balanced). For single-sentence tasks a supervised
judge is added: logistic regression on MiniLM embeddings of 2,000 rows of the task's train split, with its own
accuracy on the test split for scale. The output also holds three samples per label.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from synthtune.datamodules.fewshot import FewShotDataModule
from synthtune.lightning_cli import compose
from synthtune.lightning_modules.prompt_tuning import PromptTuningModule
from synthtune.paths import atomic_write_json


def margins(model: PromptTuningModule, rows: list[dict], batch: int = 16) -> np.ndarray:
    """Score of the second label minus the first, per row (binary tasks)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            logits = model.class_logits(rows[i:i + batch])
            out.append((logits[:, 1] - logits[:, 0]).float().numpy())
    return np.concatenate(out)


def scores(truth: list[int], pred: list[int], names: tuple[str, ...]) -> dict:
    return {"accuracy": accuracy_score(truth, pred), "macro_f1": f1_score(truth, pred, average="macro"),
            "predicted_share": {n: pred.count(i) / len(pred) for i, n in enumerate(names)},
            "per_label_accuracy": {n: sum(p == t for p, t in zip(pred, truth) if t == i) / max(1, truth.count(i))
                                   for i, n in enumerate(names)}}


def supervised_judge(task: str, texts: list[str]) -> tuple[list[int], float]:
    """Predictions of logistic regression on MiniLM trained on 2,000 train rows, and its test accuracy."""
    from sklearn.linear_model import LogisticRegression

    from synthtune.components.encoders import featurize
    from synthtune.tasks import load_task, read_labeled

    spec = load_task(task)
    train = read_labeled(spec.folder / "train.jsonl", spec)
    train = [train[i] for i in np.random.default_rng(0).permutation(len(train))[:2000]]
    test = read_labeled(spec.eval_path(), spec)
    judge = LogisticRegression(max_iter=2000).fit(featurize([r["text"] for r in train]), [r["label"] for r in train])
    test_acc = judge.score(featurize([r["text"] for r in test]), [r["label"] for r in test])
    return judge.predict(featurize(texts)).tolist(), float(test_acc)


def main(task: str, samples: str, output: str) -> None:
    config = compose(["fit", "--config", f"configs/prompt_tuning/{task}.yaml"])
    model = PromptTuningModule(**{**config["model"]["init_args"], "mode": "zero_shot"})
    data = FewShotDataModule(task, seed=42)
    data.setup("fit")
    model.connect(data.describe())
    model.eval()
    rows = [json.loads(line) for line in open(samples, encoding="utf-8") if line.strip()]
    labels = [int(r["label"]) for r in rows]
    names = data.describe().label_names
    report: dict = {"task": task, "samples": samples, "n": len(rows)}
    for name, part, truth in (("generated", rows, labels), ("real_dev_seed42", data.dev_rows,
                                                             [int(r["label"]) for r in data.dev_rows])):
        margin = margins(model, part)
        report[name] = scores(truth, [int(m > 0) for m in margin], names)
        report[name]["calibrated"] = scores(truth, [int(m > np.median(margin)) for m in margin], names)
    if "text_b" not in rows[0]:
        pred, test_acc = supervised_judge(task, [r["text"] for r in rows])
        report["generated"]["supervised_judge"] = {**scores(labels, pred, names), "judge_test_accuracy": test_acc}
    field = "text_b" if "text_b" in rows[0] else "text"
    report["examples"] = {n: [{k: r[k] for k in ("text_a", field) if k in r} for r in rows if r["label"] == i][:3]
                          for i, n in enumerate(names)}
    atomic_write_json(output, report)
    g, d = report["generated"], report["real_dev_seed42"]
    judge = g.get("supervised_judge")
    print(f"{samples}: on-label accuracy {g['accuracy']:.3f} zero-shot, {g['calibrated']['accuracy']:.3f} calibrated "
          f"(real dev rows: {d['accuracy']:.3f}, {d['calibrated']['accuracy']:.3f})"
          + (f"; supervised judge {judge['accuracy']:.3f} (its test accuracy {judge['judge_test_accuracy']:.3f})"
             if judge else ""))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python docs/results/dawgen_prompt_tuning/on_label.py <task> <samples.jsonl> <out.json>")
    main(*sys.argv[1:])
