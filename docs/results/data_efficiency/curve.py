"""The data-efficiency grid of the small student (MiniLM + linear head, every weight trained).

    python docs/results/data_efficiency/curve.py --task sst2 --synthetic S.jsonl --filtered F.jsonl \
        --out runs/results-data-efficiency/curve-sst2/results.jsonl [--ks 16,4,64,8,32] [--seeds 13,21,42,87,100]
        [--conditions real,real+syn,real+filtered,real+random,paired+filtered] [--lane 0/2]

One cell = (k real rows per label, training seed, condition); the cells run k by k in the order given and append
one line each to ``--out`` (the cells already there are skipped, so a killed run resumes). ``--lane i/n`` runs
every n-th cell from the i-th, for two processes on two cores. Conditions, all on the same real rows and the
same number of steps:

* ``real``: the real rows only.
* ``real+syn``: real batches paired with batches of every synthetic row, δ = δ_real + δ_syn.
* ``real+filtered``: the same with the label filter's kept rows.
* ``real+random``: the control of ``real+filtered``: a seeded random subset of the synthetic rows with the same
  per-label counts as the kept rows, so only the filter's choice differs.
* ``paired+filtered``: the kept rows with gradient surgery (δ = δ_real + δ'_syn, Alg. 2).

Each line holds the test accuracy of the last and of the dev-selected weights, the per-row test predictions of
both (so intervals can be bootstrapped over test rows), the dev curve and the timings.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import torch

from synthtune.components.students import (EncoderClassifier, curve_split, matched_random_subset, predict_labels,
                                           train_student)
from synthtune.tasks import load_task, read_labeled

CONDITIONS = ("real", "real+syn", "real+filtered", "real+random", "paired+filtered")
STRATEGY = {"real": "real", "real+syn": "real+syn", "real+filtered": "real+syn", "real+random": "real+syn",
            "paired+filtered": "paired"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--synthetic", help="the generator's rows (text, label)")
    parser.add_argument("--filtered", help="the label filter's kept rows")
    parser.add_argument("--out", required=True)
    parser.add_argument("--ks", default="16,4,64,8,32")
    parser.add_argument("--seeds", default="13,21,42,87,100")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--steps", type=int, default=125, help="optimizer steps of every cell")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--syn_batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--lane", default="0/1", help="i/n: run every n-th cell from the i-th")
    parser.add_argument("--tag", default="", help="a name for the synthetic set, recorded in every line")
    args = parser.parse_args()
    task = load_task(args.task)
    test = read_labeled(task.eval_path(), task)
    synthetic = read_labeled(args.synthetic, task, allow_empty=True) if args.synthetic else []
    filtered = read_labeled(args.filtered, task, allow_empty=True) if args.filtered else []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done.add((row["k"], row["seed"], row["condition"], row["tag"]))
    cells = [(int(k), int(s), c) for k in args.ks.split(",") for s in args.seeds.split(",")
             for c in args.conditions.split(",")]
    lane, lanes = (int(x) for x in args.lane.split("/"))
    for n, (k, seed, condition) in enumerate(cells):
        if n % lanes != lane or (k, seed, condition, args.tag) in done:
            continue
        train, dev, source = curve_split(task, k, seed)
        if condition == "real+random":  # the filter's control: drawn only for its own cells
            syn = matched_random_subset(synthetic, filtered, seed) if filtered else []
        else:
            syn = {"real": [], "real+syn": synthetic, "real+filtered": filtered, "paired+filtered": filtered}[condition]
        if condition != "real" and not syn:
            raise SystemExit(f"condition {condition} needs --synthetic and --filtered")
        torch.manual_seed(seed)
        model = EncoderClassifier(task.num_labels, max_length=args.max_length, seed=seed)
        start = time.perf_counter()
        run = train_student(model, train, syn, strategy=STRATEGY[condition], steps=args.steps,
                            batch_size=args.batch_size, syn_batch_size=args.syn_batch_size, dev=dev,
                            eval_every=max(1, args.steps // 5), seed=seed)
        predictions = {}
        for which in ("last", "best"):
            model.load_state_dict(getattr(run, which))
            predictions[which] = predict_labels(model, test)
        acc = {w: sum(p == r["label"] for p, r in zip(pred, test)) / len(test) for w, pred in predictions.items()}
        line = {"task": args.task, "k": k, "seed": seed, "condition": condition, "tag": args.tag,
                "real_source": source, "n_real": len(train), "n_dev": len(dev), "n_syn": len(syn),
                "syn_distinct": len({r["text"] for r in syn}), "syn_per_label": dict(Counter(r["label"] for r in syn)),
                "steps": args.steps, "syn_passes": run.syn_passes, "test_acc_last": acc["last"],
                "test_acc_best": acc["best"], "best_step": run.best_step, "dev_curve": run.dev_curve,
                "conflict_rate": run.conflict_rate, "n_test": len(test),
                "pred_last": "".join(map(str, predictions["last"])), "pred_best": "".join(map(str, predictions["best"])),
                "train_seconds": run.seconds, "seconds": time.perf_counter() - start}
        with out.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"k={k} seed={seed} {condition}: last {acc['last']:.4f} best {acc['best']:.4f} "
              f"({line['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
